"""Regions of one creative: detect, read the printed words, re-weight by the text (CLI and page)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from core.regions.base import DetectionResult
from core.regions.clues import ClueScorer, ScaResult, rerank
from core.regions.keywords import has_words, keywords
from core.regions.ocr import OcrLine, ocr_words, read_text
from core.regions.registry import get_detector


@dataclass
class CreativeRegions:
    detections: DetectionResult
    sca: ScaResult
    ocr: list[OcrLine]
    backend: str
    detector: str
    device: str
    reason: str
    timing: dict[str, float] = field(default_factory=dict)
    text_keywords: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        width, height = self.detections.image_size
        return {
            "ok": True,
            "backend": self.backend, "detector": self.detector, "device": self.device, "reason": self.reason,
            "image": {"width": width, "height": height},
            "keywords": self.text_keywords, "clue_words": self.sca.keywords, "scorer": self.sca.scorer,
            "k1": self.sca.k1, "k2": self.sca.k2,
            "boxes": [r.__dict__ | {"change": r.change} for r in self.sca.regions],
            "ocr": [line.to_dict() for line in self.ocr],
            "timing": self.timing,
        }


def check_text(text: str | None) -> str:
    """The ad text, or ValueError when it holds no words to use as clues (empty, only emoji/digits/punctuation)."""
    text = (text or "").strip()
    if not text:
        raise ValueError("the ad text is empty: give the words of the ad (--text) to re-weight the regions")
    if not has_words(text):
        raise ValueError("the ad text has no words (only emoji, digits or punctuation): nothing to use as semantic clues")
    return text


def analyze_creative(image: Image.Image, text: str, *, detector: str | None = None, weights: str | None = None,
                     device: str | None = None, k1: int = 20, k2: int = 10, conf: float = 0.05, iou: float = 0.5,
                     ocr: bool = True, scorer: ClueScorer | None = None) -> CreativeRegions:
    """Detect regions on ``image`` (RGB, EXIF-rotated), read its words, and re-rank the top ``k1`` by ``text``."""
    text = check_text(text)
    if not 0.0 <= conf <= 1.0 or not 0.0 < iou <= 1.0:
        raise ValueError("conf must be in [0, 1] and iou in (0, 1]")
    if k1 < 1 or k2 < 1:
        raise ValueError("k1 and k2 must be at least 1")
    timing: dict[str, float] = {}
    start = time.perf_counter()
    choice = get_detector(detector, weights=weights, device=device)
    timing["load_s"] = round(time.perf_counter() - start, 4)
    start = time.perf_counter()
    dets = choice.detector.detect([image], conf=conf, iou=iou, max_det=max(k1, 50))[0]
    timing["detect_s"] = round(time.perf_counter() - start, 4)
    lines: list[OcrLine] = []
    if ocr:
        start = time.perf_counter()
        lines = read_text(image)
        timing["ocr_s"] = round(time.perf_counter() - start, 4)
    start = time.perf_counter()
    sca = rerank(dets, text, k1=k1, k2=k2, scorer=scorer, extra_words=ocr_words(lines))
    timing["clues_s"] = round(time.perf_counter() - start, 4)
    backend, reason = choice.backend, choice.reason
    if dets.meta.get("fallback"):  # the auto detector handed this image to the offline detector
        backend, reason = dets.backend, f"{reason}. This image: {dets.meta.get('reason', 'offline fallback')}"
    return CreativeRegions(detections=dets, sca=sca, ocr=lines, backend=backend, detector=choice.detector.version,
                           device=choice.device_reason, reason=reason, timing=timing, text_keywords=keywords(text))
