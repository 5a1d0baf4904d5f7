"""train-detector: YOLO-format export of the demo world's ground truth, a 1-epoch YOLOv8n, and auto pick-up."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from typer.testing import CliRunner

from core.regions.train import CLUTTER, TrainError, export_dataset, latest_detector, train_detector, yolo_label


def test_yolo_label_normalises_and_clips():
    assert yolo_label([10, 20, 30, 60], 100, 200) == pytest.approx((0.2, 0.2, 0.2, 0.2))
    # partly outside: clipped to the image, then normalised
    assert yolo_label([-10, 150, 50, 250], 100, 200) == pytest.approx((0.25, 0.875, 0.5, 0.25))
    assert yolo_label([5, 5, 5, 40], 100, 100) is None  # zero width
    assert yolo_label([200, 10, 300, 50], 100, 100) is None  # wholly outside


def test_no_labelled_creatives_is_a_clear_error(home, engine):
    with pytest.raises(TrainError, match="no labelled creatives"):
        export_dataset(engine=engine)
    from core.cli import app

    res = CliRunner().invoke(app, ["train-detector", "--epochs", "1", "--json"])
    assert res.exit_code == 2
    out = json.loads(res.stdout)
    assert out["ok"] is False and "no labelled creatives" in out["error"]
    res = CliRunner().invoke(app, ["train-detector", "--imgsz", "100", "--json"])
    assert res.exit_code == 2 and "multiple of 32" in json.loads(res.stdout)["error"]


def test_export_train_and_auto_pickup(home, engine):
    from core.demo import DemoKnobs, build_world
    from core.regions.registry import choose_backend, get_detector
    from core.regions.yolo import YoloDetector
    from core.store import Ad, Category, ModelRun, session_scope

    build_world(40, 100, 0, engine=engine, knobs=DemoKnobs(n_categories=12, image_size=128))
    with session_scope(engine) as s:
        ads = {a.id: (a.split, a.truth) for a in s.scalars(select(Ad))}
        unseen = {c.name for c in s.scalars(select(Category).where(Category.unseen.is_(True)))}
        seen = {c.name for c in s.scalars(select(Category).where(Category.unseen.is_(False)))}
    assert unseen and any(split == "test" for split, _ in ads.values())

    # before training, offline auto falls back to the offline detector
    backend, reason = choose_backend("auto")
    assert backend == "offline" and latest_detector() is None

    export = export_dataset("t", engine=engine)
    assert export.names[-1] == CLUTTER and set(export.names[:-1]) == seen and not unseen & set(export.names)
    exported = {i for ids in export.ad_ids.values() for i in ids}
    assert exported == {i for i, (split, truth) in ads.items() if split in ("train", "val") and truth.get("objects")}
    assert export.val_from_train == (not any(split == "val" for split, _ in ads.values()))
    assert all(ads[i][0] != "test" for i in exported)
    n_boxes = 0
    for split in ("train", "val"):
        labels = sorted((export.root / "labels" / split).glob("*.txt"))
        images = sorted((export.root / "images" / split).glob("*.jpg"))
        assert len(labels) == len(images) == export.images[split] > 0
        for path in labels:
            rows = np.loadtxt(path, ndmin=2)
            ad_id = path.stem
            assert len(rows) == len(ads[ad_id][1]["objects"])
            assert ((rows[:, 0] >= 0) & (rows[:, 0] < len(export.names)) & (rows[:, 0] == rows[:, 0].round())).all()
            assert ((rows[:, 1:] >= 0) & (rows[:, 1:] <= 1)).all()
            # the product row carries its category's class id
            product = next(o for o in ads[ad_id][1]["objects"] if o["role"] == "product")
            assert export.names.index(product["category"]) in rows[:, 0]
            n_boxes += len(rows)
        with Image.open(images[0]) as img:
            assert img.size == (128, 128)
    assert n_boxes == sum(export.boxes.values())
    assert "names:" in export.data_yaml.read_text()

    seen_progress = []
    result = train_detector("t", epochs=1, imgsz=128, batch=8, engine=engine,
                            progress=lambda d, t, m: seen_progress.append((d, t, m)))
    assert ("train: epoch 1/1") in [m for _, _, m in seen_progress]
    weights = home / "detectors" / "t" / "best.pt"
    assert result["weights"] == str(weights) and weights.is_file() and latest_detector() is not None
    with session_scope(engine) as s:
        run = s.get(ModelRun, result["run_id"])
        assert run.kind == "detector" and run.status == "done" and run.checkpoint_path == "detectors/t/best.pt"
        assert set(run.metrics) >= {"mAP50", "mAP50-95", "precision", "recall"} and 0 <= run.metrics["mAP50"] <= 1
        assert run.config["classes"] == len(export.names) and run.data_split["images"] == export.images

    det = YoloDetector(str(weights), "cpu")
    assert det.imgsz == 128  # the training size, read from the checkpoint
    assert sorted(det.names.values()) == sorted(export.names) and det.feature_dim == 64 + 128 + 256
    [res] = det.detect([Image.new("RGB", (128, 128), (90, 160, 40))], conf=0.0, max_det=5)
    assert 0 < len(res) <= 5 and res.features.shape == (len(res), det.feature_dim) and np.isfinite(res.features).all()
    assert set(res.labels) <= set(export.names)

    # auto now picks the trained detector, and says so
    backend, reason = choose_backend("auto")
    assert backend == "yolo" and "trained on this catalog" in reason and str(latest_detector()) in reason
    choice = get_detector("auto", device="cpu")
    assert choice.backend == "yolo" and choice.detector.weights == str(latest_detector())
    # explicit weights elsewhere win over the trained one
    other = home / "weights" / "yolov8n.pt"
    other.parent.mkdir(parents=True, exist_ok=True)
    other.write_bytes(weights.read_bytes())
    backend, reason = choose_backend("auto")
    assert backend == "yolo" and "trained" not in reason and str(other) in reason
