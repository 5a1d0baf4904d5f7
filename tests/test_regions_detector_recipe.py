"""The 'products' detector recipe (class-agnostic, time-budgeted), recall@k1 in regions-eval, the auto detector's
per-image fallback, and real photographs (not demo backgrounds) with hand-written boxes of the named object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from core.regions.base import box_iou


def test_cli_products_recipe_passes_the_recipe(home, monkeypatch):
    import core.regions.train as train
    from core.cli import app

    seen = {}

    def fake(name, **kw):
        seen.update(kw, name=name)
        return {"ok": True, "run_id": 1, "name": name, "weights": "w", "latest": "l", "config": {"recipe": kw.get("recipe")},
                "dataset": {"images": {}, "boxes": {}, "names": ["object"], "root": "r"},
                "metrics": {"mAP50": 0.9, "mAP50-95": 0.6, "precision": 0.9, "recall": 0.9, "epochs_run": 3, "seconds": 1.0}}

    monkeypatch.setattr(train, "train_detector", fake)
    res = CliRunner().invoke(app, ["train-detector", "--json"])
    assert res.exit_code == 0, res.output
    p = train.PRODUCTS
    got = (seen["class_agnostic"], seen["imgsz"], seen["minutes"], seen["scale"], seen["recipe"])
    assert got == (True, 256, p.minutes, 0.25, "products")
    res = CliRunner().invoke(app, ["train-detector", "--epochs", "3", "--per-category", "--json"])
    assert res.exit_code == 0 and seen["epochs"] == 3 and seen["minutes"] is None and seen["class_agnostic"] is False
    CliRunner().invoke(app, ["train-detector", "--recipe", "plain", "--json"])
    assert (seen["imgsz"], seen["epochs"], seen["class_agnostic"], seen["recipe"]) == (320, 30, False, "plain")
    res = CliRunner().invoke(app, ["train-detector", "--recipe", "best", "--json"])
    assert res.exit_code == 2 and "--recipe" in json.loads(res.stdout)["error"]


PHOTOS = {
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"): [20, 20, 512, 600],  # the person
    ("sklearn", "datasets/images/flower.jpg"): [168, 82, 446, 358],  # the dahlia
    ("sklearn", "datasets/images/china.jpg"): [60, 30, 362, 396],  # the pagoda
    ("ultralytics", "assets/bus.jpg"): [4, 230, 796, 680],  # the bus
}


def _photo(package: str, rel: str):
    import importlib

    from core.images import load_image

    path = Path(importlib.import_module(package).__file__).parent / rel
    if not path.is_file():
        pytest.skip(f"{package} ships no {rel}")
    return load_image(path).image


def _hit(result, box, k: int = 20) -> bool:
    return bool(len(result) and (box_iou(result.boxes[:k], np.array([box]))[:, 0] >= 0.5).any())


def test_time_budget_class_agnostic_training_and_auto_fallback_on_photographs(home, engine):
    """A class-agnostic YOLOv8n trained under a time budget; the auto choice wraps it with the offline fallback,
    and on real photographs auto is never worse than the offline detector (it hands them over)."""
    from core.demo import DemoKnobs, build_world
    from core.regions.fallback import FallbackDetector
    from core.regions.offline import OfflineDetector
    from core.regions.registry import get_detector
    from core.regions.train import train_detector

    build_world(40, 100, 0, engine=engine, knobs=DemoKnobs(n_categories=10, image_size=128))
    result = train_detector("r", epochs=40, imgsz=64, batch=8, class_agnostic=True, minutes=0.1, cache=True, close_mosaic=0,
                            engine=engine, recipe="test")
    assert result["dataset"]["names"] == ["object"] and result["config"]["minutes"] == 0.1 and result["config"]["nbs"] == 8
    assert 1 <= result["metrics"]["epochs_run"] < 40  # the budget, not the epoch count, ended it
    assert result["metrics"]["history"] and {"epoch", "seconds", "mAP50"} <= set(result["metrics"]["history"][0])

    from core.regions.train import evaluate_detector

    ev = evaluate_detector(split="test", engine=engine)  # every object one class, held-out categories included
    assert ev["images"] > 0 and ev["boxes"] >= ev["images"] and ev["imgsz"] == 64 and 0 <= ev["mAP50"] <= 1

    choice = get_detector("auto", device="cpu")
    assert isinstance(choice.detector, FallbackDetector) and "offline detector" in choice.reason
    offline = OfflineDetector("cpu")
    for (package, rel), box in PHOTOS.items():
        img = _photo(package, rel)
        [auto] = choice.detector.detect([img])
        [base] = offline.detect([img])
        assert _hit(auto, box) >= _hit(base, box), rel
        assert auto.features.shape[1] == 1280


def test_heldout_exposure_counts_heldout_objects_in_training_creatives():
    from core.regions.train import heldout_exposure

    creatives = [[{"category": "tea", "glyph": "A"}, {"category": "kites", "glyph": "K"}],
                 [{"category": "tea", "glyph": "A"}, {"category": None, "glyph": "S"}],
                 [{"category": "kites", "glyph": "K2"}]]
    out = heldout_exposure(creatives, {"kites"})
    assert out == {"creatives": 3, "creatives_with_heldout_object": 2, "creatives_share": 0.6667, "heldout_boxes": 2,
                   "boxes_share": 0.4, "heldout_glyphs": 2}
    assert heldout_exposure([], {"kites"})["creatives_share"] is None
