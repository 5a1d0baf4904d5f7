"""Small helpers shared by the importers: chunking, deterministic hash splits, import-run records."""

from __future__ import annotations

import hashlib

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.ingest.report import ImportRejected, ImportReport
from core.progress import ProgressFn, no_progress
from core.store import ImportRun, get_engine


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by ``key`` (sha256), the same on every machine and Python version."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:13], 16) / float(16**13)


def split_for(key: str, train: float, val: float) -> str:
    """'train' for a fraction ``train`` of keys, 'val' for the next ``val``, 'test' for the rest."""
    f = stable_fraction(key)
    if f < train:
        return "train"
    if f < train + val:
        return "val"
    return "test"


def engine_or_default(engine: Engine | None) -> Engine:
    return engine if engine is not None else get_engine()


def progress_or_silent(progress: ProgressFn | None) -> ProgressFn:
    return progress if progress is not None else no_progress


def raise_if_rejected(report: ImportReport) -> None:
    """All-or-nothing: any rejected row stops the import before anything is written."""
    if report.errors:
        report.errors.sort(key=lambda e: (e.row, e.column or ""))
        raise ImportRejected(report)


def record_run(session: Session, report: ImportReport) -> None:
    session.add(
        ImportRun(kind=report.kind, source=report.source, imported=report.imported, skipped=report.skipped, rejected=report.rejected)
    )
