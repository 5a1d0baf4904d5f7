"""Detector training command: ``train-detector`` (a YOLOv8n of the catalog's own, from ground-truth boxes)."""

from __future__ import annotations

import sys
from contextlib import contextmanager, redirect_stdout
from typing import Annotated

import typer

from core.cli_app import JsonOpt, app, emit, fail
from core.progress import tqdm_progress

RECIPES = ("products", "plain")


def _text_report(result: dict) -> str:
    m, d = result["metrics"], result["dataset"]
    return "\n".join([
        f"trained detector '{result['name']}' (model run {result['run_id']}, recipe {result['config'].get('recipe')})",
        f"dataset: {d['images']} images, {d['boxes']} boxes, {len(d['names'])} classes at {d['root']}",
        f"val: mAP50 {m['mAP50']}  mAP50-95 {m['mAP50-95']}  precision {m['precision']}  recall {m['recall']}",
        f"epochs: {m['epochs_run']} in {m['seconds']} s",
        f"weights: {result['weights']} (also {result['latest']}, which the auto detector picks up)",
    ])


@contextmanager
def _stdout_to_stderr(enabled: bool):
    """With --json, stdout carries one JSON object: Ultralytics' own log and progress lines go to stderr instead."""
    if not enabled:
        yield
        return
    import logging

    from ultralytics.utils import LOGGER

    moved = [h for h in LOGGER.handlers if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stdout]
    for h in moved:
        h.setStream(sys.stderr)
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        for h in moved:
            h.setStream(sys.stdout)


@app.command("train-detector")
def train_detector_cmd(
    recipe: Annotated[str, typer.Option("--recipe", help="products: class-agnostic, 256 px, time-budgeted (see core.regions.train.Recipe); "
                                                         "plain: per-category classes, 320 px, 30 epochs")] = "products",
    epochs: Annotated[int | None, typer.Option("--epochs", help="training epochs (products: at most; the budget decides)")] = None,
    imgsz: Annotated[int | None, typer.Option("--imgsz", help="training image size (multiple of 32)")] = None,
    batch: Annotated[int | None, typer.Option("--batch", help="images per batch")] = None,
    minutes: Annotated[float | None, typer.Option("--minutes", help="wall-clock budget for training (products: 18)")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="only the first N labelled train/val ads (by id)")] = None,
    name: Annotated[str, typer.Option("--name", help="folder under home/detectors")] = "demo",
    class_agnostic: Annotated[bool | None, typer.Option("--class-agnostic/--per-category",
                                                        help="one class 'object' or one per seen category")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a YOLOv8n (from scratch, offline) on the labelled train/val creatives; auto detection then uses it."""
    from core.regions.train import PRODUCTS, TrainError, train_detector

    if limit is not None and limit < 1:
        fail("--limit must be >= 1", as_json)
    if recipe not in RECIPES:
        fail(f"--recipe must be one of {', '.join(RECIPES)}", as_json)
    if recipe == "products":
        base = {"epochs": PRODUCTS.epochs, "imgsz": PRODUCTS.imgsz, "batch": PRODUCTS.batch, "minutes": PRODUCTS.minutes,
                "class_agnostic": PRODUCTS.class_agnostic, "lr0": PRODUCTS.lr0, "mosaic": PRODUCTS.mosaic, "scale": PRODUCTS.scale,
                "close_mosaic": PRODUCTS.close_mosaic, "cache": PRODUCTS.cache, "warmup_epochs": PRODUCTS.warmup_epochs}
        if epochs is not None and minutes is None:  # an explicit epoch count without a budget: train exactly that many
            base["minutes"] = None
    else:
        base = {"epochs": 30, "imgsz": 320, "batch": 16, "minutes": None, "class_agnostic": False}
    given = {"epochs": epochs, "imgsz": imgsz, "batch": batch, "minutes": minutes, "class_agnostic": class_agnostic}
    options = {**base, **{k: v for k, v in given.items() if v is not None}}
    try:
        with tqdm_progress(enabled=not as_json) as progress, _stdout_to_stderr(as_json):
            result = train_detector(name, limit=limit, progress=progress, recipe=recipe, **options)
    except (TrainError, RuntimeError, OSError) as exc:
        fail(str(exc), as_json)
    emit(result, as_json, _text_report(result))


@app.command("detector-eval")
def detector_eval_cmd(
    split: Annotated[str, typer.Option("--split", help="train | val | test (test holds the held-out categories)")] = "test",
    weights: Annotated[str | None, typer.Option("--weights", help="a YOLO .pt (default: home/detectors/latest.pt)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Box mAP50 of the trained detector on one split's labelled creatives, every object as one class."""
    from core.regions.train import TrainError, evaluate_detector

    if split not in ("train", "val", "test"):
        fail("--split must be train, val or test", as_json)
    try:
        with tqdm_progress(enabled=not as_json) as progress, _stdout_to_stderr(as_json):
            result = evaluate_detector(weights, split=split, progress=progress)
    except (TrainError, RuntimeError, OSError) as exc:
        fail(str(exc), as_json)
    emit(result, as_json, f"{split}: {result['images']} creatives, {result['boxes']} boxes, mAP50 {result['mAP50']}  "
                          f"mAP50-95 {result['mAP50-95']}  precision {result['precision']}  recall {result['recall']}")
