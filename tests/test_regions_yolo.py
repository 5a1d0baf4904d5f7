"""The Ultralytics backend with a YOLOv8n the test builds itself (untrained, no download), and backend choice."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from core.regions.base import DetectorError
from core.regions.registry import choose_backend, get_detector
from core.regions.yolo import YoloDetector


@pytest.fixture(scope="module")
def yolo_pt(tmp_path_factory):
    from core.regions.yolo import trust_weights, ultralytics_yolo

    path = tmp_path_factory.mktemp("weights") / "tiny-yolov8n.pt"
    ultralytics_yolo()("yolov8n.yaml").save(str(path))
    trust_weights(path)  # a .pt outside the weights folders loads only when the operator names it (--weights)
    return path


def test_yolo_boxes_and_neck_features(yolo_pt):
    det = YoloDetector(str(yolo_pt), "cpu")
    assert det.backend == "yolo" and det.version.startswith("yolo/tiny-yolov8n.pt@")
    assert det.feature_dim == 64 + 128 + 256  # P3/P4/P5 widths of yolov8n
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (300, 500, 3), dtype=np.uint8)), Image.new("RGB", (64, 128), (200, 30, 30))]
    # untrained head: confidences are tiny, so keep everything
    results = det.detect(images, conf=0.0, iou=0.7, max_det=15)
    assert len(results) == 2
    for img, res in zip(images, results, strict=True):
        assert 0 < len(res) <= 15
        assert res.boxes.shape == (len(res), 4) and res.boxes.dtype == np.float32
        assert res.features.shape == (len(res), det.feature_dim) and res.features.dtype == np.float32
        assert np.isfinite(res.features).all() and np.abs(res.features).sum() > 0
        assert (res.boxes[:, 0] >= 0).all() and (res.boxes[:, 2] <= img.width + 1e-3).all()
        assert (res.boxes[:, 3] <= img.height + 1e-3).all() and (res.boxes[:, 2] >= res.boxes[:, 0]).all()
        assert (np.diff(res.confidences) <= 1e-7).all()  # sorted by confidence
        assert res.image_size == img.size and res.device == "cpu"
    # the features are pooled per box: different boxes give different vectors
    assert not np.allclose(results[0].features[0], results[0].features[-1])


def test_yolo_bad_weights_fail_fast(tmp_path, home):
    with pytest.raises(DetectorError, match="not found"):
        YoloDetector(str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint" * 20)
    with pytest.raises(DetectorError, match="refused to load"):  # a .pt from an unconfigured place is never unpickled
        YoloDetector(str(junk))
    from core.regions.yolo import trust_weights

    trust_weights(junk)
    with pytest.raises(DetectorError, match="not a usable YOLO model"):
        YoloDetector(str(junk))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DetectorError, match="not a YOLO model file"):
        YoloDetector(str(text))
    with pytest.raises(DetectorError, match="no network"):
        YoloDetector("yolov99z.pt", offline=True)


def test_backend_choice(yolo_pt, home, monkeypatch):
    backend, reason = choose_backend("auto", "yolov99z.pt")
    assert backend == "offline" and "no network" in reason
    backend, reason = choose_backend("auto", str(yolo_pt))
    assert backend == "yolo" and str(yolo_pt) in reason
    assert choose_backend("offline", str(yolo_pt)) == ("offline", "requested")
    with pytest.raises(DetectorError, match="unknown detector"):
        choose_backend("detr")
    monkeypatch.setenv("ADLENS_DETECTOR", "yolo")
    monkeypatch.setenv("ADLENS_YOLO_WEIGHTS", str(yolo_pt))
    from core.config import get_settings

    get_settings.cache_clear()
    choice = get_detector()
    assert choice.backend == "yolo" and choice.detector.version.startswith("yolo/tiny-yolov8n.pt")
    assert choice.device_reason.startswith("cpu")
    with pytest.raises(DetectorError):
        get_detector("yolo", weights="yolov99z.pt")
