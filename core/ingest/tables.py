"""Reading import tables (CSV or Parquet) and checking their columns, with messages a person can act on.

Row numbers follow what the person sees: for CSV the header is row 1 and the first data row is
row 2 (as in a spreadsheet); for Parquet the first record is row 1. :class:`Table` carries the
offset so importers never have to think about it.
"""

from __future__ import annotations

import csv
import difflib
import io
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.uploads import check_upload_size

CSV_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": ","}
PARQUET_SUFFIXES = {".parquet", ".pq"}


@dataclass
class Table:
    """A table read from a file: a DataFrame with normalised column names and a row-number offset.

    ``frame`` keeps the original row order and a 0-based RangeIndex; ``row_number(i)`` is the number
    the person sees for positional row ``i``. Completely blank CSV lines are dropped from ``frame``
    but keep their place in the numbering (``frame.index`` holds the original positions).
    """

    frame: pd.DataFrame
    path: Path
    first_row: int  # row number of positional index 0: 2 for CSV (header = row 1), 1 for Parquet
    kind: str  # "csv" or "parquet"

    def row_number(self, index: int) -> int:
        return int(index) + self.first_row

    def row_numbers(self) -> np.ndarray:
        return self.frame.index.to_numpy(dtype=np.int64) + self.first_row


def _decode_csv(path: Path, data: bytes) -> str:
    """The file's text (UTF-8, with or without BOM), or ValueError naming the encoding to save it in."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ValueError(f"{path.name} is UTF-16 text (it starts with a UTF-16 byte-order mark); AdLens reads UTF-8 only. "
                         "Save it again as 'CSV UTF-8' (in Excel: File > Save As > CSV UTF-8) and retry.")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise ValueError(f"{path.name} is not a CSV text file (it holds a NUL byte on line {line}: binary data, or UTF-16 "
                         "without a byte-order mark). Save it as 'CSV UTF-8' and retry.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(_not_utf8_message(path, data, exc)) from None


def _not_utf8_message(path: Path, data: bytes, exc: UnicodeDecodeError) -> str:
    line = data[: exc.start].count(b"\n") + 1
    return (
        f"{path.name} is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line} cannot be read). "
        "Save it again as 'CSV UTF-8' (in Excel: File > Save As > CSV UTF-8) and retry."
    )


def _header_of(text: str, sep: str) -> list[str]:
    first = next(csv.reader(io.StringIO(text), delimiter=sep), [])
    return first


def read_table(path: str | Path, *, what: str = "file") -> Table:
    """Read a CSV (UTF-8, every cell as text) or Parquet file; raise a clear error if it cannot be used.

    Column names are stripped of surrounding spaces. Raises FileNotFoundError when the file is
    missing, ValueError when it is empty, not UTF-8, not a table, or has blank/duplicate column names.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.is_dir():
        raise ValueError(f"{what} {path} is a folder; expected a CSV or Parquet file")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        check_upload_size(path.name, path.stat().st_size)
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for a damaged file
            raise ValueError(f"{path.name} could not be read as Parquet ({type(exc).__name__}: {exc})") from None
        frame.columns = [str(c).strip() for c in frame.columns]
        _check_header(list(frame.columns), path)
        return Table(frame.reset_index(drop=True), path, first_row=1, kind="parquet")
    if suffix not in CSV_SUFFIXES:
        raise ValueError(f"{path.name}: unsupported file type '{suffix or '(none)'}'; use CSV (UTF-8) or Parquet")
    sep = CSV_SUFFIXES[suffix]
    try:
        check_upload_size(path.name, path.stat().st_size)
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"{path.name} could not be read ({exc.strerror or exc})") from None
    text = _decode_csv(path, data)
    if not text.strip():
        raise ValueError(f"{path.name} is empty: expected a header row and at least one data row")
    header = [h.strip() for h in _header_of(text, sep)]
    _check_header(header, path)
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_filter=False,
            skip_blank_lines=False, skipinitialspace=False,
        )
    except pd.errors.ParserError as exc:
        raise ValueError(f"{path.name} is not a well-formed CSV file ({exc})") from None
    frame.columns = header
    # a completely blank line is not data; it keeps its row number but is dropped from the frame
    blank = (frame == "").all(axis=1) if len(frame.columns) else pd.Series(False, index=frame.index)
    if blank.any():
        frame = frame[~blank]
    return Table(frame, path, first_row=2, kind="csv")


def _check_header(header: Sequence[str], path: Path) -> None:
    if not header or all(h == "" for h in header):
        raise ValueError(f"{path.name} has no header row")
    if any(h == "" for h in header):
        pos = [i + 1 for i, h in enumerate(header) if h == ""]
        raise ValueError(f"{path.name}: column(s) {', '.join(map(str, pos))} of the header have no name")
    seen: set[str] = set()
    dups = sorted({h for h in header if h in seen or seen.add(h)})
    if dups:
        raise ValueError(f"{path.name}: column name(s) used more than once: {', '.join(repr(d) for d in dups)}")


def suggest(name: str, choices: Iterable[str]) -> str | None:
    """The closest known column name to ``name`` (difflib), if any is close enough."""
    matches = difflib.get_close_matches(name.lower(), [c.lower() for c in choices], n=1, cutoff=0.6)
    if not matches:
        return None
    for choice in choices:
        if choice.lower() == matches[0]:
            return choice
    return None


def check_columns(
    table: Table, required: Sequence[str], optional: Sequence[str] = (), *, allow_extra: bool = False, what: str = "file"
) -> None:
    """Match the table's columns to the expected ones (case-insensitive) and rename them to canonical form.

    Raises ValueError listing the missing columns, the unknown ones (unless ``allow_extra``) and,
    for each, the closest expected name ("did you mean 'text'?").
    """
    known = list(required) + list(optional)
    by_lower = {k.lower(): k for k in known}
    rename: dict[str, str] = {}
    for col in table.frame.columns:
        canon = by_lower.get(col.lower())
        if canon is not None:
            rename[col] = canon
    if len(set(rename.values())) != len(rename):
        dup = sorted({v for v in rename.values() if list(rename.values()).count(v) > 1})
        raise ValueError(f"{table.path.name}: column {dup[0]!r} appears more than once (names are not case-sensitive)")
    table.frame = table.frame.rename(columns=rename)
    present = set(table.frame.columns)
    missing = [c for c in required if c not in present]
    unknown = [c for c in table.frame.columns if c not in rename.values()]
    if not missing and (allow_extra or not unknown):
        return
    parts: list[str] = []
    if missing:
        parts.append(f"missing column(s): {', '.join(repr(c) for c in missing)}")
    if unknown and not allow_extra:
        hints = []
        for col in unknown:
            close = suggest(col, [c for c in known if c not in present] or known)
            hints.append(f"'{col}'" + (f" (did you mean '{close}'?)" if close else ""))
        parts.append(f"unknown column(s): {', '.join(hints)}")
    expected = ", ".join(required) + (f"; optional: {', '.join(optional)}" if optional else "")
    raise ValueError(f"{table.path.name} ({what}) cannot be imported: {'; '.join(parts)}. Expected columns: {expected}.")


def cell_text(value: Any) -> str:
    """A cell as stripped text: None/NaN -> '', 12.0 -> '12' (Parquet integer columns with gaps)."""
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if value.is_integer():
            return str(int(value))
    if value is pd.NaT or (not isinstance(value, str | bytes) and pd.isna(value) is True):
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").strip()
    return str(value).strip()


def text_column(table: Table, column: str) -> pd.Series:
    """A column as stripped strings ('' for empty), whatever the file type."""
    series = table.frame[column]
    if table.kind == "csv":
        return series.astype(str).str.strip()
    return series.map(cell_text).astype(str)
