"""Model files: AdLens's own checkpoints load with weights_only; YOLO .pt pickles only from configured places; ONNX from anywhere."""

from __future__ import annotations

import os
import re

import pytest

from core.config import REPO_ROOT, get_settings
from core.regions.base import DetectorError
from core.regions.yolo import YoloDetector, check_weights_policy, trusted_weight_dirs


def test_every_torch_load_in_core_uses_weights_only():
    calls = []
    for path in (REPO_ROOT / "core").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"torch\.load\(", text):
            depth, end = 1, match.end()
            while depth and end < len(text):  # the whole call, over several lines if need be
                depth += {"(": 1, ")": -1}.get(text[end], 0)
                end += 1
            calls.append((path.relative_to(REPO_ROOT), text[match.start():end]))
    assert calls, "the check must see AdLens's own checkpoint loading"
    assert [c for c in calls if "weights_only=True" not in c[1]] == []


@pytest.fixture
def pickle_bomb(tmp_path):
    """A .pt whose unpickling would create a file: proof that a refused file was never loaded."""
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "uploads" / "evil.pt"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(Payload()))
    return path, marker


def test_pt_outside_the_configured_places_is_refused_and_never_unpickled(home, pickle_bomb):
    path, marker = pickle_bomb
    with pytest.raises(DetectorError) as info:
        YoloDetector(str(path), "cpu")
    msg = str(info.value)
    assert "refused to load" in msg and "pickle" in msg and "ADLENS_WEIGHTS_DIRS" in msg and "ONNX" in msg
    assert str(home / "weights") in msg
    assert not marker.exists()


def test_a_link_in_the_weights_folder_to_an_outside_pt_is_refused(home, pickle_bomb):
    path, marker = pickle_bomb
    (home / "weights").mkdir(parents=True)
    link = home / "weights" / "yolo.pt"
    os.symlink(path, link)
    with pytest.raises(DetectorError, match="refused to load"):
        check_weights_policy(link)
    with pytest.raises(DetectorError, match="refused to load"):
        YoloDetector(str(link), "cpu")
    assert not marker.exists()


def test_configured_places_are_accepted(home, tmp_path, monkeypatch):
    for folder in (home / "weights", home / "detectors" / "run1", REPO_ROOT / "assets" / "models"):
        check_weights_policy(folder / "any.pt")  # no error
    extra = tmp_path / "team-weights"
    with pytest.raises(DetectorError):
        check_weights_policy(extra / "m.pt")
    monkeypatch.setenv("ADLENS_WEIGHTS_DIRS", str(extra))
    get_settings.cache_clear()
    assert extra.resolve() in trusted_weight_dirs()
    check_weights_policy(extra / "m.pt")
    configured = tmp_path / "elsewhere" / "mine.pt"
    configured.parent.mkdir()
    configured.write_bytes(b"x")
    with pytest.raises(DetectorError):
        check_weights_policy(configured)
    monkeypatch.setenv("ADLENS_YOLO_WEIGHTS", str(configured))
    get_settings.cache_clear()
    check_weights_policy(configured)  # the configured ADLENS_YOLO_WEIGHTS file itself
    check_weights_policy(tmp_path / "anywhere" / "model.onnx")  # ONNX holds no code


def test_regions_page_refuses_a_typed_pt_path(home, engine, pickle_bomb):
    """The Regions page's weights box is typed by whoever uses the app: a .pt there is refused, not loaded."""
    from core.regions.registry import get_detector

    path, marker = pickle_bomb
    with pytest.raises(DetectorError, match="refused to load"):
        get_detector("yolo", weights=str(path))
    assert not marker.exists()


def test_onnx_export_of_a_tiny_yolo_loads_and_detects(home, tmp_path):
    pytest.importorskip("onnx", reason="the onnx package (needed to export ONNX) is not installed")
    from PIL import Image

    from core.regions.yolo import ultralytics_yolo

    out = ultralytics_yolo()("yolov8n.yaml").export(format="onnx", imgsz=128, dynamic=False, simplify=False)
    target = tmp_path / "anywhere" / "tiny.onnx"
    target.parent.mkdir()
    os.replace(out, target)
    det = YoloDetector(str(target), "cpu")
    [res] = det.detect([Image.new("RGB", (128, 128), (90, 160, 40))], conf=0.0, max_det=5)
    assert det.onnx and 0 < len(res) <= 5 and res.boxes.shape == (len(res), 4)
