"""`python -m core bench`: run the benchmarks under bench/ (speed and memory figures, not tests)."""

from __future__ import annotations

import importlib.util
import os
import platform
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from core import bench_results
from core.cli_app import JsonOpt, app, emit, fail
from core.config import REPO_ROOT

BENCH_DIR = REPO_ROOT / "bench"


def available_benchmarks() -> dict[str, Path]:
    """name -> file, for every bench/bench_<name>.py."""
    return {p.stem.removeprefix("bench_"): p for p in sorted(BENCH_DIR.glob("bench_*.py"))}


def load_benchmark(path: Path):
    spec = importlib.util.spec_from_file_location(f"adlens_bench_{path.stem}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def summaries() -> dict[str, Any]:
    """name -> the benchmark's ``summary(result)`` (rows of its README table), for those that define one."""
    found = {name: load_benchmark(path) for name, path in available_benchmarks().items()}
    return {name: module.summary for name, module in found.items() if hasattr(module, "summary")}


def run_benchmark(path: Path, quick: bool) -> dict[str, Any]:
    module = load_benchmark(path)
    started = time.perf_counter()
    result = module.run(quick=quick)
    result.setdefault("seconds", round(time.perf_counter() - started, 2))
    return result


def machine() -> dict[str, Any]:
    import torch

    from core.device import resolve_device

    dev = resolve_device()
    return {
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": dev.name,
        "device_detail": dev.detail,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


@app.command()
def bench(
    only: Annotated[list[str] | None, typer.Option("--only", help="benchmark name(s), e.g. regions")] = None,
    quick: Annotated[bool, typer.Option(help="smaller sizes, for a fast look")] = False,
    save: Annotated[bool, typer.Option(help="record each result in bench/results.json (see `bench-report`)")] = True,
    results_path: Annotated[Path, typer.Option("--results", help="the results file")] = bench_results.RESULTS_PATH,
    as_json: JsonOpt = False,
) -> None:
    """Measure speed and memory (regions/s, embeddings/s, search latency, XGBoost fit time...) and record the figures."""
    found = available_benchmarks()
    names = only or list(found)
    unknown = [n for n in names if n not in found]
    if unknown:
        fail(f"unknown benchmark(s) {unknown}; available: {sorted(found)}", as_json)
    results: dict[str, Any] = {"machine": machine(), "quick": quick, "benchmarks": {}}
    for name in names:
        if not as_json:
            typer.echo(f"running {name} ...", err=True)
        try:
            results["benchmarks"][name] = run_benchmark(found[name], quick)
        except Exception as exc:  # one broken benchmark must not hide the others
            results["benchmarks"][name] = {"error": f"{exc.__class__.__name__}: {exc}"}
        if save:
            command = f"python -m core bench --only {name}" + (" --quick" if quick else "")
            bench_results.record(name, results["benchmarks"][name], quick=quick, machine=machine(), command=command,
                                 path=results_path)
    emit(results, as_json)


@app.command("bench-report")
def bench_report(
    results_path: Annotated[Path, typer.Option("--results", help="the results file")] = bench_results.RESULTS_PATH,
    write_readme: Annotated[bool, typer.Option("--write-readme", help="replace the README's generated benchmark block")] = False,
) -> None:
    """Print the benchmark tables of bench/results.json (Markdown); --write-readme puts them in the README."""
    try:
        block = bench_results.render(bench_results.load(results_path), summaries())
        if write_readme:
            readme = bench_results.README_PATH
            readme.write_text(bench_results.with_block(readme.read_text(), block))
    except ValueError as exc:
        fail(str(exc), False)
    typer.echo(block)
