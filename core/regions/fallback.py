"""The catalogue-trained detector with the offline detector as its per-image fallback (the ``auto`` choice).

A YOLO trained by ``train-detector`` on the demo world's emoji creatives is far better than the offline
detector on those creatives, and worse on what it never saw (real photographs: it was even taught that
the sample photographs behind the demo creatives are background). So, per image:

* run the trained detector; if its most confident box reaches ``min_confidence`` (default 0.5: on the demo
  creatives its objects score 0.7-0.9), its boxes are the answer;
* otherwise (it recognises nothing it was trained on) the offline detector (selective search + ImageNet
  EfficientNet-Lite0, :mod:`core.regions.offline`) answers for that image, and the result says so
  (``meta["fallback"]``, ``backend`` "offline").

Features stay comparable whichever detector answered: every box is described by the same ImageNet
EfficientNet-Lite0 region descriptor (:mod:`core.regions.describe`), 1280-d. The version names both
detectors, the threshold and the descriptor, so the region cache never mixes it up with either alone.
"""

from __future__ import annotations

import time

import numpy as np
from PIL import Image

from core.regions.base import OBJECT_LABEL, DetectionResult, Detector
from core.regions.describe import RegionDescriber

VERSION = "2"  # 2: class-agnostic boxes named by the descriptor's ImageNet class


class FallbackDetector:
    """``primary`` (trained) per image, ``secondary`` (offline) where the primary's best confidence is under ``min_confidence``."""

    backend = "yolo"

    def __init__(self, primary: Detector, secondary: Detector, describer: RegionDescriber, *, min_confidence: float = 0.5) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError("min_confidence must be in [0, 1]")
        self.primary = primary
        self.secondary = secondary
        self.describer = describer
        self.min_confidence = float(min_confidence)
        self.device = primary.device
        self.feature_dim = describer.dim
        self.weights = getattr(primary, "weights", None)
        self.version = (f"auto/{primary.version}+fallback:{secondary.version}@{self.min_confidence:g}"
                        f"+desc:{describer.version}/{VERSION}")

    def detect(self, images: list[Image.Image], *, conf: float = 0.05, iou: float = 0.5, max_det: int = 50) -> list[DetectionResult]:
        """The primary's detections, or the secondary's where the primary is not confident; features = region descriptors."""
        if not images:
            return []
        start = time.perf_counter()
        results = self.primary.detect(images, conf=conf, iou=iou, max_det=max_det)
        weak = [i for i, r in enumerate(results) if not len(r) or float(np.max(r.confidences)) < self.min_confidence]
        if weak:
            backup = self.secondary.detect([images[i] for i in weak], conf=conf, iou=iou, max_det=max_det)
            for i, res in zip(weak, backup, strict=True):
                best = float(np.max(results[i].confidences)) if len(results[i]) else 0.0
                res.meta.update(fallback=True, primary_best_confidence=round(best, 4),
                                reason=f"the trained detector's best box scored {best:.2f} < {self.min_confidence:g}: offline detector")
                results[i] = res
        descs, names = self.describer.describe_and_name(images, [r.boxes for r in results])
        out = []
        elapsed = time.perf_counter() - start
        for res, desc, named in zip(results, descs, names, strict=True):
            new = res.subset(np.arange(len(res)))
            new.features = desc.astype(np.float32).reshape(len(res), self.feature_dim)
            # a class-agnostic detector says only "object": the descriptor's ImageNet class names the box instead
            new.labels = [name if label == OBJECT_LABEL else label for label, name in zip(new.labels, named, strict=True)]
            new.detector = self.version
            new.meta.setdefault("fallback", False)
            new.meta["answered_by"] = res.detector
            new.seconds = elapsed / len(images)
            out.append(new)
        return out
