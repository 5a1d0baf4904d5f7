"""The offline detector (selective search + ImageNet EfficientNet-Lite0) on real photographs."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from core.regions.base import box_iou
from core.regions.clues import rerank
from core.regions.offline import FEATURE_DIM, OfflineDetector, imagenet_labels
from core.regions.proposals import propose

COFFEE_CUP = (165, 10, 400, 300)  # hand box of the cup in skimage.data.coffee() (600x400)
SHUTTLE = (395, 0, 475, 285)  # hand box of the space-shuttle model in skimage.data.astronaut() (512x512)


@pytest.fixture(scope="module")
def detector():
    return OfflineDetector("cpu")


@pytest.fixture(scope="module")
def results(detector):
    images = [Image.fromarray(data.coffee()), Image.fromarray(data.astronaut())]
    return images, detector.detect(images, conf=0.05, iou=0.5, max_det=30)


def _center_inside(box, hand) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return hand[0] <= cx <= hand[2] and hand[1] <= cy <= hand[3]


def test_labels_and_proposals():
    labels = imagenet_labels()
    assert len(labels) == 1000 and labels[967] == "espresso"
    boxes = propose(Image.fromarray(data.chelsea()))
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 50
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 451 + 1e-6).all() and (boxes[:, 3] <= 300 + 1e-6).all()


def test_shapes_and_confidences(results):
    images, res = results
    for img, r in zip(images, res, strict=True):
        assert 0 < len(r) <= 30
        assert r.boxes.shape == (len(r), 4) and r.features.shape == (len(r), FEATURE_DIM)
        assert r.features.dtype == np.float32 and np.isfinite(r.features).all()
        assert ((r.confidences >= 0.05) & (r.confidences <= 1.0)).all()
        assert (np.diff(r.confidences) <= 1e-7).all()
        assert r.image_size == img.size and r.backend == "offline" and r.meta["classified"] > len(r) - 1
        # after NMS no two kept boxes overlap more than the threshold
        iou = box_iou(r.boxes, r.boxes)
        np.fill_diagonal(iou, 0)
        assert iou.max() < 0.5 + 1e-6


def test_box_on_the_main_object(results):
    _, (coffee, _) = results
    top = coffee.boxes[0]
    assert box_iou(top, np.array(COFFEE_CUP))[0, 0] >= 0.5, (top, coffee.labels[0])
    assert coffee.labels[0] in {"espresso", "cup", "coffee mug"}


def test_text_moves_the_named_object_up(results):
    _, (_, astronaut) = results
    before = rerank(astronaut, "", k1=20, k2=10)
    assert not _center_inside(before.regions[0].box, SHUTTLE)  # the detector's favourite is not the shuttle
    after = rerank(astronaut, "Space shuttle rocket model for young astronauts", k1=20, k2=10)
    best = after.after()[0]
    assert _center_inside(best.box, SHUTTLE), (best.label, best.box)
    assert best.rank_before > 0 and best.change > 0 and best.kept


def test_tiny_and_flat_images(detector):
    res = detector.detect([Image.new("RGB", (8, 8), (10, 200, 30)), Image.new("RGB", (1, 40), (0, 0, 0))], conf=0.0)
    for r, size in zip(res, [(8, 8), (1, 40)], strict=True):
        assert r.image_size == size and len(r) >= 1
        assert (r.boxes[:, 2] <= size[0] + 1e-3).all() and (r.boxes[:, 3] <= size[1] + 1e-3).all()
