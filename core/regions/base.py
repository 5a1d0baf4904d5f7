"""What every region detector returns, and the protocol a detector backend implements.

Coordinates are pixels of the decoded image (EXIF-rotated RGB, see :mod:`core.images`):
``x1, y1, x2, y2`` with ``x1 < x2`` and ``y1 < y2``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image

OBJECT_LABEL = "object"  # the label of a class-agnostic detector's boxes (and of scene clutter in training data)


class DetectorError(ValueError):
    """A detector that cannot be built or run (missing weights, not a model, ...), with a clear message."""


@dataclass
class DetectionResult:
    """The regions one detector found on one image.

    boxes:       float32 [N, 4]  x1, y1, x2, y2 in pixels of the (EXIF-rotated) image
    confidences: float32 [N]     detector confidence in [0, 1], sorted descending
    labels:      N class names
    features:    float32 [N, D]  one feature vector per box, from the detector's own network
    """

    boxes: np.ndarray
    confidences: np.ndarray
    labels: list[str]
    features: np.ndarray
    image_size: tuple[int, int]  # (width, height)
    detector: str  # backend + version, the cache key
    backend: str  # "yolo" or "offline"
    device: str
    seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1]) if self.features.ndim == 2 else 0

    def sorted_by_confidence(self) -> DetectionResult:
        order = np.argsort(-self.confidences, kind="stable")
        return self.subset(order)

    def subset(self, index: np.ndarray | list[int]) -> DetectionResult:
        idx = np.asarray(index, dtype=np.int64)
        return DetectionResult(
            boxes=self.boxes[idx], confidences=self.confidences[idx], labels=[self.labels[i] for i in idx],
            features=self.features[idx], image_size=self.image_size, detector=self.detector, backend=self.backend,
            device=self.device, seconds=self.seconds, meta=dict(self.meta),
        )


@runtime_checkable
class Detector(Protocol):
    """A region detector backend."""

    backend: str  # "yolo" | "offline"
    version: str  # name + version + weights hash: results are cached under it
    device: str  # "cpu" | "cuda" | "mps"
    feature_dim: int

    def detect(self, images: list[Image.Image], *, conf: float = 0.05, iou: float = 0.5,
               max_det: int = 50) -> list[DetectionResult]:
        """Detect regions on a batch of RGB images; one result per image, boxes sorted by confidence."""
        ...


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2) -> [N, M]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
