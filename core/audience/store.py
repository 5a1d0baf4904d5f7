"""Expansion runs in the database (ExpansionRun rows) and their audiences as CSV files under home.

The audience file ranks every user with features by the expanded model's score (gzip CSV:
``user_id,score``); :func:`audience` cuts it at a chosen size for export.
"""

from __future__ import annotations

import csv
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from core.audience.errors import AudienceError, NotFoundError
from core.csvsafe import frame_to_csv
from core.filestore import resolve
from core.store import ExpansionRun, get_engine, session_scope

AUDIENCE_DIR = "audiences"


def _write_audience(user_ids: list[str], scores: np.ndarray) -> str:
    rel = f"{AUDIENCE_DIR}/{uuid.uuid4().hex}.csv.gz"
    target = resolve(rel)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".tmp-" + target.name)
    # every text cell quoted: a user id holding a carriage return or a comma reads back as it was written
    pd.DataFrame({"user_id": user_ids, "score": np.round(scores.astype(np.float64), 6)}).to_csv(
        tmp, index=False, compression="gzip", quoting=csv.QUOTE_NONNUMERIC)
    tmp.replace(target)
    return rel


def save_run(result, *, engine: Engine | None = None) -> int:
    """Store an :class:`~core.audience.expand.ExpansionResult`: the audience file, then the row in one
    transaction; if the row cannot be written the file is removed (nothing stored half)."""
    engine = engine or get_engine()
    rel = _write_audience(result.audience_users, result.audience_scores) if result.audience_users else None
    try:
        with session_scope(engine) as s:
            row = ExpansionRun(package_id=result.package_id, model_run_id=result.model_run_id,
                               retrieval=result.retriever[:40], config=result.config,
                               metrics=_jsonable(result.metrics()), audience_path=rel)
            s.add(row)
            s.flush()
            run_id = row.id
    except BaseException:
        if rel:
            resolve(rel).unlink(missing_ok=True)
        raise
    result.run_id, result.audience_path = run_id, rel
    return run_id


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _summary(row: ExpansionRun) -> dict[str, Any]:
    m = row.metrics or {}
    return {"run_id": row.id, "package_id": row.package_id, "package": m.get("package_name"), "retriever": row.retrieval,
            "model_run_id": row.model_run_id, "created_at": row.created_at.isoformat(timespec="seconds"),
            "auc_initial": m.get("auc_initial"), "auc_expanded": m.get("auc_expanded"),
            "positives_before": m.get("positives_before"), "positives_after": m.get("positives_after"),
            "similar": (row.config or {}).get("similar"), "ratio": (row.config or {}).get("ratio")}


def list_runs(package_id: int | None = None, *, engine: Engine | None = None) -> list[dict[str, Any]]:
    """Stored runs, newest first (a summary of each)."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        q = select(ExpansionRun).order_by(ExpansionRun.id.desc())
        if package_id is not None:
            q = q.where(ExpansionRun.package_id == package_id)
        return [_summary(r) for r in s.scalars(q)]


def get_run(run_id: int, *, engine: Engine | None = None) -> dict[str, Any]:
    """One stored run: summary, config, all metrics, audience path."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        row = s.get(ExpansionRun, run_id)
        if row is None:
            raise NotFoundError(f"expansion run {run_id} does not exist")
        return {**_summary(row), "config": row.config, "metrics": row.metrics, "audience_path": row.audience_path}


def audience(run_id: int, size: float, *, engine: Engine | None = None) -> pd.DataFrame:
    """The top ``size`` (a fraction of users, e.g. 0.05) of a run's ranked audience: user_id, score."""
    if not 0 < size <= 1:
        raise AudienceError(f"the audience size must be a fraction in (0, 1] (got {size})")
    run = get_run(run_id, engine=engine)
    if not run["audience_path"]:
        raise AudienceError(f"expansion run {run_id} has no stored audience")
    path = resolve(run["audience_path"])
    if not Path(path).exists():
        raise AudienceError(f"the audience file of run {run_id} is missing ({run['audience_path']})")
    frame = pd.read_csv(path, dtype={"user_id": str})
    return frame.head(max(1, round(size * len(frame)))).reset_index(drop=True)


def audience_csv(run_id: int, size: float, *, engine: Engine | None = None) -> str:
    """The chosen audience as CSV text (user_id,score), for a download button or a file.

    Safe to open in a spreadsheet: a user id that starts like a formula (``=``, ``+``, ``-``, ``@``,
    tab, carriage return) gets a leading ``'`` (see :mod:`core.csvsafe`); scores stay numbers.
    """
    return frame_to_csv(audience(run_id, size, engine=engine))
