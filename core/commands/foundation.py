"""Foundation commands: demo world, importers, stats."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.cli_app import JsonOpt, app, emit, fail, import_result, ingest_app
from core.progress import tqdm_progress

MODEL_MODES = ("all", "background", "none")


@app.command()
def demo(
    ads: Annotated[int, typer.Option(help="number of creatives")] = 2000,
    users: Annotated[int, typer.Option(help="number of simulated users")] = 20000,
    seed: Annotated[int, typer.Option(help="random seed (same seed, same world)")] = 0,
    models: Annotated[str, typer.Option(
        "--models", help="all: build every default model the pages use, then return | background: return once the world "
                         "is ready, models build in a detached process | none: the world only")] = "all",
    no_models: Annotated[bool, typer.Option("--no-models", help="the world only (same as --models none)")] = False,
    force: Annotated[bool, typer.Option("--force", help="replace a different demo world although the database holds model runs "
                                                        "or imported data (the runs built on it are marked stale)")] = False,
    impressions_per_ad: Annotated[int | None, typer.Option(
        "--impressions-per-ad", min=1, help="impressions per ordinary ad and period; default automatic: 500 up to 2,000 ads (the "
                                            "default world), then 1,000,000 / ads (at least 10: 100 at 10k ads, 10 at 100k), so that "
                                            "large catalogues keep a ~2.4M-row log")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build the embedded demo world (generated data, deterministic for a seed), then its default models."""
    from core.demo import build_world
    from core.demo.models import BuildLocked, build_models, start_background
    from core.store import get_engine

    mode = "none" if no_models else models
    if mode not in MODEL_MODES:
        fail(f"--models must be one of {', '.join(MODEL_MODES)}, got {models!r}", as_json)
    try:
        with tqdm_progress(enabled=not as_json) as progress:
            summary = build_world(n_ads=ads, n_users=users, seed=seed, progress=progress, force=force,
                                  impressions_per_ad=impressions_per_ad)
    except ValueError as exc:
        fail(str(exc), as_json)
    summary = {"ok": True, **summary}
    if mode == "background":
        pid = start_background()
        summary["models"] = {"mode": "background", "pid": pid, "note": "a build was already running" if pid is None else
                             "building in the background; progress in home/demo-models.json and on every page"}
    elif mode == "all":
        try:
            with tqdm_progress(enabled=not as_json) as progress:
                status = build_models(get_engine(), progress=progress)
        except BuildLocked as exc:
            fail(str(exc), as_json)
        summary["models"] = _models_summary(status)
        if not as_json:
            typer.echo(_models_text(status))
        if any(v["state"] == "failed" for v in status["stages"].values()):
            emit(summary | {"ok": False}, as_json, "some models failed: see the logs above")
            raise typer.Exit(1)
    emit(summary, as_json)


@app.command("demo-delete")
def demo_delete(
    force: Annotated[bool, typer.Option("--force", help="delete it although the database holds model runs or imported data")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete the demo world's rows (imported data untouched); the runs built on it are marked stale, their files kept."""
    from core.demo.store import delete_world
    from core.store import get_engine

    try:
        result = delete_world(get_engine(), force=force)
    except ValueError as exc:
        fail(str(exc), as_json)
    emit({"ok": True, **result}, as_json,
         f"deleted {result['deleted_ads']} demo ads; {result['stale_runs']} model runs marked stale (files kept)")


def _models_summary(status: dict) -> dict:
    return {"seconds": status.get("seconds"), "budget_s": status.get("budget_s"),
            "stages": {k: {f: v.get(f) for f in ("state", "seconds", "budget_s", "error", "log")} for k, v in status["stages"].items()}}


def _models_text(status: dict) -> str:
    lines = [f"{'stage':<16} {'state':<11} {'seconds':>8} {'budget':>7}"]
    for name, v in status["stages"].items():
        sec = "-" if v.get("seconds") is None else f"{v['seconds']:.0f}"
        lines.append(f"{name:<16} {v['state']:<11} {sec:>8} {v['budget_s']:>7}" + (f"  {v['error']}" if v.get("error") else ""))
    lines.append(f"models: {status.get('seconds', 0):.0f} s wall (budget {status.get('budget_s')} s)")
    return "\n".join(lines)


@app.command("demo-models")
def demo_models(
    only: Annotated[list[str] | None, typer.Option("--only", help="only these stages (repeat): detector, regions, ion, ...")] = None,
    force: Annotated[list[str] | None, typer.Option("--force", help="rebuild these stages although they are up to date (repeat)")] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="stages at a time (one thread each)")] = 2,
    quick: Annotated[bool, typer.Option("--quick", help="a few epochs / steps per model: the same code paths in minutes, "
                                                        "toy figures (smoke checks, tests)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build (or bring up to date) every default model of the loaded catalogue; what `core demo` runs after the world."""
    from core.demo.models import BuildLocked, build_models
    from core.store import get_engine

    try:
        with tqdm_progress(enabled=not as_json) as progress:
            status = build_models(get_engine(), only=only or None, force=force or (), workers=workers, progress=progress,
                                  quick=quick)
    except (BuildLocked, ValueError) as exc:
        fail(str(exc), as_json)
    failed = any(v["state"] == "failed" for v in status["stages"].values())
    emit({"ok": not failed, **_models_summary(status)}, as_json, _models_text(status))
    if failed:
        raise typer.Exit(1)


@app.command("demo-judgements")
def demo_judgements(
    out: Annotated[Path, typer.Option("--out", help="CSV file to write (phrase, ad_id, label, split, kind)")],
    split: Annotated[str, typer.Option("--split", help="creatives of this split: train | val | test")] = "test",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Write the demo world's product-vs-distractor judgement set (for evaluate-matching --judgements)."""
    from core.demo.judgements import product_judgements, write_judgements

    if split not in ("train", "val", "test"):
        fail(f"--split must be train, val or test, got {split!r}", as_json)
    rows = product_judgements(split=split, seed=seed)
    if not rows:
        fail("no creative with a ground-truth product in that split: build the demo world first (python -m core demo)", as_json)
    path = write_judgements(rows, out)
    kinds = {k: sum(r["kind"] == k for r in rows) for k in ("product", "distractor", "absent")}
    emit({"ok": True, "path": str(path), "rows": len(rows), "creatives": kinds["product"], "kinds": kinds}, as_json,
         f"{len(rows)} judgements on {kinds['product']} creatives -> {path}")


@ingest_app.command("ads")
def ingest_ads(
    manifest: Annotated[Path, typer.Argument(help="CSV or Parquet: ad_id, text, image, category[, split]")],
    images: Annotated[Path, typer.Option(help="folder or .zip holding the images")],
    as_json: JsonOpt = False,
) -> None:
    """Import ads from a manifest plus a folder or zip of images."""
    from core.ingest.manifest import import_manifest

    import_result(lambda progress: import_manifest(manifest, images, progress=progress), as_json)


@ingest_app.command("coco")
def ingest_coco(
    instances: Annotated[Path, typer.Option(help="instances_*.json")],
    captions: Annotated[Path, typer.Option(help="captions_*.json")],
    images: Annotated[Path, typer.Option(help="image folder")],
    unseen_categories: Annotated[int, typer.Option(help="categories held out to the test split (paper: 20)")] = 20,
    seed: int = 0,
    as_json: JsonOpt = False,
) -> None:
    """Import MS-COCO as the ION paper did: single-category images, caption as ad text."""
    from core.ingest.coco import import_coco

    import_result(
        lambda progress: import_coco(instances, captions, images, unseen_categories=unseen_categories,
                                     seed=seed, progress=progress),
        as_json,
    )


@ingest_app.command("clicks")
def ingest_clicks(
    csv: Annotated[Path, typer.Argument(help="CSV: user_id, ad_id, clicked, timestamp")],
    as_json: JsonOpt = False,
) -> None:
    """Import impressions and clicks."""
    from core.ingest.clicks import import_clicks

    import_result(lambda progress: import_clicks(csv, progress=progress), as_json)


@ingest_app.command("users")
def ingest_users(
    csv: Annotated[Path, typer.Argument(help="CSV: user_id plus one column per feature")],
    as_json: JsonOpt = False,
) -> None:
    """Import users and their features."""
    from core.ingest.users import import_users

    import_result(lambda progress: import_users(csv, progress=progress), as_json)


@app.command()
def stats(as_json: JsonOpt = False) -> None:
    """Counts of ads, categories, unseen categories, users, impressions and clicks."""
    from core.catalog import stats as catalog_stats

    result = catalog_stats()
    text = "\n".join(f"{k:>18}: {v}" for k, v in result.items())
    emit(result, as_json, text)

