"""Run an importer from uploaded files with a progress bar, and show its report."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core.progress import ProgressFn
from ui.common import data_changed


def st_progress(label: str) -> tuple[ProgressFn, Any]:
    """A core ProgressFn drawing one st.progress bar; returns (callback, the bar)."""
    bar = st.progress(0.0, text=label)

    def report(done: int, total: int, message: str) -> None:
        fraction = min(max(done / total, 0.0), 1.0) if total else 0.0
        bar.progress(fraction, text=f"{message} ({done:,}/{total:,})" if total else message)

    return report, bar


def importer(module: str, name: str) -> Callable[..., Any] | None:
    """``module.name`` imported lazily; None (with a message on the page) when this build lacks it."""
    import importlib

    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        st.error(f"This installation has no importer `{module}.{name}` yet.", icon=":material/construction:")
        return None


def save_upload(upload, folder: Path, stem: str) -> Path:
    """Write an uploaded file to ``folder/stem/`` under its own name made safe (messages then name
    the user's file); the extension is kept, lower-cased."""
    name = Path(upload.name).name
    safe = re.sub(r"[^\w.\-]+", "_", Path(name).stem).strip("._") or stem
    path = folder / stem / f"{safe}{Path(name).suffix.lower()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(upload.getvalue())
    return path


def run_import(label: str, uploads: dict[str, Any], call: Callable[[dict[str, Path], ProgressFn], Any]) -> None:
    """Save ``uploads`` ({stem: UploadedFile}) to a temp dir, run ``call(paths, progress)`` and show the report.

    ``call`` returns an ImportReport, or raises ImportRejected (rows listed, nothing imported),
    ValueError / FileNotFoundError (the files are unusable) — each shown as a clear message.
    """
    from core.ingest.report import ImportRejected
    from core.uploads import UploadTooLarge, check_upload_size

    st.session_state.pop(_result_key(label), None)
    try:
        for upload in uploads.values():
            check_upload_size(Path(upload.name).name, upload.size)
    except UploadTooLarge as exc:
        st.error(f"**Nothing was imported.** {exc}", icon=":material/block:")
        return
    progress, bar = st_progress(f"{label}: starting")
    with tempfile.TemporaryDirectory(prefix="adlens-upload-") as tmp:
        paths = {stem: save_upload(upload, Path(tmp), stem) for stem, upload in uploads.items()}
        try:
            report = call(paths, progress)
        except ImportRejected as exc:
            bar.empty()
            show_rejected(exc.report)
            return
        except (ValueError, OSError) as exc:  # unusable files (FileNotFoundError is an OSError)
            bar.empty()
            st.error(f"**Nothing was imported.** {exc}", icon=":material/block:")
            return
    bar.progress(1.0, text=f"{label}: done")
    data_changed()
    st.session_state[_result_key(label)] = report
    st.rerun()  # redraw every count and the grid with the new rows; the report is shown by last_report()


def _result_key(label: str) -> str:
    return f"import-report:{label}"


def last_report(label: str) -> None:
    """Show the report of this session's last successful ``label`` import, if any."""
    report = st.session_state.get(_result_key(label))
    if report is not None:
        show_success(report)


def show_success(report) -> None:
    st.success(f"**{report.kind}: imported {report.imported:,}**, already present {report.skipped:,}.",
               icon=":material/check_circle:")
    if report.details:
        with st.expander("Details"):
            st.json(report.details)


def rejected_table(report) -> pd.DataFrame:
    return pd.DataFrame(
        [{"row": e.row, "column": e.column or "", "reason": e.reason} for e in report.errors],
        columns=["row", "column", "reason"],
    )


def show_rejected(report) -> None:
    st.error(f"**Nothing was imported:** {report.rejected:,} row(s) were rejected. "
             "Fix these rows and upload the files again — the import is all-or-nothing.", icon=":material/block:")
    st.dataframe(rejected_table(report), hide_index=True, width="stretch")
