"""Class-agnostic box proposals: a small selective search plus multi-scale windows.

Selective search (Uijlings et al., 2013) in brief: over-segment the image with Felzenszwalb's graph
method, then repeatedly merge the two most similar neighbouring segments (colour histogram,
size and fill similarity); every segment ever formed gives one box. Windows on a coarse grid at a
few scales add boxes for objects the segmentation splits. All work runs on a small copy of the
image (``side`` pixels on the long side), so it costs tens of milliseconds.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

BINS = 8  # colour histogram bins per channel


def _segment_stats(labels: np.ndarray, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per segment: box [S, 4] (x1, y1, x2, y2 exclusive), size [S], L1-normalised colour histogram [S, 3*BINS]."""
    n = int(labels.max()) + 1
    h, w = labels.shape
    ys, xs = np.mgrid[0:h, 0:w]
    flat = labels.ravel()
    size = np.bincount(flat, minlength=n).astype(np.float64)
    x1 = np.full(n, w, np.int64)
    y1 = np.full(n, h, np.int64)
    x2 = np.zeros(n, np.int64)
    y2 = np.zeros(n, np.int64)
    np.minimum.at(x1, flat, xs.ravel())
    np.minimum.at(y1, flat, ys.ravel())
    np.maximum.at(x2, flat, xs.ravel() + 1)
    np.maximum.at(y2, flat, ys.ravel() + 1)
    quant = (rgb.reshape(-1, 3).astype(np.int64) * BINS) // 256
    hist = np.zeros((n, 3 * BINS), np.float64)
    for c in range(3):
        np.add.at(hist, (flat, c * BINS + quant[:, c]), 1.0)
    hist /= np.maximum(hist.sum(1, keepdims=True), 1.0)
    return np.stack([x1, y1, x2, y2], 1).astype(np.float64), size, hist


def _neighbours(labels: np.ndarray) -> set[tuple[int, int]]:
    pairs = set()
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        diff = a != b
        lo = np.minimum(a[diff], b[diff])
        hi = np.maximum(a[diff], b[diff])
        codes = np.unique(lo.astype(np.int64) * 1_000_000 + hi)
        pairs.update((int(c // 1_000_000), int(c % 1_000_000)) for c in codes)
    return pairs


def selective_search(rgb: np.ndarray, *, scale: float = 200.0, sigma: float = 0.8, min_size: int = 30) -> np.ndarray:
    """Boxes [P, 4] (x1, y1, x2, y2 in pixels of ``rgb``) of every segment of a hierarchical grouping."""
    from skimage.segmentation import felzenszwalb

    labels = felzenszwalb(rgb, scale=scale, sigma=sigma, min_size=min_size)
    boxes, size, hist = _segment_stats(labels, rgb)
    image_area = float(rgb.shape[0] * rgb.shape[1])
    boxes_l = list(boxes)
    size_l = list(size)
    hist_l = list(hist)
    alive = set(range(len(size_l)))
    adj: dict[int, set[int]] = {i: set() for i in alive}
    for a, b in _neighbours(labels):
        adj[a].add(b)
        adj[b].add(a)

    def similarity(a: int, b: int) -> float:
        colour = float(np.minimum(hist_l[a], hist_l[b]).sum())
        sz = 1.0 - (size_l[a] + size_l[b]) / image_area
        bb = np.concatenate([np.minimum(boxes_l[a][:2], boxes_l[b][:2]), np.maximum(boxes_l[a][2:], boxes_l[b][2:])])
        fill = 1.0 - ((bb[2] - bb[0]) * (bb[3] - bb[1]) - size_l[a] - size_l[b]) / image_area
        return colour + sz + fill

    sims = {(a, b): similarity(a, b) for a in adj for b in adj[a] if a < b}
    out = list(boxes_l)
    while sims:
        a, b = max(sims, key=sims.__getitem__)
        new = len(size_l)
        total = size_l[a] + size_l[b]
        hist_l.append((hist_l[a] * size_l[a] + hist_l[b] * size_l[b]) / total)
        size_l.append(total)
        boxes_l.append(np.concatenate([np.minimum(boxes_l[a][:2], boxes_l[b][:2]), np.maximum(boxes_l[a][2:], boxes_l[b][2:])]))
        out.append(boxes_l[new])
        near = (adj.pop(a) | adj.pop(b)) - {a, b}
        alive -= {a, b}
        sims = {k: v for k, v in sims.items() if a not in k and b not in k}
        adj[new] = near
        for c in near:
            adj[c] -= {a, b}
            adj[c].add(new)
            sims[(c, new)] = similarity(c, new)
        alive.add(new)
    return np.asarray(out, dtype=np.float64).reshape(-1, 4)


def window_boxes(width: int, height: int, scales: tuple[float, ...] = (1.0, 0.75, 0.5, 0.33)) -> np.ndarray:
    """Square-ish windows at a few scales on a half-overlapping grid, plus the whole image."""
    out = [[0.0, 0.0, float(width), float(height)]]
    for s in scales:
        for aspect in (1.0, 0.6, 1.6):
            bw = min(width, max(4.0, s * min(width, height) * np.sqrt(aspect)))
            bh = min(height, max(4.0, s * min(width, height) / np.sqrt(aspect)))
            nx = max(1, int(np.ceil((width - bw) / (bw / 2))) + 1)
            ny = max(1, int(np.ceil((height - bh) / (bh / 2))) + 1)
            for x in np.linspace(0, width - bw, nx):
                for y in np.linspace(0, height - bh, ny):
                    out.append([x, y, x + bw, y + bh])
    return np.asarray(out, dtype=np.float64)


def propose(image: Image.Image, *, side: int = 160, min_frac: float = 0.01) -> np.ndarray:
    """Proposal boxes [P, 4] in pixels of ``image``: selective search at two scales + windows, deduplicated."""
    width, height = image.size
    ratio = side / max(width, height)
    small = image.resize((max(8, round(width * ratio)), max(8, round(height * ratio))), Image.BILINEAR)
    rgb = np.asarray(small, dtype=np.uint8)
    sw, sh = small.size
    parts = [selective_search(rgb, scale=k) for k in (100.0, 300.0)]
    parts.append(window_boxes(sw, sh))
    boxes = np.concatenate(parts, 0)
    bw = boxes[:, 2] - boxes[:, 0]
    bh = boxes[:, 3] - boxes[:, 1]
    keep = (bw * bh >= min_frac * sw * sh) & (bw >= 3) & (bh >= 3) & (bw / np.maximum(bh, 1) < 5) & (bh / np.maximum(bw, 1) < 5)
    boxes = boxes[keep]
    boxes = np.unique(np.round(boxes).astype(np.int64), axis=0).astype(np.float64)
    scale_back = np.array([width / sw, height / sh, width / sw, height / sh])
    return boxes * scale_back
