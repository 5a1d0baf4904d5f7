"""The shared Typer application and output helpers; commands live in ``core/commands/``.

Every command that produces results accepts ``--json`` and then prints exactly one JSON object
on stdout (progress bars go to stderr and are hidden). Exit status 1 means the command ran but
rejected input (e.g. an import with bad rows); 2 means it could not run.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="AdLens: review ad creatives and audiences.")
ingest_app = typer.Typer(no_args_is_help=True, help="Import ads, COCO, click logs and user features (all-or-nothing).")
app.add_typer(ingest_app, name="ingest")

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object instead of text")]


def emit(result: dict[str, Any], as_json: bool, text: str | None = None) -> None:
    if as_json:
        sys.stdout.write(json.dumps(result, default=str, ensure_ascii=False) + "\n")
    else:
        typer.echo(text if text is not None else json.dumps(result, indent=2, default=str, ensure_ascii=False))


def fail(message: str, as_json: bool, code: int = 2, **extra: Any) -> None:
    if as_json:
        emit({"ok": False, "error": message, **extra}, True)
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def import_result(run, as_json: bool) -> None:
    """Run an importer; print its report; exit 1 when rows were rejected (nothing was imported)."""
    from core.ingest.report import ImportRejected
    from core.progress import tqdm_progress

    try:
        with tqdm_progress(enabled=not as_json) as progress:
            report = run(progress)
    except ImportRejected as exc:
        emit(exc.report.to_dict(), as_json, exc.report.summary())
        raise typer.Exit(1) from None
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc), as_json)
    emit(report.to_dict(), as_json, report.summary())
