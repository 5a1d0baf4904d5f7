"""Model runs: one ModelRun row per trained (or embedded) model, with its files under ``home/runs/<id>/``.

A run records its kind, config, data split, code version (git commit or package version, plus a hash
of the ``core/embed`` sources), status and progress, metrics, and the relative paths of its checkpoint
and FAISS index. Status values: queued | created | running | cancelling | done | failed | cancelled.
Every write of a run row goes through this module; it also holds the progress / cancel hooks that tie a
running job to its row (:func:`db_progress`, :func:`with_db_progress`, :func:`db_should_stop`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.config import REPO_ROOT
from core.progress import ProgressFn
from core.store import ModelRun, get_engine, session_scope
from core.store.models import utcnow

RUN_KINDS = ("ion", "totyemb", "text", "image", "concat", "image-regions")  # embedding runs: what list_runs shows by default
MATCHER_PREFIX = "matcher-"  # relevance scorers of core.matching: matcher-<scorer>, and matcher-eval for their evaluations
DETECTOR_KIND = "detector"  # region detectors trained by core.regions.train
EXPANSION_TABLE_KIND = "expansion-table"  # an averaged audience-expansion table over packages (core.audience.expand)
STATUSES = ("queued", "created", "running", "cancelling", "done", "failed", "cancelled")
ACTIVE = ("queued", "created", "running", "cancelling")  # queued: a background job waiting for a free slot (core.jobqueue)


class RunNotFound(KeyError):
    """No model run with that id."""

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


@lru_cache(maxsize=1)
def code_version() -> str:
    """``git:<short commit>`` (or ``pkg:<version>``) plus ``+embed:<sha256[:12]>`` of core/embed/*.py."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "core" / "embed").glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        base = f"git:{commit}"
    except (OSError, subprocess.SubprocessError):
        try:
            from importlib.metadata import version

            base = f"pkg:{version('adlens')}"
        except Exception:  # noqa: BLE001 - not installed as a package
            base = "pkg:unknown"
    return f"{base}+embed:{digest.hexdigest()[:12]}"


def run_dir(run_id: int) -> str:
    """Relative (to home) folder of a run's files."""
    return f"runs/{int(run_id)}"


def to_dict(run: ModelRun) -> dict[str, Any]:
    return {
        "id": run.id, "kind": run.kind, "name": run.name, "status": run.status, "config": run.config or {},
        "data_split": run.data_split or {}, "code_version": run.code_version, "metrics": run.metrics or {},
        "checkpoint_path": run.checkpoint_path, "index_path": run.index_path, "progress": float(run.progress or 0.0),
        "message": run.message or "", "created_at": run.created_at, "finished_at": run.finished_at,
    }


def _check_kind(kind: str) -> None:
    matcher = kind.startswith(MATCHER_PREFIX) and len(kind) > len(MATCHER_PREFIX)
    if kind not in (*RUN_KINDS, DETECTOR_KIND, EXPANSION_TABLE_KIND) and not matcher:
        raise ValueError(f"unknown model kind {kind!r}; choose from {', '.join(RUN_KINDS)}, {DETECTOR_KIND} or {MATCHER_PREFIX}<scorer>")


def _check_name(name: str) -> None:
    limit = ModelRun.__table__.c.name.type.length
    if len(name) > limit:
        raise ValueError(f"a run name may have at most {limit} characters (this one has {len(name)})")


def _insert(kind: str, name: str, config: dict | None, data_split: dict | None, version: str | None, engine: Engine | None,
            **fields: Any) -> int:
    """One new run row (kind and name checked first); returns its id."""
    from core.stale import stamp

    _check_kind(kind)
    _check_name(name)
    engine = engine or get_engine()
    config = stamp(config, engine)  # the demo world it is built on (core.stale: runs of a replaced world become stale)
    with session_scope(engine) as s:
        run = ModelRun(kind=kind, name=name, config=config, data_split=dict(data_split or {}),
                       code_version=version or code_version(), **fields)
        s.add(run)
        s.flush()
        return int(run.id)


def create_run(kind: str, name: str | None = None, config: dict | None = None, *, engine: Engine | None = None,
               data_split: dict | None = None, version: str | None = None) -> int:
    """A new run in status ``created``; returns its id. ``version`` replaces :func:`code_version` (e.g. a file format)."""
    return _insert(kind, name or kind, config, data_split, version, engine, status="created", progress=0.0, message="queued")


def record_run(kind: str, name: str, config: dict, *, metrics: dict, data_split: dict | None = None, version: str | None = None,
               engine: Engine | None = None, checkpoint_path: str | None = None) -> int:
    """A run whose results were computed before it was stored (e.g. a matching evaluation): one ``done`` row; returns its id."""
    return _insert(kind, name, config, data_split, version, engine, status="done", metrics=metrics, progress=1.0, message="done",
                   finished_at=utcnow(), checkpoint_path=checkpoint_path)


def _row(session, run_id: int) -> ModelRun:
    """The run's row in an open session; RunNotFound when there is none."""
    run = session.get(ModelRun, int(run_id))
    if run is None:
        raise RunNotFound(f"model run {run_id} does not exist")
    return run


def get_run(run_id: int, *, engine: Engine | None = None) -> dict[str, Any]:
    engine = engine or get_engine()
    with session_scope(engine) as s:
        run = _row(s, run_id)
        return to_dict(run)


def list_runs(kind: str | None = None, status: str | None = None, *, engine: Engine | None = None,
              limit: int | None = None, fresh: bool = False) -> list[dict[str, Any]]:
    """Runs (newest first) of one kind (any kind, e.g. ``matcher-eval``), else of the embedding kinds; optionally of one status.
    ``fresh``: without the runs built on a demo world that is gone (core.stale), what defaults choose from."""
    from core.stale import is_stale

    engine = engine or get_engine()
    query = select(ModelRun).where(ModelRun.kind == kind if kind else ModelRun.kind.in_(RUN_KINDS)).order_by(ModelRun.id.desc())
    if status:
        query = query.where(ModelRun.status == status)
    if limit is not None and not fresh:
        query = query.limit(limit)
    with session_scope(engine) as s:
        runs = [to_dict(r) for r in s.scalars(query)]
    return [r for r in runs if not is_stale(r)][:limit] if fresh else runs


def update_run(run_id: int, *, engine: Engine | None = None, finished: bool = False, **fields: Any) -> None:
    """Set columns of a run (status, progress, message, metrics, config, data_split, paths)."""
    engine = engine or get_engine()
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"unknown run status {fields['status']!r}")
    with session_scope(engine) as s:
        run = _row(s, run_id)
        for key, value in fields.items():
            setattr(run, key, value)
        if finished:
            run.finished_at = utcnow()


@contextmanager
def locked_run(run_id: int, *, engine: Engine | None = None) -> Iterator[tuple[Session, ModelRun]]:
    """The run's row in a write transaction that holds its lock until the block ends (committed then; rolled back on error).

    PostgreSQL: ``SELECT ... FOR UPDATE`` locks the row; SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock
    before the row is read. Another writer of the same row waits, so a read-modify-write in the block loses nothing.
    """
    engine = engine or get_engine()
    with session_scope(engine) as s:
        if engine.dialect.name == "sqlite":
            s.connection().exec_driver_sql("BEGIN IMMEDIATE")
            run = _row(s, run_id)
        else:
            run = s.get(ModelRun, int(run_id), with_for_update=True)
            if run is None:
                raise RunNotFound(f"model run {run_id} does not exist")
        yield s, run


def merge_run_config(run_id: int, patch: dict[str, Any], *, engine: Engine | None = None, **fields: Any) -> dict[str, Any]:
    """Merge ``patch`` into the run's config (and set other columns ``fields``) in one locked transaction; returns the new config.

    Use this, never ``update_run(config={**run["config"], ...})``: between that read and write another process (the job
    itself, the app recording the job's pid) may have merged its own keys, which the write would drop.
    """
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"unknown run status {fields['status']!r}")
    with locked_run(run_id, engine=engine) as (_s, run):
        config = {**(run.config or {}), **patch}
        run.config = config
        for key, value in fields.items():
            setattr(run, key, value)
        return dict(config)


def error_message(error: BaseException | str) -> str:
    """What a failed run's row says about its error: ``ErrorClass: text`` (at most 2000 characters)."""
    text = error if isinstance(error, str) else f"{error.__class__.__name__}: {error}".rstrip(": ")
    return text[:2000]


def fail_run(run_id: int, error: BaseException | str, *, engine: Engine | None = None) -> bool:
    """End a still active run as ``failed`` with the error as its message; False when it had already ended (or the
    database cannot be written: the original error matters more than this one)."""
    try:
        with locked_run(run_id, engine=engine) as (_s, run):
            if run.status not in ACTIVE:
                return False
            run.status, run.message, run.finished_at = "failed", error_message(error), utcnow()
            return True
    except Exception:  # noqa: BLE001 - e.g. the database is what failed; the caller re-raises the original error
        return False


@contextmanager
def ends_failed_on_error(run_id: int, *, engine: Engine | None = None) -> Iterator[None]:
    """Any exception in the block (after the run started) ends the run ``failed`` with its message, then propagates.

    RunCancelled ends it ``cancelled`` instead. A run already ended in the block (done, cancelled) is left as it is.
    """
    try:
        yield
    except RunCancelled:
        with locked_run(run_id, engine=engine) as (_s, run):
            if run.status in ACTIVE:
                run.status, run.message, run.finished_at = "cancelled", "cancelled", utcnow()
        raise
    except BaseException as exc:
        fail_run(run_id, exc, engine=engine)
        raise


def db_progress(run_id: int, engine: Engine, every: float = 0.5) -> ProgressFn:
    """A ProgressFn that writes done/total and the message to the run's row at most every ``every`` seconds."""
    last = [0.0]

    def report(done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if now - last[0] < every and done < total:
            return
        last[0] = now
        update_run(run_id, engine=engine, progress=min(1.0, done / total) if total else 0.0, message=message[:500])

    return report


def with_db_progress(progress: ProgressFn, run_id: int, engine: Engine) -> ProgressFn:
    """``progress`` plus a throttled write of it to the run's row (so the app sees CLI runs move too)."""
    to_db = db_progress(run_id, engine)

    def report(done: int, total: int, message: str) -> None:
        progress(done, total, message)
        to_db(done, total, message)

    return report


def db_should_stop(run_id: int, engine: Engine, every: float = 0.5) -> Callable[[], bool]:
    """True once the run's status is ``cancelling`` (the row is read at most every ``every`` seconds)."""
    state = {"at": 0.0, "stop": False}

    def should_stop() -> bool:
        now = time.monotonic()
        if not state["stop"] and now - state["at"] >= every:
            state["at"] = now
            state["stop"] = run_status(run_id, engine=engine) == "cancelling"
        return state["stop"]

    return should_stop


class RunCancelled(RuntimeError):
    """The run's job was asked to stop (status ``cancelling``) and stopped at its next progress report."""


def cancellable(progress: ProgressFn, should_stop: Callable[[], bool]) -> ProgressFn:
    """``progress`` that raises RunCancelled once ``should_stop()``: any long work that reports progress can be cancelled."""

    def report(done: int, total: int, message: str) -> None:
        if should_stop():
            raise RunCancelled("cancelled")
        progress(done, total, message)

    return report


def run_status(run_id: int, *, engine: Engine | None = None) -> str:
    engine = engine or get_engine()
    with session_scope(engine) as s:
        status = s.scalar(select(ModelRun.status).where(ModelRun.id == int(run_id)))
    if status is None:
        raise RunNotFound(f"model run {run_id} does not exist")
    return status


def start_run(run_id: int, message: str = "starting", *, engine: Engine | None = None) -> bool:
    """created -> running; False (and the run marked cancelled) when a cancel came first."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        run = _row(s, run_id)
        if run.status == "cancelling":
            run.status, run.message, run.finished_at = "cancelled", "cancelled before it started", utcnow()
            return False
        run.status, run.message, run.progress = "running", message, 0.0
        return True


def request_cancel(run_id: int, *, engine: Engine | None = None) -> bool:
    """Ask a running job to stop (status -> cancelling); False when the run is not active."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        run = _row(s, run_id)
        if run.status not in ("queued", "created", "running"):
            return False
        run.status, run.message = "cancelling", "cancel requested"
        return True


def delete_run(run_id: int, *, engine: Engine | None = None) -> None:
    """Remove the run's row and its files (refused while it is running)."""
    from core.filestore import resolve
    from core.store import ExpansionRun

    engine = engine or get_engine()
    with session_scope(engine) as s:
        run = _row(s, run_id)
        if run.status in ("running", "cancelling"):
            raise ValueError(f"model run {run_id} is {run.status}: cancel it first")
        for exp in s.scalars(select(ExpansionRun).where(ExpansionRun.model_run_id == run.id)):
            exp.model_run_id = None
        s.delete(run)
    folder = Path(resolve(run_dir(run_id)))
    if folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)


# model options whose non-default values make a run an experiment variant rather than the model itself
VARIANT_OPTIONS = {"neck": "none", "word_init": "random", "text_norm": "post", "sca": "literal", "region_norm": "none",
                   "recipe": "paper", "vocab": "catalogue", "word_tuning": "frozen"}


def is_variant(run: dict[str, Any]) -> bool:
    """True for an ablation, a paper-setting or exploratory variant (e.g. ``neck=none``, ``--region-drop 0.2``): not what
    "the ION model" should mean."""
    config = run.get("config") or {}
    return (bool(config.get("ablate")) or any(config.get(k) == v for k, v in VARIANT_OPTIONS.items())
            or bool(config.get("region_drop")))


def full_models_first(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``runs`` with full models before ablations / variants, each group keeping its order (e.g. newest first)."""
    return sorted(runs, key=is_variant)


def latest_done(kind: str | None = None, *, engine: Engine | None = None) -> dict[str, Any] | None:
    """The newest finished run with an index (of ``kind`` if given), preferring full models over ablations / variants."""
    runs = full_models_first([r for r in list_runs(kind, "done", engine=engine, fresh=True) if r["index_path"]])
    return runs[0] if runs else None
