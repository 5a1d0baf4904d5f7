"""Detector training command: ``train-detector`` (a YOLOv8n of the catalog's own, from ground-truth boxes)."""

from __future__ import annotations

from typing import Annotated

import typer

from core.cli_app import JsonOpt, app, emit, fail
from core.progress import tqdm_progress


def _text_report(result: dict) -> str:
    m, d = result["metrics"], result["dataset"]
    return "\n".join([
        f"trained detector '{result['name']}' (model run {result['run_id']})",
        f"dataset: {d['images']} images, {d['boxes']} boxes, {len(d['names'])} classes at {d['root']}",
        f"val: mAP50 {m['mAP50']}  mAP50-95 {m['mAP50-95']}  precision {m['precision']}  recall {m['recall']}",
        f"epochs: {m['epochs_run']} in {m['seconds']} s",
        f"weights: {result['weights']} (also {result['latest']}, which the auto detector picks up)",
    ])


@app.command("train-detector")
def train_detector_cmd(
    epochs: Annotated[int, typer.Option("--epochs", help="training epochs")] = 30,
    imgsz: Annotated[int, typer.Option("--imgsz", help="training image size (multiple of 32)")] = 320,
    batch: Annotated[int, typer.Option("--batch", help="images per batch")] = 16,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N labelled train/val ads (by id)")] = None,
    name: Annotated[str, typer.Option("--name", help="folder under home/detectors")] = "demo",
    class_agnostic: Annotated[bool, typer.Option("--class-agnostic", help="one class 'object' instead of the category names")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a YOLOv8n (from scratch, offline) on the labelled train/val creatives; auto detection then uses it."""
    from core.regions.train import TrainError, train_detector

    if limit is not None and limit < 1:
        fail("--limit must be >= 1", as_json)
    try:
        with tqdm_progress(enabled=not as_json) as progress:
            result = train_detector(name, epochs=epochs, imgsz=imgsz, batch=batch, limit=limit, class_agnostic=class_agnostic,
                                    progress=progress)
    except (TrainError, RuntimeError, OSError) as exc:
        fail(str(exc), as_json)
    emit(result, as_json, _text_report(result))
