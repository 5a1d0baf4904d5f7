"""Region commands: ``regions`` (one creative), ``extract`` (the catalog, cached), ``regions-eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core.cli_app import JsonOpt, app, emit, fail
from core.progress import tqdm_progress

DetectorOpt = Annotated[str | None, typer.Option("--detector", help="auto | yolo | offline (default: settings.detector)")]


def _text_report(result: dict) -> str:
    lines = [f"detector: {result['backend']} ({result['detector']}) on {result['device']}", f"reason: {result['reason']}",
             f"keywords: {', '.join(result['keywords']) or '-'}", "",
             f"{'before':>6} {'after':>5} {'chg':>4}  {'conf':>6} {'clue':>6}  {'label':<28} box"]
    for box in result["boxes"]:
        if box["rank_after"] is None:
            continue
        arrow = "▲" if box["change"] > 0 else "▼" if box["change"] < 0 else "="
        lines.append(f"{box['rank_before']:>6} {box['rank_after']:>5} {arrow}{abs(box['change']):>3}  {box['confidence']:>6.3f} "
                     f"{box['clue']:>6.3f}  {box['label'][:28]:<28} {[round(v) for v in box['box']]}"
                     + ("" if box["kept"] else "  (dropped)"))
    if result["ocr"]:
        lines += ["", "OCR: " + " | ".join(line["text"] for line in result["ocr"])]
    lines.append(f"timing: {result['timing']}")
    return "\n".join(lines)


@app.command()
def regions(
    image: Annotated[Path, typer.Argument(help="the creative's image file")],
    text: Annotated[str, typer.Option("--text", help="the ad text (its keywords re-weight the regions)")] = "",
    detector: DetectorOpt = None,
    weights: Annotated[str | None, typer.Option("--weights", help="YOLO weights: local .pt/.onnx or a standard name")] = None,
    k1: Annotated[int, typer.Option("--k1", help="boxes kept by detector confidence, then scored")] = 20,
    k2: Annotated[int, typer.Option("--k2", help="boxes kept after re-weighting")] = 10,
    conf: Annotated[float, typer.Option("--conf", help="minimum detector confidence")] = 0.05,
    iou: Annotated[float, typer.Option("--iou", help="non-maximum suppression IoU")] = 0.5,
    no_ocr: Annotated[bool, typer.Option("--no-ocr", help="skip reading the printed words")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Detect the regions of one creative and re-rank them by the ad text (semantic clues)."""
    from core.images import ImageError, load_image
    from core.regions.analyze import analyze_creative, check_text
    from core.regions.base import DetectorError

    try:
        check_text(text)
        decoded = load_image(image)
        if weights is not None and detector is None:
            detector = "yolo"
        if weights is not None:  # the operator named this file: a .pt outside the weights folders is allowed
            from core.regions.yolo import trust_weights

            trust_weights(weights)
        result = analyze_creative(decoded.image, text, detector=detector, weights=weights, k1=k1, k2=k2, conf=conf, iou=iou,
                                  ocr=not no_ocr).to_dict()
    except (ImageError, DetectorError, ValueError, RuntimeError) as exc:
        fail(str(exc), as_json)
    result["image"].update(path=str(image), sha256=decoded.sha256, format=decoded.format, frames=decoded.frames)
    emit(result, as_json, _text_report(result))


@app.command()
def extract(
    detector: DetectorOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N ads (by id)")] = None,
    weights: Annotated[str | None, typer.Option("--weights", help="YOLO weights: local .pt/.onnx or a standard name")] = None,
    no_ocr: Annotated[bool, typer.Option("--no-ocr", help="skip OCR")] = False,
    descriptors: Annotated[str, typer.Option("--descriptors", help="region features: none (the detector's own) | effl0 (ImageNet "
                                                                   "EfficientNet-Lite0 per box) | concat (both)")] = "none",
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="images per batch (each batch is committed to the cache: "
                                                                         "an interrupted run resumes after the last one)")] = 8,
    dask: Annotated[str | None, typer.Option("--dask", help="Dask scheduler address (e.g. tcp://host:8786): the batches run on its "
                                                            "workers (which need this ADLENS_HOME's files and settings); this "
                                                            "process writes the cache. local[:N]: N worker processes on this "
                                                            "machine (default one per core)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Extract regions (boxes, features, OCR) for every catalog image; cached by image hash + detector (+ descriptors).

    Streamed in batches and resumable: re-running skips the images already cached; progress shows the rate and ETA."""
    from core.regions.base import DetectorError
    from core.regions.extract import extract_catalog

    if limit is not None and limit < 0:
        fail("--limit must be >= 0", as_json)
    if weights is not None:  # the operator named this file: a .pt outside the weights folders is allowed
        from core.regions.yolo import trust_weights

        trust_weights(weights)
    try:
        with tqdm_progress(enabled=not as_json) as progress:
            if dask:
                from core.scale import extract_catalog_dask

                result = extract_catalog_dask(dask, detector, weights=weights, descriptors=descriptors, ocr=not no_ocr, limit=limit,
                                              batch_size=batch_size, progress=progress)
            else:
                result = extract_catalog(detector, limit=limit, weights=weights, ocr=not no_ocr, progress=progress,
                                         descriptors=descriptors, batch_size=batch_size)
    except (DetectorError, ValueError, RuntimeError, ConnectionError) as exc:
        fail(str(exc), as_json)
    emit(result, as_json, f"{result['backend']} ({result['reason']}): {result['computed']} computed, {result['cached']} cached, "
                          f"{len(result['failed'])} failed, {result['seconds']} s")


@app.command("regions-eval")
def regions_eval(
    detector: DetectorOpt = None,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N ads with a product box")] = None,
    k1: Annotated[int, typer.Option("--k1")] = 20,
    k2: Annotated[int, typer.Option("--k2")] = 10,
    run: Annotated[int | None, typer.Option("--run", help="score with this ION run's SCA (alpha) instead of zero-shot MiniLM")] = None,
    split: Annotated[str | None, typer.Option("--split", help="only ads of this split: train | val | test")] = None,
    as_json: JsonOpt = False,
) -> None:
    """How often the ground-truth product box is ranked first, before vs after semantic re-weighting."""
    from core.regions.base import DetectorError
    from core.regions.extract import product_box_rank_report

    try:
        scorer = None
        if run is not None:
            from core.retrieval.models import clue_scorer
            from core.runs import get_run

            scorer = clue_scorer(get_run(run))
        if split not in (None, "train", "val", "test"):
            raise ValueError(f"--split must be train, val or test, got {split!r}")
        with tqdm_progress(enabled=not as_json) as progress:
            report = product_box_rank_report(detector=detector, limit=limit, k1=k1, k2=k2, scorer=scorer, ocr=scorer is None,
                                             split=split, progress=progress)
    except (DetectorError, KeyError, ValueError, RuntimeError) as exc:
        fail(str(exc), as_json)
    if not as_json:
        report = {k: v for k, v in report.items() if k != "per_ad"}
    emit(report, as_json)


@app.command("regions-baseline")
def regions_baseline(
    detector: DetectorOpt = None,
    pool: Annotated[str, typer.Option("--pool", help="top1 (the most confident box) | mean (confidence-weighted, top 5) | "
                                                     "smallest (the smallest confident box: a small-product prior)")] = "top1",
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Image-only baseline over region descriptors: Hit P@k seen / unseen on the test split (regions cached)."""
    from core.embed.baselines import REGION_POOLS
    from core.errors import RetrievalError
    from core.regions.base import DetectorError
    from core.retrieval.evaluation import region_image_baseline_report
    from core.store import get_engine

    if pool not in REGION_POOLS:
        fail(f"--pool must be one of {', '.join(REGION_POOLS)}", as_json)
    try:
        with tqdm_progress(enabled=not as_json) as progress:
            report = region_image_baseline_report(get_engine(), detector, how=pool, seed=seed, progress=progress)
    except (DetectorError, RetrievalError, ValueError, RuntimeError) as exc:
        fail(str(exc), as_json)
    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    emit(report, as_json, f"image-only over region descriptors ({pool}, {report['backend']}): seen P@1 {pct(report['seen'][0])}  "
                          f"unseen P@1 {pct(report['unseen'][0])}  (chance {report['chance']})")
