"""bench/results.json: every benchmark's latest result, the machine it ran on and the date, and the README's table of them.

``python -m core bench`` records each benchmark it runs here (a full and a ``--quick`` run are kept apart); the README's
block between :data:`START` and :data:`END` is :func:`render` of this file (``python -m core bench-report --write-readme``),
and a test checks the two agree. Each bench/bench_<name>.py may define ``summary(result) -> [(what, figure), ...]``: the
rows of its table; without one, the result's top-level numbers are listed.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import REPO_ROOT

RESULTS_PATH = REPO_ROOT / "bench" / "results.json"
README_PATH = REPO_ROOT / "README.md"
FORMAT = "adlens-bench/1"
START = "<!-- bench-results:start (generated from bench/results.json by `python -m core bench-report --write-readme`) -->"
END = "<!-- bench-results:end -->"

Summary = Callable[[dict[str, Any]], Iterable[tuple[str, str]]]


def entry_key(name: str, quick: bool) -> str:
    return f"{name} (quick)" if quick else name


def load(path: Path = RESULTS_PATH) -> dict[str, Any]:
    """The stored results (an empty store when the file is absent); a damaged file is an error, never silently replaced."""
    if not path.exists():
        return {"format": FORMAT, "entries": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc}); fix or delete it, then re-run the benchmarks") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("entries"), dict):
        raise ValueError(f"{path} is not an AdLens benchmark file (format {FORMAT})")
    return data


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # a file of the repository, not a private temporary one
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record(name: str, result: dict[str, Any], *, quick: bool, machine: dict[str, Any], command: str,
           path: Path = RESULTS_PATH, when: datetime | None = None) -> dict[str, Any]:
    """Store one benchmark's result (replacing the previous one of the same name and size); returns the whole store."""
    data = load(path)
    data["entries"][entry_key(name, quick)] = {
        "benchmark": name, "quick": quick, "command": command, "machine": machine,
        "date": (when or datetime.now(UTC)).replace(microsecond=0).isoformat(), "result": result,
    }
    _write(path, data)
    return data


def default_rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The result's top-level numbers and words, for a benchmark without a ``summary``."""
    return [(str(k), f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v))
            for k, v in result.items() if isinstance(v, int | float | str | bool)]


def _machine_line(machine: dict[str, Any]) -> str:
    parts = [f"{machine.get('cpu_count', '?')} CPUs"]
    if machine.get("device_detail") or machine.get("device"):
        parts.append(str(machine.get("device_detail") or machine.get("device")))
    if machine.get("load_average"):
        parts.append("load average " + " / ".join(f"{v:.1f}" for v in machine["load_average"]))
    if machine.get("torch"):
        parts.append(f"torch {machine['torch']}")
    return ", ".join(parts)


def render(data: dict[str, Any], summaries: dict[str, Summary]) -> str:
    """Markdown of every stored entry (sorted by key): the command, date and machine, then a table of its figures."""
    lines: list[str] = []
    for key in sorted(data["entries"]):
        entry = data["entries"][key]
        result = entry["result"]
        lines += [f"**{key}** — `{entry['command']}`, {entry['date'][:10]}, {_machine_line(entry['machine'])}:", "",
                  "| what | figure |", "|---|---|"]
        if "error" in result:
            rows: Iterable[tuple[str, str]] = [("error", str(result["error"]))]
        else:
            rows = (summaries.get(entry["benchmark"]) or default_rows)(result)
        lines += [f"| {what} | {figure} |" for what, figure in rows]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def readme_block(text: str) -> str | None:
    """The generated part of the README (between the markers), or None when the markers are missing."""
    if START not in text or END not in text:
        return None
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def with_block(text: str, block: str) -> str:
    """``text`` with its generated part replaced by ``block``; the markers must be there (once each)."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"the README must hold the markers {START!r} and {END!r} once each")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block.rstrip()}\n{END}{tail}"
