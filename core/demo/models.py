"""Every default model the pages use, built after the demo world: one pipeline of resumable stages.

``python -m core demo`` calls :func:`build_models` after the world (``--models none`` skips it; ``--models
background`` returns once the world is ready and lets :func:`start_background` build the models in a detached
process while the app is already open). A stage is one of the project's own commands (``train``,
``train-matcher``, ``extract`` ...) run as a subprocess with one thread, so the app, the CLI and this pipeline
share one set of entry points; two stages run at once on two cores. Each stage has a ``done`` check that reads
the database, so re-running skips what is built and up to date, and a budget (seconds on the 2-core build
machine) that the README adds up.

The pipeline writes its state to ``home/demo-models.json`` (:func:`read_status`): per stage its state
(pending / running / done / skipped / failed), seconds, budget and log file (``home/logs/demo-<stage>.log``).
The pages read it to say which model they wait for (core.demo.models.stage_for_kind).

The detector is the one exception to "train it here": the 18-minute training of ``train-detector`` does not fit
the 20-minute budget, so the repository ships the checkpoint that command trained on the seed-0 world
(``assets/models/demo-detector.pt``, with ``demo-detector.json``: the command, its metrics and the world's
fingerprint). It is installed only when :func:`world_fingerprint` of the loaded world matches; any other world
trains its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core.config import REPO_ROOT, get_settings
from core.demo.build_status import STATUS_LOCK, is_building, read_status, status_path, write_status
from core.progress import ProgressFn, no_progress

SHIPPED_DETECTOR = REPO_ROOT / "assets" / "models" / "demo-detector.pt"
SHIPPED_DETECTOR_INFO = REPO_ROOT / "assets" / "models" / "demo-detector.json"
LOCK_FILE = "demo-models.lock"
DEMO_EPOCHS = 30  # ION / ToTYEmb epochs of the demo default (the paper's 30; `train` alone picks >= 4,000 steps)


# -- the world's identity ----------------------------------------------------------------------------------------------

def world_fingerprint(engine: Engine) -> str | None:
    """sha256 of what a model trained on the demo world learnt from (core.stale.fingerprint_rows). None without demo ads."""
    from core.stale import world_fingerprint as computed

    return computed(engine)


# -- stages --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    """What the stages need to know: the engine, the python that runs the commands, and the log folder."""

    engine: Engine
    python: str = sys.executable
    logs: Path = field(default_factory=lambda: get_settings().home / "logs")
    threads: int = 1
    quick: bool = False  # each stage's ``quick`` command (minutes in all: tests, smoke checks), not its recipe
    memo: dict[str, Any] = field(default_factory=dict, compare=False)  # what several checks read (the region-cache key)


@dataclass(frozen=True)
class Stage:
    """One model to build: ``args`` is the ``python -m core`` command line (None: ``run`` does it in process)."""

    name: str
    title: str
    budget_s: int  # seconds on the 2-core build machine, two stages at a time (the README adds them up)
    kinds: tuple[str, ...]  # the ModelRun kinds it creates (the pages wait on these)
    needs: tuple[str, ...] = ()
    args: tuple[str, ...] | None = None
    run: Callable[[Context], dict[str, Any]] | None = None
    done: Callable[[Context], bool] | None = None
    quick: tuple[str, ...] | None = None  # the command of a quick build (few epochs / steps): same code paths, toy figures

    def command(self, ctx: Context) -> tuple[str, ...]:
        return (self.quick if ctx.quick and self.quick else self.args) or ()


def _regions_key(ctx: Context) -> str | None:
    """The region-cache key the training commands use by default (auto detector, default descriptors). Building the
    detector to know it takes seconds, so it is worked out once per Context, once the detector stage is behind it."""
    from core.regions.extract import default_cache_key

    if "regions_key" not in ctx.memo:
        try:
            ctx.memo["regions_key"] = default_cache_key()
        except Exception:  # noqa: BLE001 - no detector can be built: nothing is up to date
            return None
    return ctx.memo["regions_key"]


def _finished(ctx: Context, kind: str, *, full: bool = True, same_regions: bool = False) -> bool:
    """A finished run of ``kind`` exists (a full model, not an ablation / variant; on today's regions if asked)."""
    from core.runs import is_variant, list_runs

    key = _regions_key(ctx) if same_regions else None
    for run in list_runs(kind, "done", engine=ctx.engine, fresh=True):  # a run built on a previous demo world is not done
        if full and is_variant(run):
            continue
        if key and run["config"].get("regions_key") not in (None, key):
            continue
        return True
    return False


def _detector_done(ctx: Context) -> bool:
    from core.regions.train import latest_detector
    from core.runs import DETECTOR_KIND, list_runs
    from core.stale import is_stale

    newest = list_runs(DETECTOR_KIND, "done", engine=ctx.engine, limit=1)
    return latest_detector() is not None and not (newest and is_stale(newest[0]))


def _regions_done(ctx: Context) -> bool:
    from core.regions.extract import missing_count

    key = _regions_key(ctx)
    return key is not None and missing_count(key, engine=ctx.engine) == 0


def _expansion_done(ctx: Context) -> bool:
    from core.runs import list_runs

    return bool(list_runs("expansion-table", "done", engine=ctx.engine, fresh=True))


def install_detector(ctx: Context) -> dict[str, Any]:
    """Copy the shipped seed-0 detector into ``home/detectors`` when it was trained on this world; else train one."""
    from core.regions.train import LATEST, detectors_dir
    from core.runs import DETECTOR_KIND, record_run

    info = json.loads(SHIPPED_DETECTOR_INFO.read_text()) if SHIPPED_DETECTOR_INFO.is_file() else None
    fingerprint = world_fingerprint(ctx.engine)
    if info and SHIPPED_DETECTOR.is_file() and fingerprint == info.get("world_fingerprint"):
        if hashlib.sha256(SHIPPED_DETECTOR.read_bytes()).hexdigest() != info.get("sha256"):
            raise RuntimeError(f"{SHIPPED_DETECTOR} does not match its sha256 in {SHIPPED_DETECTOR_INFO.name}: "
                               "re-run the command in that file")
        folder = detectors_dir() / "demo-shipped"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHIPPED_DETECTOR, folder / "best.pt")
        shutil.copyfile(SHIPPED_DETECTOR, detectors_dir() / LATEST)
        rel = (folder / "best.pt").resolve().relative_to(get_settings().home.resolve()).as_posix()
        run_id = record_run(DETECTOR_KIND, "YOLOv8n detector (shipped, seed-0 demo world)",
                            {**info.get("config", {}), "source": "shipped", "command": info.get("command")},
                            metrics=info.get("metrics", {}), engine=ctx.engine, checkpoint_path=rel)
        return {"ok": True, "source": "shipped", "run_id": run_id}
    return run_command(ctx, "detector", QUICK_DETECTOR if ctx.quick else ("train-detector",))


def _ctx_python_env(ctx: Context) -> dict[str, str]:
    env = os.environ.copy()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(ctx.threads)
    env["ADLENS_HOME"] = str(get_settings().home)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("YOLO_OFFLINE", "1")
    env["ADLENS_DATABASE_URL"] = str(ctx.engine.url.render_as_string(hide_password=False))
    return env


def log_path(ctx: Context, stage: str) -> Path:
    return stage_log(ctx.logs, stage)


def stage_log(logs: Path, stage: str) -> Path:
    """home/logs/demo-<stage>.log: a stage's command line and output."""
    return logs / f"demo-{stage}.log"


def run_command(ctx: Context, stage: str, args: Sequence[str]) -> dict[str, Any]:
    """``python -m core ARGS --json`` with one thread; stdout and stderr kept in the stage's log file."""
    ctx.logs.mkdir(parents=True, exist_ok=True)
    path = log_path(ctx, stage)
    cmd = [ctx.python, "-m", "core", *args, "--json"]
    with path.open("w", encoding="utf-8") as log:
        log.write("$ python " + " ".join(cmd[1:]) + "\n")
        log.flush()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=_ctx_python_env(ctx), check=False)
    if proc.returncode:
        tail = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"`python -m core {' '.join(args)}` failed (exit {proc.returncode}): " + " / ".join(tail)[-400:])
    return {"ok": True, "log": str(path)}


EPOCHS = str(DEMO_EPOCHS)
QUICK_DETECTOR = ("train-detector", "--epochs", "1", "--imgsz", "128", "--batch", "8")
STAGES: tuple[Stage, ...] = (
    Stage("detector", "Detector (YOLOv8n, one class: object)", 10, ("detector",), (), None, install_detector, _detector_done),
    Stage("regions", "Regions and their descriptors (region cache)", 150, (), ("detector",),
          ("extract", "--no-ocr"), None, _regions_done),
    Stage("ion", "ION", 240, ("ion",), ("regions",), ("train", "--model", "ion", "--epochs", EPOCHS),
          None, lambda c: _finished(c, "ion", same_regions=True), ("train", "--model", "ion", "--epochs", "2")),
    Stage("totyemb", "ToTYEmb", 240, ("totyemb",), ("regions",), ("train", "--model", "totyemb", "--epochs", EPOCHS),
          None, lambda c: _finished(c, "totyemb", same_regions=True), ("train", "--model", "totyemb", "--epochs", "2")),
    Stage("text", "Text-only baseline (MiniLM)", 40, ("text",), (), ("train", "--model", "text"), None,
          lambda c: _finished(c, "text")),
    Stage("image", "Image-only baseline (EfficientNet-Lite0)", 120, ("image",), (), ("train", "--model", "image"), None,
          lambda c: _finished(c, "image")),
    Stage("matcher-ion", "ION phrase scorer", 120, ("matcher-ion",), ("ion",), ("train-matcher", "--scorer", "ion"), None,
          lambda c: _finished(c, "matcher-ion", full=False)),
    Stage("matcher-clip", "CLIP-style phrase scorer", 240, ("matcher-clip",), ("regions",),
          ("train-matcher", "--scorer", "clip", "--epochs", "30", "--pairs", "3"), None,
          lambda c: _finished(c, "matcher-clip", full=False), ("train-matcher", "--scorer", "clip", "--epochs", "1")),
    Stage("matcher-lxmert", "LXMERT phrase scorer", 300, ("matcher-lxmert",), ("regions",),
          ("train-matcher", "--scorer", "lxmert"), None, lambda c: _finished(c, "matcher-lxmert", full=False),
          ("train-matcher", "--scorer", "lxmert", "--epochs", "1", "--max-steps", "4")),
    Stage("matcher-early", "Early-fusion phrase scorer", 150, ("matcher-early",), ("regions",),
          ("train-matcher", "--scorer", "early"), None, lambda c: _finished(c, "matcher-early", full=False),
          ("train-matcher", "--scorer", "early", "--epochs", "1")),
    Stage("matcher-eval", "Phrase scorers evaluated on held-out phrases", 60, ("matcher-eval",),
          ("matcher-ion", "matcher-clip", "matcher-lxmert", "matcher-early"), ("evaluate-matching",), None,
          lambda c: _finished(c, "matcher-eval", full=False), ("evaluate-matching", "--bootstrap", "100")),
    Stage("expansion", "Audience expansion over all packages (random, oracle, ION)", 120, ("expansion-table",), ("ion",),
          ("expand", "--all-packages", "--retriever", "random", "--retriever", "oracle", "--retriever", "ion"), None,
          _expansion_done, ("expand", "--all-packages", "--retriever", "random", "--retriever", "oracle", "--retriever", "ion",
                            "--trees", "40")),
)
STAGE_NAMES = tuple(s.name for s in STAGES)


def stage_for_kind(kind: str) -> Stage | None:
    """The stage that builds runs of ``kind`` (e.g. "ion", "matcher-clip")."""
    return next((s for s in STAGES if kind in s.kinds), None)


def budget_total(stages: Sequence[Stage] = STAGES, workers: int = 2) -> int:
    """Wall-clock budget of the stages on ``workers`` cores, scheduled as :func:`build_models` does (list order)."""
    free = [0.0] * workers
    end: dict[str, float] = {}
    pending = list(stages)
    while pending:
        names = {s.name for s in stages}
        stage = next(s for s in pending if all(n in end or n not in names for n in s.needs))
        pending.remove(stage)
        i = min(range(workers), key=free.__getitem__)
        start = max([free[i], *(end.get(n, 0.0) for n in stage.needs)])
        end[stage.name] = free[i] = start + stage.budget_s
    return int(max(end.values(), default=0))


# -- the pipeline -----------------------------------------------------------------------------------------------------

def initial_status(pid: int, stages: Sequence[Stage], workers: int, quick: bool, *, logs: Path) -> dict[str, Any]:
    """The status file of a build that is about to start: every stage pending, with its budget and log file."""
    return {"pid": pid, "started": time.time(), "finished": None, "workers": workers, "quick": quick,
            "budget_s": budget_total(stages, workers),
            "stages": {s.name: {"title": s.title, "state": "pending", "budget_s": s.budget_s, "kinds": list(s.kinds),
                                "seconds": None, "error": None, "log": str(stage_log(logs, s.name))} for s in stages}}


class BuildLocked(RuntimeError):
    """Another process is building the models of this home."""


@contextlib.contextmanager
def _exclusive():
    import fcntl

    path = get_settings().home / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildLocked("the demo models are already being built in this ADLENS_HOME "
                              f"(see {status_path()})") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def select_stages(only: Sequence[str] | None = None) -> list[Stage]:
    unknown = sorted(set(only or ()) - set(STAGE_NAMES))
    if unknown:
        raise ValueError(f"unknown model stage(s) {', '.join(unknown)}: choose from {', '.join(STAGE_NAMES)}")
    return [s for s in STAGES if not only or s.name in only]


def build_models(engine: Engine, *, only: Sequence[str] | None = None, workers: int = 2, force: Sequence[str] = (),
                 progress: ProgressFn = no_progress, python: str | None = None,
                 stages: Sequence[Stage] | None = None, quick: bool = False) -> dict[str, Any]:
    """Build every stage that is not done yet, ``workers`` at a time, in list order as their needs allow; returns the
    final status.

    ``force``: stages to rebuild although their ``done`` check passes. A failed stage is reported and the stages
    that need it are skipped; the others go on. ``stages`` replaces :data:`STAGES` (tests, other catalogues).
    Raises BuildLocked when another process builds the same home.
    """
    stages = list(stages) if stages is not None else select_stages(only)
    ctx = Context(engine, python=python or sys.executable, quick=quick)
    with _exclusive():
        status = initial_status(os.getpid(), stages, workers, quick, logs=ctx.logs)
        write_status(status)
        pending = list(stages)
        running: dict[str, threading.Thread] = {}
        total = len(stages)

        def finished_count() -> int:
            return sum(v["state"] in ("done", "skipped", "failed", "up to date") for v in status["stages"].values())

        def work(stage: Stage) -> None:
            entry = status["stages"][stage.name]
            t0 = time.perf_counter()
            try:
                if stage.run is not None:
                    stage.run(ctx)
                else:
                    run_command(ctx, stage.name, stage.command(ctx))
            except Exception as exc:  # noqa: BLE001 - reported on the stage, the others go on
                with STATUS_LOCK:
                    entry.update(state="failed", error=str(exc)[:500], seconds=round(time.perf_counter() - t0, 1))
                    write_status(status)
                return
            with STATUS_LOCK:
                entry.update(state="done", seconds=round(time.perf_counter() - t0, 1))
                write_status(status)

        while pending or running:
            for name in [n for n, t in running.items() if not t.is_alive()]:
                running.pop(name).join()
                progress(finished_count(), total, f"models: {name} {status['stages'][name]['state']}")
            states = {n: v["state"] for n, v in status["stages"].items()}
            for stage in list(pending):
                if len(running) >= workers:
                    break
                needs = [n for n in stage.needs if n in states]
                if any(states[n] in ("failed", "skipped") for n in needs):
                    pending.remove(stage)
                    with STATUS_LOCK:
                        status["stages"][stage.name].update(state="skipped", error="needs " + ", ".join(
                            n for n in needs if states[n] in ("failed", "skipped")))
                        write_status(status)
                    continue
                if any(states[n] in ("pending", "running") for n in needs):
                    continue
                pending.remove(stage)
                if stage.name not in force and stage.done is not None and stage.done(ctx):
                    with STATUS_LOCK:
                        status["stages"][stage.name].update(state="up to date", seconds=0.0)
                        write_status(status)
                    progress(finished_count(), total, f"models: {stage.name} up to date")
                    states[stage.name] = "up to date"
                    continue
                with STATUS_LOCK:
                    status["stages"][stage.name].update(state="running", started=time.time())
                    write_status(status)
                progress(finished_count(), total, f"models: {stage.name} started")
                thread = threading.Thread(target=work, args=(stage,), name=f"demo-{stage.name}", daemon=True)
                running[stage.name] = thread
                thread.start()
            time.sleep(0.2)
        with STATUS_LOCK:
            status["finished"] = time.time()
            status["seconds"] = round(status["finished"] - status["started"], 1)
            write_status(status)
        progress(total, total, "models: finished")
    return status


def start_background(*, only: Sequence[str] | None = None, workers: int = 2, quick: bool = False) -> int | None:
    """Start ``python -m core demo-models`` detached (its output in ``home/logs/demo-models.log``); returns its pid,
    or None when a build is already running in this home."""
    if is_building():
        return None
    stages = select_stages(only)
    logs = get_settings().home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "core", "demo-models", "--workers", str(workers)]
    for name in only or ():
        args += ["--only", name]
    if quick:
        args.append("--quick")
    log = (logs / "demo-models.log").open("ab")
    try:
        proc = subprocess.Popen(args, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                start_new_session=True)
    finally:
        log.close()
    # the child writes the status file once it holds the lock; write a first one now so pages see it at once
    write_status(initial_status(proc.pid, stages, workers, quick, logs=logs) | {"starting": True})
    return proc.pid


def built(engine: Engine, stages: Sequence[Stage] = STAGES) -> dict[str, bool]:
    """Which stages' models exist and are up to date (their ``done`` checks), without building anything."""
    ctx = Context(engine)
    out = {}
    for stage in stages:
        try:
            out[stage.name] = bool(stage.done(ctx)) if stage.done is not None else False
        except Exception:  # noqa: BLE001 - a check that cannot run (no catalogue, no detector) means "not built"
            out[stage.name] = False
    return out


def stage_view(kind: str) -> dict[str, Any] | None:
    """For a page waiting on a model of ``kind``: its stage's entry in a live build (with the pipeline's state), or
    None when no build is running or the stage is not part of it."""
    status = read_status()
    if not is_building(status):
        return None
    stage = stage_for_kind(kind)
    if stage is None:
        return None
    entry = status.get("stages", {}).get(stage.name)
    if entry is None:
        return None
    return {"stage": stage.name, **entry, "build_started": status.get("started"), "build_budget_s": status.get("budget_s")}
