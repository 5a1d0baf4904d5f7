"""Audience expansion commands: `expand`, `expand-runs`, `audience-export`."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from core.cli_app import JsonOpt, app, emit, fail
from core.progress import tqdm_progress


def _sizes(text: str) -> tuple[float, ...]:
    try:
        sizes = tuple(float(s.strip().rstrip("%")) / (100 if s.strip().endswith("%") else 1) for s in text.split(",") if s.strip())
    except ValueError:
        raise ValueError(f"audience sizes must be fractions or percentages separated by commas (got '{text}')") from None
    return sizes


def _single_text(r: dict[str, Any]) -> str:
    lines = [
        f"package {r['package_id']} ({r['package_name']}), similar ads by {r['retriever']}: "
        f"{', '.join(a['ad_id'] for a in r['similar_ads'])}",
        f"positives {r['positives_before']} -> {r['positives_after']} (+{r['added_positives']}), "
        f"negatives {r['negatives_before']} -> {r['negatives_after']}, test set {r['test_positives']}+{r['test_negatives']}",
        f"offline AUC   initial {r['auc_initial']:.4f}   expanded {r['auc_expanded']:.4f}",
        f"simulated CTR in P' (base {100 * r['base_ctr']:.2f}% over {r['later_users']} users):",
    ]
    lines += [f"  top {100 * c['size']:>5.1f}% ({c['targeted']:>6} users): initial {100 * c['ctr_initial']:6.2f}%   "
              f"expanded {100 * c['ctr_expanded']:6.2f}%" for c in r["ctr"]]
    if r.get("run_id"):
        lines.append(f"stored as expansion run {r['run_id']} (audience: {r['audience_path']})")
    return "\n".join(lines)


@app.command()
def expand(
    package: Annotated[int | None, typer.Option(help="package id")] = None,
    all_packages: Annotated[bool, typer.Option("--all-packages", help="every package: the averaged table")] = False,
    similar: Annotated[int, typer.Option(help="N, the number of similar ads whose clickers are added")] = 10,
    ratio: Annotated[float, typer.Option(help="negatives per positive")] = 3.0,
    retriever: Annotated[list[str] | None, typer.Option(
        help="random | oracle | model (with --model) | a model kind (ion, totyemb, text, image: its latest run); repeatable")] = None,
    model: Annotated[int | None, typer.Option(help="embedding model run id for --retriever model")] = None,
    trees: Annotated[int, typer.Option(help="XGBoost trees")] = 550,
    test_fraction: Annotated[float, typer.Option(help="held-out test set T")] = 0.1,
    split_at: Annotated[datetime | None, typer.Option(help="start of P' (default: the log's midpoint)")] = None,
    sizes: Annotated[str, typer.Option(help="audience sizes for the CTR simulation")] = "1%,2%,5%,10%,20%",
    max_ctr: Annotated[float | None, typer.Option(help="--all-packages: only packages with CTR at most this")] = None,
    dask: Annotated[str | None, typer.Option(help="Dask scheduler address (default: ADLENS_DASK_SCHEDULER)")] = None,
    threads: Annotated[int | None, typer.Option(help="XGBoost threads (default: free cores; 1 for small sets)")] = None,
    seed: int = 0,
    store: Annotated[bool, typer.Option(help="store runs and audiences")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Audience expansion: AUC and simulated CTR of the initial and expanded targeting models."""
    from core.audience import AudienceError, ExpansionConfig, make_retriever, run_all_packages, run_expansion
    from core.store import get_engine

    if (package is None) == (not all_packages):
        fail("give either --package ID or --all-packages", as_json)
    kinds = retriever or (["model"] if model is not None else (["random", "oracle"] if all_packages else ["oracle"]))
    try:
        config = ExpansionConfig(similar=similar, ratio=ratio, n_estimators=trees, test_fraction=test_fraction,
                                 split_at=split_at, audience_sizes=_sizes(sizes), seed=seed, dask_scheduler=dask, store=store,
                                 n_jobs=threads)
        config.validate()
        engine = get_engine()
        retrievers = [make_retriever(k, engine=engine, model_run_id=model, seed=seed) for k in kinds]
        with tqdm_progress(enabled=not as_json) as progress:
            if all_packages:
                table = run_all_packages(retrievers, config, max_ctr=max_ctr, engine=engine, progress=progress)
                emit({"ok": True, **table.to_dict()}, as_json, table.text())
                return
            runs = [run_expansion(package, r, config, engine=engine, progress=progress).to_dict() for r in retrievers]
    except (AudienceError, KeyError, ConnectionError) as exc:
        fail(str(exc), as_json)
    if len(runs) == 1:
        emit({"ok": True, **runs[0]}, as_json, _single_text(runs[0]))
    else:
        emit({"ok": True, "package_id": package, "runs": runs}, as_json, "\n\n".join(_single_text(r) for r in runs))


@app.command("expand-runs")
def expand_runs(
    package: Annotated[int | None, typer.Option(help="only this package")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Stored expansion runs, newest first."""
    from core.audience.store import list_runs

    runs = list_runs(package)
    text = "\n".join(f"#{r['run_id']:<5} package {r['package_id']:<5} {r['retriever']:<14} AUC {r['auc_initial']:.4f} -> "
                     f"{r['auc_expanded']:.4f}  positives {r['positives_before']} -> {r['positives_after']}" for r in runs)
    emit({"ok": True, "runs": runs}, as_json, text or "no expansion runs yet")


@app.command("audience-export")
def audience_export(
    run: Annotated[int, typer.Option(help="expansion run id")],
    size: Annotated[float, typer.Option(help="fraction of users to target, e.g. 0.05")] = 0.05,
    out: Annotated[Path, typer.Option(help="CSV file to write (user_id,score)")] = Path("audience.csv"),
    as_json: JsonOpt = False,
) -> None:
    """Write a run's chosen audience (the expanded model's top users) as CSV."""
    from core.audience import AudienceError
    from core.audience.store import audience_csv

    try:
        text = audience_csv(run, size)
    except (AudienceError, KeyError) as exc:
        fail(str(exc), as_json)
    out.write_text(text)
    emit({"ok": True, "run_id": run, "size": size, "users": text.count("\n") - 1, "path": str(out)}, as_json,
         f"wrote {text.count(chr(10)) - 1} users to {out}")
