"""Choosing the detector backend (auto | yolo | offline), and saying why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from core.loaders import load_once
from core.regions.base import Detector, DetectorError

Backend = Literal["auto", "yolo", "offline"]
BACKENDS = ("auto", "yolo", "offline")


@dataclass(frozen=True)
class DetectorChoice:
    detector: Detector
    backend: str  # the backend that runs: "yolo" | "offline"
    reason: str  # why this backend (and device)
    device_reason: str


def trained_weights(weights: str) -> str | None:
    """home/detectors/latest.pt (from ``train-detector``) when ``weights`` is the default name and is not on this machine."""
    from core.config import Settings
    from core.regions.train import latest_detector

    if weights != Settings.model_fields["yolo_weights"].default:
        return None
    latest = latest_detector()
    return str(latest) if latest is not None else None


def choose_backend(requested: str | None = None, weights: str | None = None) -> tuple[str, str]:
    """(backend, reason) for ``requested`` (default: settings.detector) without building anything."""
    from core.config import get_settings
    from core.offline import network_status
    from core.regions.yolo import find_local_weights

    settings = get_settings()
    requested = (requested or settings.detector).lower()
    if requested not in BACKENDS:
        raise DetectorError(f"unknown detector '{requested}': choose one of {', '.join(BACKENDS)}")
    weights = weights or settings.yolo_weights
    if requested == "yolo":
        return "yolo", f"requested (weights {weights})"
    if requested == "offline":
        return "offline", "requested"
    local = find_local_weights(weights)
    if local is not None:
        return "yolo", f"auto: YOLO weights found at {local}"
    trained = trained_weights(weights)
    if trained is not None:
        return "yolo", (f"auto: detector trained on this catalog found at {trained} (python -m core train-detector); "
                        f"images where its best box scores under {FALLBACK_CONFIDENCE:g} (e.g. photographs unlike the catalog) "
                        "go to the offline detector")
    offline, why = network_status()
    if not offline:
        return "yolo", f"auto: network available ({why}), Ultralytics fetches {weights}"
    return "offline", f"auto: no YOLO weights '{weights}' on this machine and no network ({why}); ImageNet EfficientNet-Lite0 proposals"


FALLBACK_CONFIDENCE = 0.5  # the trained detector's objects on its own catalog score 0.7-0.9; under this it saw nothing it knows


@load_once(maxsize=4)
def _build(backend: str, weights: str, device: str) -> Detector:
    if backend == "trained":  # the catalog's own detector, with the offline detector as its per-image fallback
        from core.regions.describe import get_describer
        from core.regions.fallback import FallbackDetector

        return FallbackDetector(_build("yolo", weights, device), _build("offline", "", device), get_describer(device),
                                min_confidence=FALLBACK_CONFIDENCE)
    if backend == "yolo":
        from core.offline import is_offline
        from core.regions.yolo import YoloDetector

        return YoloDetector(weights, device, offline=is_offline())
    from core.regions.offline import OfflineDetector

    return OfflineDetector(device)


def get_detector(requested: str | None = None, *, weights: str | None = None, device: str | None = None) -> DetectorChoice:
    """Build (once per process, cached) the detector for ``requested``; ``auto`` falls back to offline when YOLO fails."""
    from core.config import get_settings
    from core.device import resolve_device

    info = resolve_device(device)
    weights = weights or get_settings().yolo_weights
    backend, reason = choose_backend(requested, weights)
    build = backend
    if backend == "yolo" and (requested or get_settings().detector) == "auto":
        from core.regions.yolo import find_local_weights

        if find_local_weights(weights) is None and trained_weights(weights) is not None:
            weights, build = trained_weights(weights), "trained"
    try:
        detector = _build(build, weights if backend == "yolo" else "", info.name)
    except DetectorError as exc:
        if (requested or get_settings().detector) != "auto" or backend != "yolo":
            raise
        detector = _build("offline", "", info.name)
        backend, reason = "offline", f"auto: YOLO could not load ({exc}); fell back to the offline detector"
    return DetectorChoice(detector=detector, backend=backend, reason=reason, device_reason=f"{info.name} ({info.reason})")
