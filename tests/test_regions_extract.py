"""Catalog extraction (cached by image hash + detector) and the product-box ranking report."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from PIL import Image

from core.regions.base import DetectionResult, box_iou

# image colour -> (labels, boxes, confidences) the test detector reports for that creative
SCENES = {
    (200, 30, 30): (["football helmet", "coffee mug"], [[60, 60, 95, 95], [12, 10, 50, 52]], [0.9, 0.4]),
    (30, 200, 30): (["running shoe", "backpack"], [[0, 0, 40, 40], [50, 50, 90, 90]], [0.8, 0.3]),
    (30, 30, 200): (["Egyptian cat", "tabby"], [[0, 0, 30, 30], [60, 0, 95, 30]], [0.7, 0.6]),
    (90, 90, 90): (["umbrella"], [[5, 5, 90, 90]], [0.5]),
}
# ad id -> (colour, text, product box or None)
ADS = {
    "mug": ((200, 30, 30), "Fresh coffee mug for slow mornings", [10, 10, 50, 50]),
    "shoe": ((30, 200, 30), "Running sneakers, light and fast", [0, 0, 40, 40]),
    "teapot": ((30, 30, 200), "Porcelain teapot", [20, 20, 80, 80]),
    "plain": ((90, 90, 90), "Rain umbrella", None),
    "plain-copy": ((90, 90, 90), "Same picture, other text", None),  # same image as "plain": one detection
}


class SceneDetector:
    """Reports the scene of each creative (known from its colour); counts the images it was asked about."""

    backend = "offline"
    version = "scene-test/1"
    device = "cpu"
    feature_dim = 3

    def __init__(self) -> None:
        self.seen = 0

    def detect(self, images, *, conf=0.05, iou=0.5, max_det=50):  # noqa: ARG002
        out = []
        for img in images:
            self.seen += 1
            labels, boxes, confs = SCENES[img.getpixel((0, 0))]
            keep = [i for i, c in enumerate(confs) if c >= conf][:max_det]
            out.append(DetectionResult(
                boxes=np.array([boxes[i] for i in keep], np.float32).reshape(-1, 4),
                confidences=np.array([confs[i] for i in keep], np.float32), labels=[labels[i] for i in keep],
                features=np.array([[len(labels[i]), confs[i], i] for i in keep], np.float32).reshape(-1, 3),
                image_size=img.size, detector=self.version, backend=self.backend, device=self.device))
        return out


def _png(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def catalog(engine):
    from core.filestore import put_image
    from core.store import Ad, session_scope

    with session_scope(engine) as s:
        for ad_id, (color, text, box) in ADS.items():
            data = _png(color)
            sha = hashlib.sha256(data).hexdigest()
            s.add(Ad(id=ad_id, text=text, image_path=put_image(data, sha, ".png"), image_hash=sha, content_hash=sha + ad_id,
                     width=96, height=96, truth={"product_box": box} if box else {}))
        broken = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40
        sha = hashlib.sha256(broken).hexdigest()
        s.add(Ad(id="zz-broken", text="Broken picture", image_path=put_image(broken, sha, ".png"), image_hash=sha,
                 content_hash=sha, width=96, height=96, truth={}))
    return engine


def test_extraction_is_cached(catalog):
    from core.regions.extract import detector_key, extract_catalog, load_regions
    from core.store import Ad, RegionSet, session_scope

    det = SceneDetector()
    calls = []
    first = extract_catalog(det, ocr=False, engine=catalog, batch_size=2, progress=lambda d, t, m: calls.append((d, t, m)))
    assert (first["ads"], first["images"], first["computed"], first["cached"]) == (6, 5, 4, 0)
    assert len(first["failed"]) == 1 and "not an image" in first["failed"][0]["error"]
    assert det.seen == 4 and calls[-1][:2] == (5, 5) and calls[-1][2].startswith("regions:")
    second = extract_catalog(det, ocr=False, engine=catalog)
    assert (second["computed"], second["cached"]) == (0, 4) and det.seen == 4  # nothing detected again
    # a different threshold is a different cache entry
    third = extract_catalog(det, ocr=False, engine=catalog, conf=0.5)
    assert (third["computed"], third["cached"]) == (4, 0) and det.seen == 8
    key = detector_key(det, 0.05, 0.5, 50)
    with session_scope(catalog) as s:
        sha = s.get(Ad, "mug").image_hash
        assert s.query(RegionSet).count() == 8
    dets, ocr = load_regions(sha, key, engine=catalog)
    assert dets.labels == ["football helmet", "coffee mug"] and ocr == []
    np.testing.assert_allclose(dets.boxes, [[60, 60, 95, 95], [12, 10, 50, 52]])
    np.testing.assert_allclose(dets.features, [[15, 0.9, 0], [10, 0.4, 1]], rtol=1e-6)
    high = load_regions(sha, detector_key(det, 0.5, 0.5, 50), engine=catalog)[0]
    assert high.labels == ["football helmet"]


def test_product_box_rank_report(catalog):
    from core.regions.extract import product_box_rank_report

    report = product_box_rank_report(catalog, SceneDetector(), ocr=False)
    assert report["ads"] == 3  # the ads with a product box
    # mug: helmet first by confidence (miss), the mug box first after re-weighting (hit, IoU 0.9)
    # shoe: hit before and after; teapot: no box overlaps the product
    assert (report["top1_before_n"], report["top1_after_n"]) == (1, 2)
    assert report["top1_before"] == pytest.approx(1 / 3, abs=1e-4) and report["top1_after"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["hit_in_k1"] == 2 and report["mean_hit_rank_before"] == 0.5 and report["mean_hit_rank_after"] == 0.0
    assert report["recall_at_k1"] == pytest.approx(2 / 3, abs=1e-4)  # mug and shoe have their box among the top k1
    per_ad = {row["ad_id"]: row for row in report["per_ad"]}
    assert per_ad["mug"] == {"ad_id": "mug", "first_hit_before": 1, "first_hit_after": 0}
    assert per_ad["teapot"]["first_hit_before"] is None
    assert box_iou(np.array([12, 10, 50, 52]), np.array([10, 10, 50, 50]))[0, 0] >= 0.5


def test_product_box_rank_report_with_a_scorer_and_a_split(catalog):
    from core.regions.extract import product_box_rank_report
    from core.store import Ad, session_scope

    class LeastConfident:
        name = "least confident first"

        def score(self, text, detections):  # noqa: ARG002
            return -detections.confidences

    report = product_box_rank_report(catalog, SceneDetector(), ocr=False, scorer=LeastConfident())
    assert report["scorer"] == "least confident first" and report["split"] == "all"
    # mug: the mug box has the lower confidence -> first; shoe: its only hit box moves down if another box exists
    assert per_ad_first(report)["mug"] == 0
    with session_scope(catalog) as s:
        s.get(Ad, "mug").split = "test"
    only = product_box_rank_report(catalog, SceneDetector(), ocr=False, split="test")
    assert only["ads"] == 1 and only["split"] == "test" and only["per_ad"][0]["ad_id"] == "mug"


def per_ad_first(report: dict) -> dict[str, int | None]:
    return {row["ad_id"]: row["first_hit_after"] for row in report["per_ad"]}


def test_report_without_ground_truth(engine):
    from core.regions.extract import product_box_rank_report

    report = product_box_rank_report(engine, SceneDetector(), ocr=False)
    assert report["ads"] == 0 and "product box" in report["message"]


def test_a_concurrent_extraction_of_the_same_images_loses_nothing(catalog, monkeypatch):
    """Two processes extracting one catalogue with one detector: the one that finds a row written by the other between
    its check and its insert retries, skips that image, and neither fails (a run used to die on the unique key)."""
    from sqlalchemy import func, select

    from core.regions import extract
    from core.regions.extract import extract_catalog, load_regions
    from core.store import RegionSet, session_scope

    real_store, raced = extract._store, []

    def store_after_a_rival(session, image_hash, key, result, ocr):
        if not raced:  # the rival process stores this image first, in its own transaction
            raced.append(image_hash)
            with session_scope(catalog) as rival:
                real_store(rival, image_hash, key, result, ocr)
        real_store(session, image_hash, key, result, ocr)

    monkeypatch.setattr(extract, "_store", store_after_a_rival)
    report = extract_catalog(SceneDetector(), ocr=False, engine=catalog, batch_size=8)
    assert raced and report["failed"][0]["image_hash"] and len(report["failed"]) == 1  # the broken picture only
    with session_scope(catalog) as s:
        counts = s.execute(select(RegionSet.image_hash, func.count()).group_by(RegionSet.image_hash)).all()
    assert counts and all(n == 1 for _, n in counts) and len(counts) == report["computed"] + 1  # + the rival's row
    assert load_regions(raced[0], report["key"], engine=catalog) is not None
