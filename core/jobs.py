"""Background training jobs: a model run trained in a subprocess (default) or a thread, the app stays usable.

Progress goes to the ModelRun row (``progress`` in [0, 1], ``message``), throttled; cancelling sets the
row's status to ``cancelling``, which the job's ``should_stop`` sees between batches (both hooks live in
core.runs: ``db_progress``, ``db_should_stop``). A subprocess job runs ``python -m core train ... --run ID``
and records its pid in the run's config, so a job whose process died is marked failed by :func:`reap_stale`.
A thread job calls core.retrieval.training.train_run; training never imports this module.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core.config import REPO_ROOT
from core.jobqueue import DEAD_MESSAGE, QUEUE_KEY, ahead_of, max_parallel, pid_alive, position_message
from core.progress import no_progress
from core.runs import ACTIVE, create_run, db_should_stop, list_runs, merge_run_config, request_cancel, run_status, update_run
from core.store import get_engine

_THREADS: dict[int, threading.Thread] = {}
_CHILDREN: list[subprocess.Popen] = []  # started here; polled so that a finished one does not stay a zombie


TRAIN_FLAGS = {"epochs": "--epochs", "seed": "--seed", "k1": "--k1", "k2": "--k2", "margin": "--margin", "keyword_weight": "--rho",
               "detector": "--detector", "lr": "--lr", "neck": "--neck", "sca": "--sca", "recipe": "--recipe",
               "region_drop": "--region-drop"}  # train_run option -> the `train` command's flag


def cli_args(kind: str, ablate: Sequence[str], options: dict[str, Any]) -> list[str]:
    """``train`` command-line arguments for a kind, ablations and options."""
    flags = TRAIN_FLAGS
    args = ["train", "--model", kind]
    if ablate:
        args += ["--ablate", ",".join(ablate)]
    for key, value in options.items():
        if key not in flags:
            raise ValueError(f"option {key!r} cannot be passed to a background job")
        if value is not None:
            args += [flags[key], str(value)]
    return args


def start_training(kind: str, ablate: Sequence[str] = (), options: dict[str, Any] | None = None, *, mode: str = "process",
                   engine: Engine | None = None, name: str | None = None) -> int:
    """Create the run and start training it in the background; returns the run id at once."""
    engine = engine or get_engine()
    options = dict(options or {})
    ablate = [a for a in ablate if a]
    suffix = f" w/o {'+'.join(sorted(ablate))}" if ablate else ""
    run_id = create_run(kind, name or f"{kind}{suffix}", {"kind": kind, "ablate": sorted(ablate), QUEUE_KEY: True, **options},
                        engine=engine)
    # every job starts queued; its own process (or thread) waits for a free slot (core.jobqueue.wait_turn), so at most
    # settings.max_parallel_jobs train at once however many are started, with no scheduler process
    limit = max_parallel()
    ahead = ahead_of(run_id, engine=engine)
    update_run(run_id, engine=engine, status="queued", message="starting" if ahead < limit else position_message(ahead, limit))
    if mode == "thread":
        thread = threading.Thread(target=_thread_main, args=(run_id, kind, list(ablate), options, engine), daemon=True,
                                  name=f"adlens-train-{run_id}")
        _THREADS[run_id] = thread
        thread.start()
    elif mode == "process":
        args = [*cli_args(kind, ablate, options), "--run", str(run_id)]
        pid, log = start_command(args, label=f"run-{run_id}")
        # merged under the row's lock: the job itself may be writing its config at this moment
        merge_run_config(run_id, {"job": {"mode": "process", "pid": pid, "host": socket.gethostname(), "log": str(log)}}, engine=engine)
    else:
        raise ValueError(f"unknown job mode {mode!r}: process or thread")
    return run_id


def logs_dir() -> Path:
    from core.config import get_settings

    return get_settings().home / "logs"


def start_command(args: Sequence[str], *, label: str) -> tuple[int, Path]:
    """Run ``python -m core ARGS --json`` detached from this process (the app's server); its stdout and stderr go to
    ``home/logs/<label>.log``, kept for the page of a failed run. Returns (pid, log path) at once."""
    folder = logs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{label}.log"
    cmd = [sys.executable, "-m", "core", *args, "--json"]
    with path.open("ab") as log:
        log.write(("$ python -m core " + " ".join(cmd[3:]) + "\n").encode())
        log.flush()
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(), start_new_session=True)
    _CHILDREN.append(proc)
    return proc.pid, path


def log_tail(path: str | Path | None, lines: int = 40, max_bytes: int = 64_000) -> str | None:
    """The last ``lines`` lines of a job's log (read from its end, at most ``max_bytes``; undecodable bytes replaced),
    or None when there is no such file: what the page of a failed run shows."""
    if not path or not Path(path).is_file():
        return None
    with Path(path).open("rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - max_bytes))
        data = fh.read()
    text = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and text:
        text = text[1:]  # the first line read may have been cut
    return "\n".join(text[-lines:])


def run_log_tail(run: dict[str, Any], lines: int = 40) -> str | None:
    """The tail of a run's job log (its ``config.job.log``), None when no log was kept."""
    return log_tail(((run.get("config") or {}).get("job") or {}).get("log"), lines)


def _thread_main(run_id: int, kind: str, ablate: list[str], options: dict[str, Any], engine: Engine) -> None:
    from core.retrieval.training import train_run  # one way: training writes its progress through core.runs, never core.jobs

    try:
        train_run(kind, ablate, options, no_progress, db_should_stop(run_id, engine), engine=engine, run_id=run_id)
    except Exception:  # noqa: BLE001 - train_run already recorded the failure on the row
        pass
    finally:
        _THREADS.pop(run_id, None)


def cancel(run_id: int, *, engine: Engine | None = None) -> bool:
    """Ask the job to stop; it finishes its current batch and ends as ``cancelled``."""
    return request_cancel(run_id, engine=engine)


def wait(run_id: int, timeout: float = 60.0, *, engine: Engine | None = None, poll: float = 0.2) -> str:
    """Block until the run leaves the active states (or ``timeout`` seconds); returns its status."""
    deadline = time.monotonic() + timeout
    while True:
        status = run_status(run_id, engine=engine)
        if status not in ACTIVE or time.monotonic() > deadline:
            return status
        time.sleep(poll)


def reap_stale(*, engine: Engine | None = None, kinds: Sequence[str] | None = None) -> list[int]:
    """Mark active subprocess runs (of ``kinds``; default: the embedding kinds) whose process is gone as failed; returns their ids."""
    engine = engine or get_engine()
    for proc in list(_CHILDREN):  # reap our own finished children (else they stay zombies and look alive)
        if proc.poll() is not None:
            _CHILDREN.remove(proc)
    reaped = []
    runs = [r for k in kinds for r in list_runs(k, engine=engine)] if kinds else list_runs(engine=engine)
    for run in runs:
        job = run["config"].get("job") or {}
        here = job.get("host") in (None, socket.gethostname())  # a pid only means something on its own machine
        if run["status"] in ACTIVE and job.get("mode") == "process" and job.get("pid") and here and not pid_alive(int(job["pid"])):
            if run_status(run["id"], engine=engine) in ACTIVE:
                update_run(run["id"], engine=engine, status="failed", message=DEAD_MESSAGE, finished=True)
                reaped.append(run["id"])
    return reaped


def active_jobs(*, engine: Engine | None = None) -> list[dict[str, Any]]:
    return [r for r in list_runs(engine=engine) if r["status"] in ACTIVE]
