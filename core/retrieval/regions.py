"""Region inputs of the trained models: the cached regions of catalog ads, and the regions of one new creative.

Callers look these functions up on this module (``region_reads.regions_for_ads(...)``), so a test can replace
them here once for every user.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from sqlalchemy import Engine, select

from core.errors import RetrievalError
from core.filestore import get_array
from core.progress import ProgressFn, no_progress
from core.retrieval.catalog import CatalogAds
from core.store import Region, RegionSet, in_parts, session_scope


@dataclass
class RegionData:
    """One image's regions in detector-confidence order: boxes [m, 4], confidences [m], features [m, D], labels."""

    boxes: np.ndarray
    confidences: np.ndarray
    features: np.ndarray
    labels: list[str]


def regions_for_ads(ad_ids: Sequence[str], image_hashes: Sequence[str], detector: str | None, *, engine: Engine,
                    progress: ProgressFn = no_progress, descriptors: str | None = None) -> tuple[str, int, dict[str, RegionData]]:
    """Cached regions of the ads' images (extracted first where missing) -> (detector key, feature dim, by image hash).

    ``descriptors`` (none | effl0 | concat): the region features (see core.regions.extract.resolve_descriptors).
    """
    from core.regions.extract import extract_catalog

    result = extract_catalog(detector, ad_ids=list(ad_ids), ocr=False, engine=engine, progress=progress, descriptors=descriptors)
    key = result["key"]
    wanted = sorted(set(image_hashes))
    out: dict[str, RegionData] = {}
    dim = 0
    with session_scope(engine) as s:
        sets = in_parts(s, select(RegionSet.id, RegionSet.image_hash, RegionSet.features_path, RegionSet.feature_dim)
                        .where(RegionSet.detector == key), RegionSet.image_hash, wanted)
        by_set: dict[int, list[tuple]] = {}
        for row in in_parts(s, select(Region.region_set_id, Region.rank, Region.x1, Region.y1, Region.x2, Region.y2, Region.confidence,
                                      Region.label).order_by(Region.rank), Region.region_set_id, [r[0] for r in sets]):
            by_set.setdefault(row[0], []).append(row[2:])
    for set_id, image_hash, features_path, feature_dim in sets:
        regs = by_set.get(set_id, [])
        dim = dim or int(feature_dim)
        feats = get_array(features_path) if features_path else np.zeros((0, feature_dim), np.float32)
        out[image_hash] = RegionData(
            boxes=np.array([r[:4] for r in regs], np.float32).reshape(-1, 4), confidences=np.array([r[4] for r in regs], np.float32),
            features=np.asarray(feats, np.float32).reshape(len(regs), int(feature_dim)), labels=[r[5] for r in regs])
    return key, dim, out


def regions_for_image(image: Image.Image, detector: str | None, key: str | None = None) -> RegionData:
    """Detect the regions of one new creative with the detector a run was trained on (same thresholds)."""
    from core.regions.registry import get_detector

    det = get_detector(detector).detector
    if key and not key.startswith(f"{det.version}|"):
        raise RetrievalError(f"this run was trained on regions of '{key.split('|')[0]}', but the detector available now is "
                             f"'{det.version}': the query would not be comparable")
    result = det.detect([image.convert("RGB")], conf=0.05, iou=0.5, max_det=50)[0]
    return RegionData(result.boxes, result.confidences, result.features, list(result.labels))


def empty_regions(dim: int) -> RegionData:
    """No regions (an ad without image regions), with ``dim``-d features."""
    return RegionData(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, dim), np.float32), [])


def region_arrays(cat: CatalogAds, regions: dict[str, RegionData], dim: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(features, confidences) per catalog ad, in the catalog's order (no regions where an image has none)."""
    feats, confs = [], []
    for image_hash in cat.image_hashes:
        reg = regions.get(image_hash) or empty_regions(dim)
        feats.append(reg.features)
        confs.append(reg.confidences)
    return feats, confs


def described_regions_for_images(images: Sequence[Image.Image], detector: str | None = None, *, batch_size: int = 8,
                                 progress: ProgressFn = no_progress) -> list[RegionData]:
    """Regions of new images whose features are region descriptors (1280-d EfficientNet-Lite0): the detector's own
    features when it already gives descriptors (the auto detector with a trained catalog detector, the offline
    detector), else the boxes described by :mod:`core.regions.describe`."""
    from core.regions.extract import with_descriptors
    from core.regions.registry import get_detector

    det = get_detector(detector).detector
    out: list[RegionData] = []
    for start in range(0, len(images), batch_size):
        chunk = [img.convert("RGB") for img in images[start: start + batch_size]]
        results = det.detect(chunk, conf=0.05, iou=0.5, max_det=50)
        if region_descriptor_mode(det) != "none":
            from core.regions.describe import get_describer

            results = with_descriptors(results, chunk, get_describer(det.device), "effl0")
        out += [RegionData(r.boxes, r.confidences, r.features, list(r.labels)) for r in results]
        progress(min(start + batch_size, len(images)), len(images), "image regions: detect + describe")
    return out


def region_descriptor_mode(detector) -> str:
    """"none" when the detector's own features are already ImageNet region descriptors, else "effl0"."""
    return "none" if getattr(detector, "describer", None) is not None or getattr(detector, "backend", "") == "offline" else "effl0"
