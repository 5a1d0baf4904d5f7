"""The training-job queue: at most ``settings.max_parallel_jobs`` background trainings run at once, the others wait.

No scheduler process: a job started while the slots are taken is created ``queued`` (core.jobs.start_training), and
its own process (or thread) waits for its turn in :func:`wait_turn` before it starts, polling the database. Turns go
by run id (first come, first served): a queued job starts once fewer than ``max_parallel`` older queue jobs are still
active. Cancel is honoured while queued. A job whose process died (its recorded pid is no longer alive on this host)
holds no place: whenever the queue counts whose turn it is, such a job is marked failed there and then (as
core.jobs.reap_stale would), so a dead job never blocks the ones behind it.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from sqlalchemy import Engine, select

from core.runs import ACTIVE, RUN_KINDS, locked_run
from core.store import ModelRun, get_engine, session_scope
from core.store.models import utcnow

QUEUE_KEY = "queue"  # config flag of the runs that take part in the queue (background jobs)


def max_parallel() -> int:
    from core.config import get_settings

    return max(1, int(get_settings().max_parallel_jobs))


DEAD_MESSAGE = "the training process ended unexpectedly"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is still running (a finished child of this process is reaped: not alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a finished child of this process stays a zombie until reaped
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def process_gone(config: dict[str, Any] | None) -> bool:
    """True when the run's job is a subprocess of this host whose pid is no longer alive (a pid only means something on
    its own machine; a job with no pid yet, or a thread job, is never gone)."""
    job = (config or {}).get("job") or {}
    if job.get("mode") != "process" or not job.get("pid") or job.get("host") not in (None, socket.gethostname()):
        return False
    return not pid_alive(int(job["pid"]))


def _active_queue_ids(session) -> list[int]:
    """The ids of the active queue jobs, oldest first; those whose process died are marked failed in ``session``, left out."""
    runs = session.scalars(select(ModelRun).where(ModelRun.status.in_(ACTIVE), ModelRun.kind.in_(RUN_KINDS))).all()
    ids = []
    for run in runs:
        if not (run.config or {}).get(QUEUE_KEY):
            continue
        if process_gone(run.config):
            run.status, run.message, run.finished_at = "failed", f"{DEAD_MESSAGE} (found by the job queue)", utcnow()
            continue
        ids.append(int(run.id))
    return sorted(ids)


def ahead_of(run_id: int | None, *, engine: Engine | None = None) -> int:
    """How many active queue jobs are older than ``run_id`` (None: all of them: what a new job would wait behind)."""
    with session_scope(engine or get_engine()) as s:
        ids = _active_queue_ids(s)
    return sum(1 for i in ids if run_id is None or i < run_id)


def initial_status(*, engine: Engine | None = None, limit: int | None = None) -> str:
    """``created`` when a slot is free for a new job now, else ``queued``."""
    return "created" if ahead_of(None, engine=engine) < (limit or max_parallel()) else "queued"


def position_message(ahead: int, limit: int) -> str:
    """``queued, position N`` (1: next to start) for a job with ``ahead`` older active jobs and ``limit`` slots."""
    return f"queued, position {max(1, ahead - limit + 1)}"


def queue_position(run: dict[str, Any], *, engine: Engine | None = None, limit: int | None = None) -> int | None:
    """A queued run's place in the queue (1: next), None when it is not queued."""
    if run.get("status") != "queued":
        return None
    limit = limit or max_parallel()
    return max(1, ahead_of(run["id"], engine=engine) - limit + 1)


def wait_turn(run_id: int, *, engine: Engine | None = None, limit: int | None = None, poll: float = 0.5) -> bool:
    """Block while the run is ``queued`` and no slot is free; then mark it ``created`` and return True.

    Returns at once with True when the run is not queued (created / running: nothing to wait for), and with False
    (the run marked ``cancelled``) when it was cancelled while it waited, or already ended."""
    engine = engine or get_engine()
    limit = limit or max_parallel()
    shown = None
    while True:
        with locked_run(run_id, engine=engine) as (s, run):
            if run.status in ("created", "running"):
                return True
            if run.status != "queued":
                if run.status == "cancelling":
                    run.status, run.message, run.finished_at = "cancelled", "cancelled while queued", utcnow()
                return False
            ahead = sum(1 for i in _active_queue_ids(s) if i < run.id)
            if ahead < limit:
                run.status, run.message = "created", "starting"
                return True
            message = position_message(ahead, limit)
            if message != shown:
                run.message = shown = message
        time.sleep(poll)
