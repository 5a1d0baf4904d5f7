"""What the relevance scorers see of a creative and of a phrase, computed once and cached.

A :class:`Creative` holds the global ImageNet vector of the image (EfficientNet-Lite0, 1280-d, cached as an
array keyed by the image hash), its top detector regions (features + boxes normalised to [0, 1], from the
region cache of core.regions, extracted where missing) and the ad text (used by the ION scorer only:
the other scorers, like the paper's, judge the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from sqlalchemy import Engine, select

from core.filestore import DamagedFile, get_array, put_array, remove_sealed, resolve
from core.progress import ProgressFn, no_progress
from core.store import Ad, get_engine, session_scope

IMAGE_VECTOR_VERSION = "effnet-lite0-gap/1"
MAX_REGIONS = 10


@dataclass
class Creative:
    """One creative as the scorers see it.

    image_vec [1280] float32 (L2-normalised); region_feats [k, D_r]; region_boxes [k, 4] (x1, y1, x2, y2 in [0, 1]);
    region_conf [k]; boxes_px [k, 4] in pixels (for drawing). ``k`` may be 0.
    """

    key: str
    image_vec: np.ndarray
    region_feats: np.ndarray
    region_boxes: np.ndarray
    region_conf: np.ndarray
    text: str = ""
    boxes_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: list[str] = field(default_factory=list)
    image_path: str | None = None
    width: int = 0
    height: int = 0
    extra: dict = field(default_factory=dict)  # per-scorer caches (e.g. open_clip vectors, the PIL image of an upload)

    @property
    def region_dim(self) -> int:
        return int(self.region_feats.shape[1]) if self.region_feats.ndim == 2 else 0


def _image_vec_key(image_hash: str) -> str:
    import hashlib

    return hashlib.sha256(f"{image_hash}|{IMAGE_VECTOR_VERSION}".encode()).hexdigest()


def _cached_image_vector(rel: str) -> np.ndarray | None:
    """The cached vector at ``rel``; None when there is none, or when the entry is damaged (truncated, altered, not a
    finite 1-D vector): the entry is then removed, to be recomputed (it is cheap) instead of refusing the request."""
    path = resolve(rel)
    if not path.exists():
        return None
    try:
        vec = np.asarray(get_array(rel), np.float32)
    except DamagedFile:
        vec = None
    if vec is None or vec.ndim != 1 or not vec.size or not np.isfinite(vec).all():
        remove_sealed(path)
        return None
    return vec


def image_vectors(images: dict[str, object], device: str = "cpu", progress: ProgressFn = no_progress) -> dict[str, np.ndarray]:
    """EfficientNet-Lite0 vectors by image hash; ``images`` maps hash -> relative path or PIL image. Cached on disk."""
    from core.embed.baselines import image_embeddings
    from core.images import load_image

    out: dict[str, np.ndarray] = {}
    todo: list[tuple[str, object]] = []
    for image_hash, src in images.items():
        cached = _cached_image_vector(f"matching/{_image_vec_key(image_hash)[:2]}/{_image_vec_key(image_hash)}.npy")
        if cached is not None:
            out[image_hash] = cached
        else:
            todo.append((image_hash, src))
    for start in range(0, len(todo), 32):
        chunk = todo[start:start + 32]
        pil = [load_image(resolve(src)).image if isinstance(src, str) else src for _, src in chunk]
        vecs = image_embeddings(pil, device=device)
        for (image_hash, _), vec in zip(chunk, vecs, strict=True):
            put_array(vec.astype(np.float32), _image_vec_key(image_hash), kind="matching")
            out[image_hash] = vec.astype(np.float32)
        progress(min(start + 32, len(todo)), len(todo), "image vectors: EfficientNet-Lite0")
    return out


def _regions_arrays(det, width: int, height: int, max_regions: int) -> tuple[np.ndarray, ...]:
    order = np.argsort(-np.asarray(det.confidences), kind="stable")[:max_regions]
    boxes = np.asarray(det.boxes, np.float32).reshape(-1, 4)[order]
    feats = np.asarray(det.features, np.float32).reshape(len(det.confidences), -1)[order]
    scale = np.array([width, height, width, height], np.float32)
    norm = np.clip(boxes / np.maximum(scale, 1.0), 0.0, 1.0)
    return feats, norm, np.asarray(det.confidences, np.float32)[order], boxes, [det.labels[i] for i in order]


def load_creatives(ad_ids: Sequence[str], engine: Engine | None = None, *, detector: str | None = None, extract: bool = True,
                   max_regions: int = MAX_REGIONS, device: str = "cpu", progress: ProgressFn = no_progress) -> dict[str, Creative]:
    """Creatives of catalog ads by id (unknown ids are skipped). Regions missing from the cache are extracted
    when ``extract`` (slow on CPU: seconds per image), else the creative has no region."""
    from core.regions.extract import extract_catalog, load_regions

    engine = engine or get_engine()
    with session_scope(engine) as s:
        rows = s.execute(select(Ad.id, Ad.text, Ad.image_hash, Ad.image_path, Ad.width, Ad.height).where(Ad.id.in_(list(ad_ids)))).all()
    if not rows:
        return {}
    vecs = image_vectors({r.image_hash: r.image_path for r in rows}, device=device, progress=progress)
    key = None
    if extract:
        key = extract_catalog(detector, ad_ids=[r.id for r in rows], ocr=False, engine=engine, progress=progress)["key"]
    else:
        from core.regions.extract import detector_key
        from core.regions.registry import get_detector

        key = detector_key(get_detector(detector, device=device).detector, 0.05, 0.5, 50)
    out: dict[str, Creative] = {}
    for r in rows:
        loaded = load_regions(r.image_hash, key, engine=engine)
        if loaded is None:
            feats, norm, conf, px, labels = np.zeros((0, 0), np.float32), np.zeros((0, 4), np.float32), np.zeros(0, np.float32), \
                np.zeros((0, 4), np.float32), []
        else:
            feats, norm, conf, px, labels = _regions_arrays(loaded[0], r.width, r.height, max_regions)
        out[r.id] = Creative(r.id, vecs[r.image_hash], feats, norm, conf, r.text, px, labels, r.image_path, r.width, r.height)
    return out


def creative_from_image(image, key: str, text: str = "", *, detector: str | None = None, max_regions: int = MAX_REGIONS,
                        device: str = "cpu") -> Creative:
    """A creative from an uploaded PIL image (detected now, not cached in the database)."""
    from core.embed.baselines import image_embeddings
    from core.regions.registry import get_detector

    det = get_detector(detector, device=device).detector.detect([image], conf=0.05, iou=0.5, max_det=50)[0]
    width, height = image.size
    feats, norm, conf, px, labels = _regions_arrays(det, width, height, max_regions)
    vec = image_embeddings([image], device=device)[0]
    return Creative(key, vec, feats, norm, conf, text, px, labels, None, width, height, extra={"pil": image})


def region_statistics(creatives: Sequence[Creative], region_dim: int, max_regions: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean [D], std [D]) of the creatives' top ``max_regions`` region features (std at least 1e-4), or None without
    any region of that size: what the scorers standardise their region inputs with."""
    feats = [c.region_feats[:max_regions] for c in creatives if len(c.region_conf) and c.region_dim == region_dim]
    if not feats:
        return None
    x = torch.from_numpy(np.concatenate(feats).astype(np.float32))
    return x.mean(0), x.std(0).clamp_min(1e-4)


class RegionInputs(torch.nn.Module):
    """A batch of creatives' top regions as tensors, standardised by statistics taken from training creatives
    (buffers ``mean`` / ``std``, saved with the scorer; :meth:`fit` sets them).

    ``forward(creatives)`` -> feats [B, V, D] (standardised; zeros on padding), geometry [B, V, 5] (box x1, y1, x2, y2 in
    [0, 1] and detector confidence), mask [B, V] (True = a region). A creative without regions gets one slot holding its
    global image vector when that has the regions' size (EfficientNet-Lite0 descriptors and the global vector are both
    1280-d), else zeros, with the whole image as its box.
    """

    def __init__(self, region_dim: int, max_regions: int = MAX_REGIONS) -> None:
        super().__init__()
        self.region_dim, self.max_regions = int(region_dim), int(max_regions)
        self.register_buffer("mean", torch.zeros(self.region_dim))
        self.register_buffer("std", torch.ones(self.region_dim))

    def fit(self, creatives: Sequence[Creative]) -> None:
        stats = region_statistics(creatives, self.region_dim, self.max_regions)
        if stats is not None:
            self.mean.copy_(stats[0])
            self.std.copy_(stats[1])

    def forward(self, creatives: Sequence[Creative]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = max(1, min(self.max_regions, max((len(c.region_conf) for c in creatives), default=1)))
        feats = np.zeros((len(creatives), v, self.region_dim), np.float32)
        geom = np.zeros((len(creatives), v, 5), np.float32)
        mask = np.zeros((len(creatives), v), bool)
        for i, c in enumerate(creatives):
            k = min(v, len(c.region_conf))
            if k and c.region_dim != self.region_dim:
                raise ValueError(f"creative {c.key}: region features are {c.region_dim}-d, this scorer was built for {self.region_dim}-d")
            if k == 0:
                if c.image_vec.shape[-1] == self.region_dim:
                    feats[i, 0] = c.image_vec
                geom[i, 0, :4] = (0, 0, 1, 1)
                mask[i, 0] = True
                continue
            feats[i, :k] = c.region_feats[:k]
            geom[i, :k, :4], geom[i, :k, 4] = c.region_boxes[:k], c.region_conf[:k]
            mask[i, :k] = True
        device = self.mean.device
        m = torch.from_numpy(mask).to(device)
        x = (torch.from_numpy(feats).to(device) - self.mean) / self.std * m[..., None]
        return x, torch.from_numpy(geom).to(device), m
