"""Retrieval commands: ``train``, ``index``, ``search``, ``evaluate``, ``experiments``, ``runs``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.cli_app import JsonOpt, app, emit, fail
from core.progress import tqdm_progress

_ERRORS = (ValueError, KeyError, FileNotFoundError, RuntimeError)


ROUTE_HELP = "phrases with ION / ToTYEmb: text-neighbours (via the 3 ads whose texts match best) | direct (the model alone)"


def _pct(v: float | None) -> str:
    return "   –  " if v is None else f"{100 * v:5.1f}%"


def _table(rows: list[dict]) -> str:
    lines = [f"{'run':>4} {'model':<28} {'seen P@1':>9} {'P@5':>7} {'P@10':>7} {'unseen P@1':>11} {'P@5':>7} {'P@10':>7}"]
    for r in rows:
        name = r.get("label") or r.get("name") or r["kind"]
        lines.append(f"{r['run_id']:>4} {name[:28]:<28} {_pct(r['seen_p1']):>9} {_pct(r['seen_p5']):>7} {_pct(r['seen_p10']):>7} "
                     f"{_pct(r['unseen_p1']):>11} {_pct(r['unseen_p5']):>7} {_pct(r['unseen_p10']):>7}")
    return "\n".join(lines)


@app.command()
def train(
    model: Annotated[str, typer.Option("--model", help="ion | totyemb | text | image | image-regions | concat")] = "ion",
    ablate: Annotated[str, typer.Option("--ablate", help="comma list: ksg,sca,dfa (ION) or pointer,image (ToTYEmb)")] = "",
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="default: the paper's 30, more on small catalogs (at least 4,000 steps, at most 100 epochs)")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    k1: Annotated[int | None, typer.Option("--k1", help="regions in (by detector confidence)")] = None,
    k2: Annotated[int | None, typer.Option("--k2", help="regions kept by SCA")] = None,
    margin: Annotated[float | None, typer.Option("--margin", help="triplet margin gamma")] = None,
    rho: Annotated[float | None, typer.Option("--rho", help="keyword loss weight rho")] = None,
    lr: Annotated[float | None, typer.Option("--lr")] = None,
    neck: Annotated[str | None, typer.Option("--neck", help="ION: batchnorm (default) | none (the paper's exact head)")] = None,
    sca: Annotated[str | None, typer.Option(
        "--sca", help="ION: additive (default: the text re-orders the regions) | literal (eq. 6 as printed)")] = None,
    region_drop: Annotated[float | None, typer.Option(
        "--region-drop", help="share of training ads shown without regions (teaches phrase-only queries; 0 = the paper)")] = None,
    vocab: Annotated[str | None, typer.Option(
        "--vocab", help="train (default: words of the training ads) | catalogue (words of every catalogue text, no labels)")] = None,
    word_tuning: Annotated[str | None, typer.Option(
        "--word-tuning", help="tuned (default: the word table trains) | frozen (words keep their MiniLM vectors)")] = None,
    recipe: Annotated[str | None, typer.Option(
        "--recipe", help="adlens (default) | paper: every deviation from the paper off at once (explicit options still win)")] = None,
    detector: Annotated[str | None, typer.Option("--detector", help="auto | yolo | offline")] = None,
    run: Annotated[int | None, typer.Option("--run", help="train into this existing run (background jobs)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train (ION, ToTYEmb) or embed (baselines), evaluate Hit P@k on the test split, index the whole catalog."""
    from core.retrieval.training import train_run
    from core.runs import db_should_stop, get_run
    from core.store import get_engine

    options = {k: v for k, v in {"epochs": epochs, "seed": seed, "k1": k1, "k2": k2, "margin": margin, "keyword_weight": rho,
                                 "lr": lr, "neck": neck, "sca": sca, "recipe": recipe, "region_drop": region_drop,
                                 "vocab": vocab, "word_tuning": word_tuning,
                                 "detector": detector}.items() if v is not None}
    if model not in ("ion", "totyemb"):
        options = {k: v for k, v in {"seed": seed, "detector": detector}.items() if v is not None}
    engine = get_engine()
    try:
        with tqdm_progress(enabled=not as_json) as bar:
            stop = db_should_stop(run, engine) if run is not None else None
            run_id = train_run(model, [a for a in ablate.split(",") if a.strip()], options, bar, stop, engine=engine, run_id=run)
    except _ERRORS as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), as_json)
    result = get_run(run_id, engine=engine)
    result["ok"] = result["status"] == "done"
    m = result["metrics"]
    text = f"run {run_id} ({model}): {result['status']}"
    if m.get("seen"):
        text += "\n" + _table([{"run_id": run_id, "kind": model, "name": result["name"],
                                **{f"{p}_p{k}": (m.get(p) or [None] * 10)[k - 1] for p in ("seen", "unseen") for k in (1, 5, 10)}}])
    emit(result, as_json, text)


@app.command()
def index(
    run: Annotated[int, typer.Option("--run", help="model run id")],
    rebuild: Annotated[bool, typer.Option("--rebuild", help="re-embed the whole catalog and rebuild the index")] = False,
    dask: Annotated[str | None, typer.Option("--dask", help="Dask scheduler address (e.g. tcp://host:8786) whose workers embed "
                                                           "the catalogue in chunks (they need this store: same ADLENS_HOME or "
                                                           "database URL), or local:N for N processes here")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add newly imported ads to a run's FAISS index (no rebuild), or rebuild it."""
    from core.retrieval.index import build_index

    try:
        with tqdm_progress(enabled=not as_json) as progress:
            result = build_index(run, rebuild=rebuild, progress=progress, dask=dask)
    except ConnectionError as exc:
        fail(str(exc), as_json)
    except _ERRORS as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), as_json)
    emit(result, as_json, f"run {run}: {result['added']} ads {'indexed' if rebuild else 'added'}, {result['total']} in the index "
                          f"({result['factory']})")


@app.command()
def search(
    ad: Annotated[str | None, typer.Option("--ad", help="a catalog ad id")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="a creative image file")] = None,
    text: Annotated[str | None, typer.Option("--text", help="the creative's text")] = None,
    phrase: Annotated[str | None, typer.Option("--phrase", help="a search phrase")] = None,
    run: Annotated[int | None, typer.Option("--run", help="model run id (default: newest finished ION run)")] = None,
    k: Annotated[int, typer.Option("--k", help="number of results")] = 10,
    phrase_route: Annotated[str, typer.Option("--phrase-route", help=ROUTE_HELP)] = "text-neighbours",
    as_json: JsonOpt = False,
) -> None:
    """The k most similar catalog ads to an ad, a creative (image + text) or a phrase."""
    from core.images import ImageError, load_image
    from core.retrieval.nearest import search as do_search

    try:
        img = load_image(image).image if image is not None else None
        result = do_search(run, ad_id=ad, image=img, text=text, phrase=phrase, k=k, phrase_route=phrase_route)
    except (ImageError, *_ERRORS) as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), as_json)
    lines = [f"run {result['run']['id']} ({result['run']['kind']}), query: {result['query']}"]
    for r in result["results"]:
        mark = {True: "✓", False: "✗", None: " "}[r["same_category"]]
        lines.append(f"{r['rank']:>3}. {r['ad_id']:<16} d={r['distance']:.4f} {mark} {r.get('category') or '-'}: {r.get('text', '')[:60]}")
    slim = {**result, "results": [{k2: r.get(k2) for k2 in ("rank", "ad_id", "distance", "category", "same_category", "text", "split")}
                                  for r in result["results"]]}
    emit(slim, as_json, "\n".join(lines))


@app.command("query-eval")
def query_eval(
    run: Annotated[int | None, typer.Option("--run", help="model run id (default: newest finished ION run)")] = None,
    k: Annotated[int, typer.Option("--k")] = 10,
    uploads: Annotated[int, typer.Option("--uploads", help="test creatives re-uploaded (0: skip the upload check)")] = 200,
    phrase_route: Annotated[str, typer.Option("--phrase-route", help=ROUTE_HELP)] = "text-neighbours",
    as_json: JsonOpt = False,
) -> None:
    """Queries that are not catalogue ads: category phrases (same-category share of the top k) and uploaded copies of
    test creatives (share whose top k keeps >= 9 of the catalogue ad's own)."""
    from core.images import ImageError
    from core.retrieval.queries import phrase_precision, upload_agreement

    try:
        with tqdm_progress(enabled=not as_json) as bar:
            phrases = phrase_precision(run, k=k, route=phrase_route, progress=bar)
            agreement = upload_agreement(run, k=k, limit=uploads, progress=bar) if uploads > 0 else None
    except (ImageError, *_ERRORS) as exc:
        fail(str(exc), as_json)
    lines = [f"run {phrases['run']}: phrase queries ({phrases['phrases']}, {phrases['route']}): same-category "
             f"P@{k} = {_pct(phrases['precision'])} (seen {_pct(phrases['seen'])}, held-out {_pct(phrases['held_out'])})"]
    if agreement:
        lines.append(f"uploaded copies ({agreement['creatives']}): top {k} keeps >= {agreement['min_shared']} of the ad's own in "
                     f"{_pct(agreement['agreement'])} (mean shared {agreement['mean_shared']})")
    emit({"ok": True, "phrases": phrases, "uploads": agreement}, as_json, "\n".join(lines))


@app.command()
def evaluate(
    split: Annotated[str, typer.Option("--split", help="test (stored at training) | val (where recipes are chosen) | train")] = "test",
    as_json: JsonOpt = False,
) -> None:
    """Hit P@1/5/10 on seen and unseen categories of a split (default: test) for every finished model run."""
    from core.retrieval.evaluation import evaluate_runs, split_precision

    try:
        rows = evaluate_runs()
        if split != "test":
            for row in rows:
                m = split_precision(row["run_id"], split)
                row.update({f"{part}_p{k}": (m[part][k - 1] if m[part] else None) for part in ("seen", "unseen") for k in (1, 5, 10)})
                row.update(split=split, n_seen=m["n_seen"], n_unseen=m["n_unseen"])
    except _ERRORS as exc:
        fail(str(exc), as_json)
    emit({"ok": True, "runs": rows}, as_json, _table(rows) if rows else "no finished model runs yet")


@app.command()
def runs(as_json: JsonOpt = False) -> None:
    """List model runs (status, progress, code version)."""
    from core.runs import list_runs
    from core.stale import is_stale, stale_note

    items = list_runs()
    slim = [{k: r[k] for k in ("id", "kind", "name", "status", "progress", "message", "code_version", "created_at")}
            | {"stale": is_stale(r)} for r in items]
    text = "\n".join(f"{r['id']:>4} {r['name']:<28} {r['status']:<10} {100 * r['progress']:5.1f}%  {r['message'][:50]}{stale_note(r)}"
                     for r in items)
    emit({"ok": True, "runs": slim}, as_json, text or "no model runs")


@app.command()
def experiments(
    epochs: Annotated[int | None, typer.Option(
        "--epochs", help="epochs per trained model (default: the paper's 30, more on small catalogs)")] = None,
    only: Annotated[str, typer.Option("--only", help="comma list of kinds to run from the main table (ion,totyemb,text,...)")] = "",
    grid: Annotated[str, typer.Option("--grid", help="k1:k2 pairs for ION, e.g. 10:5,20:10,30:10 (Table 2)")] = "",
    gamma: Annotated[str, typer.Option("--gamma", help="triplet margins to sweep for ION, e.g. 0.1,0.2,0.3")] = "",
    rho: Annotated[str, typer.Option("--rho", help="keyword loss weights to sweep for ION, e.g. 0,0.05,0.2")] = "",
    sweeps_only: Annotated[bool, typer.Option("--sweeps-only", help="skip the main table, run only grid/gamma/rho")] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    detector: Annotated[str | None, typer.Option("--detector", help="auto | yolo | offline")] = None,
    as_json: JsonOpt = False,
) -> None:
    """ION, ToTYEmb, text/image/concat baselines and the four ablations on the catalog; prints the README table."""
    from core.experiments import markdown_table, parse_floats, parse_grid, plan, run_experiments

    try:
        exps = plan([o.strip() for o in only.split(",") if o.strip()], parse_grid(grid), parse_floats(gamma, "--gamma"),
                    parse_floats(rho, "--rho"), main=not sweeps_only)
        if not exps:
            raise ValueError("nothing to run: check --only / --sweeps-only")
        options = {k: v for k, v in {"epochs": epochs, "seed": seed, "detector": detector}.items() if v is not None}
        with tqdm_progress(enabled=not as_json) as progress:
            rows = run_experiments(exps, options, progress=progress)
    except _ERRORS as exc:
        fail(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc), as_json)
    table = markdown_table(rows)
    emit({"ok": True, "rows": rows, "markdown": table}, as_json, table)
