"""Import users and their features from a CSV (or Parquet): ``user_id`` plus one column per feature.

Values are kept as given: cells that read as numbers become numbers ("18" -> 18, "0.5" -> 0.5;
"007" stays text so codes keep their zeros), an empty cell becomes null, anything else stays text.
A user already stored gets the file's features merged over the stored ones: identical -> skipped,
different -> updated (``details.updated``). ``imported`` counts created plus updated users.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, insert, select, update

from core.ingest.common import engine_or_default, progress_or_silent, raise_if_rejected, record_run
from core.ingest.report import ImportReport
from core.ingest.tables import Table, read_table, suggest, text_column
from core.progress import ProgressFn
from core.store import IN_CHUNK, User, chunks, session_scope

STAGE = "users"
MAX_USER_ID = 100
INT_PATTERN = r"[+-]?(?:0|[1-9][0-9]*)"
FLOAT_PATTERN = (
    r"[+-]?(?:0|[1-9][0-9]*)?\.[0-9]+(?:[eE][+-]?[0-9]+)?"  # 0.5, .5, 2.5e3
    r"|[+-]?(?:0|[1-9][0-9]*)(?:\.[0-9]*)?[eE][+-]?[0-9]+"  # 1e3, 1.e3
    r"|[+-]?(?:0|[1-9][0-9]*)\."  # 1.
)


def parse_value(cell: str) -> Any:
    """One CSV cell as a JSON value: '' -> None, integer text -> int, decimal text -> float, else the text."""
    cell = cell.strip()
    if not cell:
        return None
    series = _typed_column(pd.Series([cell], dtype=object))
    return series[0]


def _typed_column(texts: pd.Series) -> list[Any]:
    """Vectorised :func:`parse_value` over a column of stripped strings."""
    texts = texts.astype(str)
    out = texts.astype(object).to_numpy(copy=True)
    out[(texts == "").to_numpy()] = None
    ints = texts.str.fullmatch(INT_PATTERN).to_numpy(dtype=bool)
    if ints.any():
        out[ints] = [int(v) for v in texts[ints]]
    floats = texts.str.fullmatch(FLOAT_PATTERN).to_numpy(dtype=bool) & ~ints
    if floats.any():
        vals = [float(v) for v in texts[floats]]
        out[floats] = [v if math.isfinite(v) else t for v, t in zip(vals, texts[floats], strict=True)]
    return out.tolist()


def _native(value: Any) -> Any:
    """A Parquet cell as a JSON value (numpy scalars -> Python, NaN/None -> None)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool | int | float):
        return value
    if pd.isna(value) is True:
        return None
    return str(value)


def _feature_columns(table: Table) -> tuple[str, list[str]]:
    cols = list(table.frame.columns)
    id_col = next((c for c in cols if c.lower() == "user_id"), None)
    if id_col is None:
        close = suggest("user_id", cols)
        hint = f" (did you mean '{close}'?)" if close else ""
        raise ValueError(f"{table.path.name} (users) cannot be imported: missing column 'user_id'{hint}. "
                         "Expected: user_id plus one column per feature.")
    features = [c for c in cols if c != id_col]
    if not features:
        raise ValueError(f"{table.path.name} (users) has only a user_id column: add at least one feature column")
    return id_col, features


def import_users(csv: Path, *, engine: Engine | None = None, progress: ProgressFn | None = None) -> ImportReport:
    """Create or update every user of ``csv``, or none (ImportRejected lists every bad row)."""
    progress = progress_or_silent(progress)
    csv = Path(csv)
    table = read_table(csv, what="users file")
    id_col, feature_cols = _feature_columns(table)
    if table.frame.empty:
        raise ValueError(f"{csv.name} has a header but no users")
    report = ImportReport(kind="users", source=str(csv))
    total = len(table.frame)
    progress(0, total, f"{STAGE}: checking")
    ids = text_column(table, id_col).tolist()
    if table.kind == "csv":
        columns = [_typed_column(table.frame[c].astype(str).str.strip()) for c in feature_cols]
    else:
        columns = [[_native(v) for v in table.frame[c].tolist()] for c in feature_cols]
    first: dict[str, int] = {}
    incoming: dict[str, dict[str, Any]] = {}
    for row_no, user_id, values in zip(table.row_numbers().tolist(), ids, zip(*columns, strict=True), strict=True):
        if not user_id:
            report.reject(row_no, "user_id is empty", "user_id")
        elif len(user_id) > MAX_USER_ID:
            report.reject(row_no, f"user_id is longer than {MAX_USER_ID} characters", "user_id")
        elif user_id in first:
            report.reject(row_no, f"user_id '{user_id}' appears more than once in the file (first on row {first[user_id]})", "user_id")
        else:
            first[user_id] = row_no
            incoming[user_id] = dict(zip(feature_cols, values, strict=True))
    raise_if_rejected(report)

    engine = engine_or_default(engine)
    stored: dict[str, dict[str, Any]] = {}
    with session_scope(engine) as s:
        for part in chunks(list(incoming), IN_CHUNK):
            stored.update(s.execute(select(User.id, User.features).where(User.id.in_(part))).all())
    created: list[dict[str, Any]] = []
    updated: list[dict[str, Any]] = []
    for user_id, feats in incoming.items():
        old = stored.get(user_id)
        if old is None:
            created.append({"id": user_id, "features": feats, "source": "manifest"})
            continue
        merged = {**(old or {}), **feats}
        if merged == old:
            report.skipped += 1
        else:
            updated.append({"id": user_id, "features": merged})
    with session_scope(engine) as s:
        done = 0
        for part in chunks(created, 5000):
            s.execute(insert(User), list(part))
            done += len(part)
            progress(done, len(created) + len(updated), f"{STAGE}: storing")
        for part in chunks(updated, 5000):
            s.execute(update(User), list(part))
            done += len(part)
            progress(done, len(created) + len(updated), f"{STAGE}: storing")
        report.imported = len(created) + len(updated)
        report.details = {"created": len(created), "updated": len(updated), "features": feature_cols}
        record_run(s, report)
    return report
