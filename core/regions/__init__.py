"""Image regions of ad creatives: detection (YOLO or the offline ImageNet detector), OCR, and
semantic-clue re-weighting by the ad text (ION section 3.3).

Main entry points: :func:`core.regions.analyze.analyze_creative` (one creative),
:func:`core.regions.extract.extract_catalog` (the catalog, cached), :func:`core.regions.clues.rerank` (SCA),
:func:`core.regions.registry.get_detector` (backend choice).
"""

from core.regions.base import DetectionResult, Detector, DetectorError, box_iou
from core.regions.clues import ClueScorer, RankedRegion, ScaResult, ZeroShotClueScorer, rerank
from core.regions.registry import choose_backend, get_detector

__all__ = [
    "ClueScorer", "DetectionResult", "Detector", "DetectorError", "RankedRegion", "ScaResult", "ZeroShotClueScorer",
    "box_iou", "choose_backend", "get_detector", "rerank",
]
