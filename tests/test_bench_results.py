"""bench/results.json: what `python -m core bench` records, and the README's benchmark block generated from it."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from core import bench_results
from core.cli import app
from core.commands import bench as bench_command

MACHINE = {"cpu_count": 2, "device": "cpu", "device_detail": "CPU (2 cores)", "torch": "2.14.1", "load_average": [1.0, 0.5, 0.25]}


def test_the_readme_block_is_generated_from_the_stored_results():
    """bench/results.json exists, holds every benchmark under bench/, and the README shows exactly its rendering."""
    data = bench_results.load()
    names = {e["benchmark"] for e in data["entries"].values() if "error" not in e["result"]}
    assert set(bench_command.available_benchmarks()) <= names, "re-run `python -m core bench` for the missing ones"
    for entry in data["entries"].values():
        assert entry["machine"]["cpu_count"] >= 1 and datetime.fromisoformat(entry["date"]).year >= 2026
    block = bench_results.readme_block(bench_results.README_PATH.read_text())
    assert block is not None, "the README lost its generated benchmark block"
    assert block == bench_results.render(data, bench_command.summaries()), \
        "README and bench/results.json disagree: run `python -m core bench-report --write-readme`"


def test_record_keeps_other_benchmarks_and_keeps_quick_and_full_apart(tmp_path):
    path = tmp_path / "results.json"
    when = datetime(2026, 12, 6, 7, 0, tzinfo=UTC)
    bench_results.record("search", {"p50_ms": 0.4}, quick=False, machine=MACHINE, command="c1", path=path, when=when)
    bench_results.record("search", {"p50_ms": 0.2}, quick=True, machine=MACHINE, command="c2", path=path, when=when)
    bench_results.record("audience", {"fit_s": 8.4}, quick=False, machine=MACHINE, command="c3", path=path, when=when)
    bench_results.record("search", {"p50_ms": 0.5}, quick=False, machine=MACHINE, command="c4", path=path, when=when)
    data = json.loads(path.read_text())
    assert set(data["entries"]) == {"search", "search (quick)", "audience"}
    assert data["entries"]["search"]["result"] == {"p50_ms": 0.5} and data["entries"]["search"]["command"] == "c4"
    assert data["entries"]["search (quick)"]["result"] == {"p50_ms": 0.2}
    assert data["entries"]["audience"]["date"] == "2026-12-06T07:00:00+00:00"
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_damaged_results_file_is_refused_not_replaced(tmp_path):
    path = tmp_path / "results.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not readable JSON"):
        bench_results.record("search", {}, quick=False, machine=MACHINE, command="c", path=path)
    assert path.read_text() == "{not json"
    path.write_text(json.dumps({"entries": {}}))
    with pytest.raises(ValueError, match="not an AdLens benchmark file"):
        bench_results.load(path)


def test_render_uses_each_summary_and_says_errors():
    data = {"format": bench_results.FORMAT, "entries": {
        "b": {"benchmark": "b", "quick": False, "command": "python -m core bench --only b", "machine": MACHINE,
              "date": "2026-12-06T07:00:00+00:00", "result": {"x": 3, "nested": {"y": 1}, "name": "flat"}},
        "a (quick)": {"benchmark": "a", "quick": True, "command": "cmd a", "machine": MACHINE,
                      "date": "2026-12-05T07:00:00+00:00", "result": {"error": "RuntimeError: boom"}},
        "c": {"benchmark": "c", "quick": False, "command": "cmd c", "machine": MACHINE, "date": "2026-12-04T00:00:00+00:00",
              "result": {"p": 0.5}},
    }}
    text = bench_results.render(data, {"c": lambda r: [("p as percent", f"{100 * r['p']:.0f}%")]})
    assert text.index("**a (quick)**") < text.index("**b**") < text.index("**c**")
    assert "| error | RuntimeError: boom |" in text
    assert "| x | 3 |" in text and "| name | flat |" in text and "nested" not in text  # default rows: top-level scalars
    assert "| p as percent | 50% |" in text and "| p | 0.5 |" not in text
    assert "`python -m core bench --only b`, 2026-12-06, 2 CPUs, CPU (2 cores), load average 1.0 / 0.5 / 0.2" in text


def test_with_block_replaces_only_the_generated_part():
    text = f"intro\n{bench_results.START}\nold\n{bench_results.END}\noutro\n"
    new = bench_results.with_block(text, "| a | b |\n")
    assert new == f"intro\n{bench_results.START}\n| a | b |\n{bench_results.END}\noutro\n"
    assert bench_results.readme_block(new) == "| a | b |\n"
    with pytest.raises(ValueError, match="markers"):
        bench_results.with_block("no markers here", "x")


def test_the_bench_command_records_each_benchmark(tmp_path, monkeypatch):
    bench_dir = tmp_path / "bench"
    bench_dir.mkdir()
    (bench_dir / "bench_tiny.py").write_text(
        "def run(quick=False):\n    return {'items': 10 if quick else 1000}\n\n"
        "def summary(result):\n    return [('items', str(result['items']))]\n")
    (bench_dir / "bench_broken.py").write_text("def run(quick=False):\n    raise RuntimeError('no luck')\n")
    monkeypatch.setattr(bench_command, "BENCH_DIR", bench_dir)
    results = tmp_path / "results.json"
    out = CliRunner().invoke(app, ["bench", "--quick", "--results", str(results), "--json"])
    assert out.exit_code == 0, out.output
    printed = json.loads(out.output.strip().splitlines()[-1])
    assert printed["benchmarks"]["tiny"]["items"] == 10
    stored = bench_results.load(results)["entries"]
    assert stored["tiny (quick)"]["result"]["items"] == 10
    assert stored["tiny (quick)"]["command"] == "python -m core bench --only tiny --quick"
    assert stored["broken (quick)"]["result"] == {"error": "RuntimeError: no luck"}
    report = CliRunner().invoke(app, ["bench-report", "--results", str(results)])
    assert report.exit_code == 0 and "| items | 10 |" in report.output and "| error | RuntimeError: no luck |" in report.output
    unsaved = CliRunner().invoke(app, ["bench", "--only", "tiny", "--no-save", "--results", str(tmp_path / "none.json"), "--json"])
    assert unsaved.exit_code == 0 and not (tmp_path / "none.json").exists()
