"""Batch region extraction over the catalog, cached, and the product-box ranking figure.

Cache: one RegionSet row per (image hash, detector key); the key is the detector's version (backend,
weights hash, code version) plus the extraction thresholds, so a re-run with the same detector does
no work and a different detector or threshold never serves stale boxes. Box rows (Region) are in
confidence order; their feature vectors are the rows of one ``.npy`` under ``home/regions``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from core.eta import eta_text
from core.filestore import DamagedFile, check_sealed, get_array, put_array, remove_sealed, resolve
from core.images import ImageError, load_image
from core.progress import ProgressFn, no_progress
from core.regions.base import DetectionResult, Detector, box_iou
from core.regions.clues import ClueScorer, rerank
from core.regions.describe import RegionDescriber
from core.regions.ocr import ocr_words, read_text
from core.regions.registry import get_detector
from core.store import IN_CHUNK, Ad, Region, RegionSet, get_engine, in_parts, session_scope

DESCRIPTOR_CHOICES = ("none", "effl0", "concat")


def detector_key(detector: Detector, conf: float, iou: float, max_det: int, describer: RegionDescriber | None = None,
                 descriptors: str = "none") -> str:
    """The cache key of a detector's regions; with descriptors, their mode and version too (``|desc=...``)."""
    key = f"{detector.version}|conf={conf:g}|iou={iou:g}|max={max_det}"
    if describer is not None and descriptors != "none":
        key += f"|desc={descriptors}:{describer.version}"
    return key


def resolve_descriptors(descriptors: str | None, device: str = "cpu") -> tuple[str, RegionDescriber | None]:
    """(mode, describer) for ``descriptors``: none (the detector's own features), effl0 (ImageNet EfficientNet-Lite0
    descriptor of each box, :mod:`core.regions.describe`) or concat ([descriptor; detector features], each L2-normalised)."""
    mode = (descriptors or "none").lower()
    if mode not in DESCRIPTOR_CHOICES:
        raise ValueError(f"unknown descriptors {descriptors!r}: choose {', '.join(DESCRIPTOR_CHOICES)}")
    if mode == "none":
        return mode, None
    from core.regions.describe import get_describer

    return mode, get_describer(device)


def with_descriptors(results: list[DetectionResult], images: list, describer: RegionDescriber, mode: str) -> list[DetectionResult]:
    """The detections with their features replaced by (effl0) or joined to (concat) the boxes' descriptors."""
    descs = describer.describe(images, [r.boxes for r in results])
    out = []
    for res, desc in zip(results, descs, strict=True):
        feats = desc
        if mode == "concat":
            own = np.asarray(res.features, np.float32).reshape(len(res), -1)
            own = own / np.maximum(np.linalg.norm(own, axis=1, keepdims=True), 1e-9)
            feats = np.concatenate([desc, own], 1) / np.sqrt(2.0)
        new = res.subset(np.arange(len(res)))
        new.features = feats.astype(np.float32).reshape(len(res), -1)
        new.meta["descriptors"] = f"{mode}:{describer.version}"
        out.append(new)
    return out


def _features_key(image_hash: str, key: str) -> str:
    return hashlib.sha256(f"{image_hash}|{key}".encode()).hexdigest()


def _store(session, image_hash: str, key: str, result: DetectionResult, ocr: list[dict]) -> None:
    rel = put_array(result.features.astype(np.float32), _features_key(image_hash, key), kind="regions")
    session.add(RegionSet(
        image_hash=image_hash, detector=key, device=result.device, features_path=rel, feature_dim=result.feature_dim,
        ocr=ocr, seconds=float(result.seconds),
        regions=[Region(rank=i, x1=float(b[0]), y1=float(b[1]), x2=float(b[2]), y2=float(b[3]), confidence=float(c), label=label)
                 for i, (b, c, label) in enumerate(zip(result.boxes, result.confidences, result.labels, strict=True))],
    ))


def extract_catalog(detector: str | Detector | None = None, *, limit: int | None = None, ad_ids: list[str] | None = None,
                    batch_size: int = 8, ocr: bool = True, conf: float = 0.05, iou: float = 0.5, max_det: int = 50,
                    weights: str | None = None, device: str | None = None, progress: ProgressFn | None = None,
                    engine: Engine | None = None, descriptors: str | None = None,
                    describer: RegionDescriber | None = None, should_stop: Callable[[], bool] | None = None) -> dict[str, Any]:
    """Detect (and OCR) every catalog image not yet cached for this detector; returns what was done.

    ``detector`` is a backend name (auto|yolo|offline, default settings.detector) or a built Detector.
    ``descriptors``: none (default: the detector's own features), effl0 or concat (see :func:`resolve_descriptors`;
    ``describer`` overrides the default describer); the cache key then names the descriptor version, and
    ``seconds_detect`` / ``seconds_describe`` split the time.
    Streamed: ``batch_size`` images are loaded, detected and committed at a time, so memory stays bounded and an
    interrupted run loses at most one batch; re-running skips what is cached. ``should_stop()`` is asked before
    each batch: True stops cleanly (``stopped`` in the result). Progress messages carry the rate and ETA.
    """
    progress = progress or no_progress
    engine = engine or get_engine()
    started = time.perf_counter()
    det, backend, reason, dev = _resolve_detector(detector, weights, device)
    mode, default_describer = resolve_descriptors(descriptors, det.device)
    describer = (describer or default_describer) if mode != "none" else None
    key = detector_key(det, conf, iou, max_det, describer, mode)
    rows, images, cached = _cache_state(engine, key, ad_ids, limit)
    rebuilt = drop_damaged(engine, key, cached)  # a truncated / altered cache file is detected and extracted again
    cached -= set(rebuilt)
    todo = [h for h in images if h not in cached]
    computed, failed, stopped = 0, [], False
    seconds_detect = seconds_describe = 0.0
    progress(0, len(todo), f"regions: {len(cached)} cached, {len(todo)} to detect")
    loop_start = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        if should_stop is not None and should_stop():
            stopped = True
            break
        batch = process_batch(det, describer, mode, [(h, resolve(images[h])) for h in todo[start: start + batch_size]],
                              conf=conf, iou=iou, max_det=max_det, ocr=ocr)
        failed += batch.failed
        seconds_detect += batch.seconds_detect
        seconds_describe += batch.seconds_describe
        computed += store_results(engine, key, batch.items)
        done = min(start + batch_size, len(todo))
        eta = eta_text(done, len(todo), time.perf_counter() - loop_start)
        progress(done, len(todo), f"regions: {computed} of {len(todo)} detected{eta}")
    return {
        "ok": True, "detector": det.version, "key": key, "backend": backend, "device": dev, "reason": reason,
        "ads": len(rows), "images": len(images), "computed": computed, "cached": len(cached), "failed": failed, "rebuilt": len(rebuilt),
        "stopped": stopped, "remaining": len(todo) - computed - len(failed),
        "seconds": round(time.perf_counter() - started, 3), "seconds_detect": round(seconds_detect, 3),
        "seconds_describe": round(seconds_describe, 3), "descriptors": mode if describer is not None else "none",
        "describer": describer.version if describer is not None else None,
    }


@dataclass
class Batch:
    """One batch's detections: (image hash, result, OCR lines) per readable image, the unreadable ones, and timings."""

    items: list[tuple[str, DetectionResult, list[dict]]] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)
    seconds_detect: float = 0.0
    seconds_describe: float = 0.0


def process_batch(det: Detector, describer: RegionDescriber | None, mode: str, paths: list[tuple[str, Any]], *, conf: float,
                  iou: float, max_det: int, ocr: bool) -> Batch:
    """Load, detect, describe and OCR one batch of (image hash, image file) -> :class:`Batch` (nothing stored).
    The same function runs here and on Dask workers (core.scale), so both write identical cache entries."""
    batch = Batch()
    loaded = []
    for image_hash, path in paths:
        try:
            loaded.append((image_hash, load_image(path).image))
        except ImageError as exc:
            batch.failed.append({"image_hash": image_hash, "error": str(exc)})
    if not loaded:
        return batch
    t0 = time.perf_counter()
    results = det.detect([img for _, img in loaded], conf=conf, iou=iou, max_det=max_det)
    t1 = time.perf_counter()
    batch.seconds_detect = t1 - t0
    if describer is not None and results:
        results = with_descriptors(results, [img for _, img in loaded], describer, mode)
        batch.seconds_describe = time.perf_counter() - t1
    for (image_hash, img), result in zip(loaded, results, strict=True):
        batch.items.append((image_hash, result, [line.to_dict() for line in read_text(img)] if ocr else []))
    return batch


def _resolve_detector(detector: str | Detector | None, weights: str | None, device: str | None) -> tuple[Detector, str, str, str]:
    if detector is None or isinstance(detector, str):
        choice = get_detector(detector, weights=weights, device=device)
        return choice.detector, choice.backend, choice.reason, choice.device_reason
    return detector, detector.backend, "given", detector.device


def _cache_state(engine: Engine, key: str, ad_ids: list[str] | None = None,
                 limit: int | None = None) -> tuple[list, dict[str, str], set[str]]:
    """(ad rows, image hash -> path, hashes already cached under ``key``) of the catalog (or of ``ad_ids``)."""
    with session_scope(engine) as s:
        query = select(Ad.id, Ad.image_hash, Ad.image_path).order_by(Ad.id)
        if ad_ids is None:
            rows = s.execute(query if limit is None else query.limit(max(0, limit))).all()
        else:  # back in id order after the parts
            rows = sorted(in_parts(s, query, Ad.id, ad_ids), key=lambda r: r[0])
            rows = rows if limit is None else rows[: max(0, limit)]
        images: dict[str, str] = {}
        for _ad, image_hash, path in rows:
            images.setdefault(image_hash, path)
        cached = {row[0] for row in _entries(s, key, set(images), RegionSet.image_hash)}
    return rows, images, cached


SCAN_ABOVE = 5 * IN_CHUNK  # images: beyond this many, one scan of the key's entries beats IN lists in parts


def _entries(s, key: str, hashes: set[str], *columns) -> list:
    """Rows (``columns``, the image hash first) of the cache entries under ``key`` for these image hashes: IN lists in
    parts for a few images (one ad's regions must not read a 100k-ad cache's rows), one scan of the key's entries for
    many (no IN list of a whole catalogue: SQLite caps bound variables)."""
    if not hashes:
        return []
    if len(hashes) <= SCAN_ABOVE:
        return in_parts(s, select(*columns).where(RegionSet.detector == key), RegionSet.image_hash, sorted(hashes))
    return [row for row in s.execute(select(*columns).where(RegionSet.detector == key)) if row[0] in hashes]


def drop_damaged(engine: Engine, key: str, hashes: set[str]) -> list[str]:
    """Remove the cache entries (rows and files) of these images under ``key`` whose feature file is missing or does not
    match its seal (core.filestore.check_sealed); returns their image hashes, for extraction to compute again."""
    if not hashes:
        return []
    with session_scope(engine) as s:
        sets = _entries(s, key, set(hashes), RegionSet.image_hash, RegionSet.features_path)
    damaged = []
    for image_hash, rel in sets:
        if not rel:
            continue
        try:
            check_sealed(resolve(rel), f"the region cache file {rel}", "it is extracted again")
            if not resolve(rel).is_file():
                raise DamagedFile(f"the region cache file {rel} is missing")
        except (DamagedFile, OSError):
            damaged.append((image_hash, rel))
    if damaged:
        with session_scope(engine) as s:
            for (rs,) in in_parts(s, select(RegionSet).where(RegionSet.detector == key), RegionSet.image_hash, [h for h, _ in damaged]):
                s.delete(rs)
        for _h, rel in damaged:
            remove_sealed(resolve(rel))
    return [h for h, _ in damaged]


def default_cache_key(detector: str | Detector | None = None, *, descriptors: str | None = None, conf: float = 0.05,
                      iou: float = 0.5, max_det: int = 50) -> str:
    """The region-cache key ``extract`` (and training) would use with these settings (builds the detector, detects nothing)."""
    det, _backend, _reason, _dev = _resolve_detector(detector, None, None)
    mode, describer = resolve_descriptors(descriptors, det.device)
    return detector_key(det, conf, iou, max_det, describer if mode != "none" else None, mode)


def missing_count(key: str, *, engine: Engine | None = None) -> int:
    """How many of the catalog's images have no regions cached under ``key``."""
    _rows, images, cached = _cache_state(engine or get_engine(), key)
    return len(images) - len(cached)


def store_results(engine: Engine, key: str, items: list[tuple[str, DetectionResult, list[dict]]]) -> int:
    """Store one batch's (image hash, regions, OCR lines) under ``key``, in one transaction; images another process
    stored meanwhile (same key) are skipped. -> entries written."""
    for attempt in (1, 2):
        written = 0
        try:
            with session_scope(engine) as s:
                hashes = [h for h, _r, _o in items]
                done = set(s.scalars(select(RegionSet.image_hash).where(RegionSet.detector == key, RegionSet.image_hash.in_(hashes))))
                for image_hash, result, lines in items:
                    if image_hash in done:
                        continue
                    _store(s, image_hash, key, result, lines)
                    written += 1
            return written
        except IntegrityError:  # another extraction wrote one of these images between our check and our insert
            if attempt == 2:
                raise
    return 0


def load_regions(image_hash: str, key: str, *, engine: Engine | None = None) -> tuple[DetectionResult, list[dict]] | None:
    """The cached regions (with features) and OCR lines of one image for a detector key, or None."""
    engine = engine or get_engine()
    with session_scope(engine) as s:
        rs = s.scalar(select(RegionSet).where(RegionSet.image_hash == image_hash, RegionSet.detector == key))
        if rs is None:
            return None
        regions = list(rs.regions)
        feats = get_array(rs.features_path) if rs.features_path else np.zeros((len(regions), 0), np.float32)
        result = DetectionResult(
            boxes=np.array([[r.x1, r.y1, r.x2, r.y2] for r in regions], np.float32).reshape(-1, 4),
            confidences=np.array([r.confidence for r in regions], np.float32), labels=[r.label for r in regions],
            features=np.asarray(feats, np.float32).reshape(len(regions), rs.feature_dim), image_size=(0, 0), detector=key,
            backend=key.split("/", 1)[0], device=rs.device, seconds=rs.seconds,
        )
        return result, list(rs.ocr or [])


def _first_hit(boxes: list[list[float]], truth: np.ndarray, threshold: float) -> int | None:
    if not boxes:
        return None
    hits = np.flatnonzero(box_iou(np.asarray(boxes), truth)[:, 0] >= threshold)
    return int(hits[0]) if len(hits) else None


def product_box_rank_report(engine: Engine | None = None, detector: str | Detector | None = None, limit: int | None = None, *,
                            k1: int = 20, k2: int = 10, iou_hit: float = 0.5, scorer: ClueScorer | None = None,
                            ocr: bool = True, split: str | None = None, progress: ProgressFn | None = None) -> dict[str, Any]:
    """How often the ground-truth product box (Ad.truth["product_box"]) is ranked first before vs after SCA.

    A region is a hit when its IoU with the product box is >= ``iou_hit``. ``recall_at_k1``: the fraction
    of creatives whose product box is among the ``k1`` most confident boxes (``hit_in_k1`` of ``ads``);
    ``top1_after``: the fraction of creatives whose product box is ranked first after the clues
    (``top1_after_n``: how many). Before = detector
    confidence order; after = clue-score order of the top ``k1``. Regions come from the cache
    (extracted first where missing). ``split``: only the ads of that split (train / val / test); ``ocr=False``: the
    clue words are the ad text alone (a trained ION scorer reads no OCR words).
    """
    engine = engine or get_engine()
    with session_scope(engine) as s:
        query = select(Ad).order_by(Ad.id) if split is None else select(Ad).where(Ad.split == split).order_by(Ad.id)
        ads = [(a.id, a.text, a.image_hash, (a.truth or {}).get("product_box")) for a in s.scalars(query)]
    ads = [a for a in ads if a[3] is not None and len(a[3]) == 4]
    if limit is not None:
        ads = ads[: max(0, limit)]
    if not ads:
        return {"ok": True, "ads": 0, "message": "no ads with a ground-truth product box (truth.product_box); build the demo world first"}
    extraction = extract_catalog(detector, ad_ids=[a[0] for a in ads], ocr=ocr, progress=progress, engine=engine)
    key = extraction["key"]
    before = after = in_k1 = kept_before = kept_after = 0
    ranks_before, ranks_after, per_ad = [], [], []
    for ad_id, text, image_hash, truth in ads:
        loaded = load_regions(image_hash, key, engine=engine)
        if loaded is None:  # the image failed to load
            continue
        dets, ocr_lines = loaded
        sca = rerank(dets, text, k1=k1, k2=k2, scorer=scorer, extra_words=ocr_words(ocr_lines) if ocr else [])
        gt = np.asarray(truth, np.float64)
        hit_before = _first_hit([r.box for r in sca.regions[:k1]], gt, iou_hit)
        hit_after = _first_hit([r.box for r in sca.after()], gt, iou_hit)
        before += hit_before == 0
        after += hit_after == 0
        in_k1 += hit_before is not None
        kept_before += hit_before is not None and hit_before < k2
        kept_after += hit_after is not None and hit_after < k2
        if hit_before is not None:
            ranks_before.append(hit_before)
            ranks_after.append(hit_after)
        per_ad.append({"ad_id": ad_id, "first_hit_before": hit_before, "first_hit_after": hit_after})
    n = len(per_ad)
    return {
        "ok": True, "ads": n, "detector": extraction["detector"], "backend": extraction["backend"], "reason": extraction["reason"],
        "k1": k1, "k2": k2, "iou_hit": iou_hit, "split": split or "all", "scorer": getattr(scorer, "name", "zero-shot (MiniLM)"),
        "recall_at_k1": round(in_k1 / n, 4) if n else None,
        "top1_before": round(before / n, 4) if n else None, "top1_after": round(after / n, 4) if n else None,
        "top1_before_n": int(before), "top1_after_n": int(after),
        "hit_in_k1": int(in_k1), "hit_in_k2_before": int(kept_before), "hit_in_k2_after": int(kept_after),
        "mean_hit_rank_before": round(float(np.mean(ranks_before)), 3) if ranks_before else None,
        "mean_hit_rank_after": round(float(np.mean(ranks_after)), 3) if ranks_after else None,
        "extraction": {k: extraction[k] for k in ("computed", "cached", "failed", "seconds")},
        "per_ad": per_ad,
    }
