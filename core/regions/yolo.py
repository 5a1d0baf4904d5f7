"""The Ultralytics YOLO backend: boxes from any YOLO detection model, features from its own neck.

Weights: a local ``.pt`` (or ``.onnx``) file, or a standard name such as ``yolov8n.pt`` that
Ultralytics resolves itself (its weights folder, else a download) when a network exists. A ``.pt``
file is a pickle, so it is loaded only from places the operator configured
(:func:`check_weights_policy`); ONNX files are accepted from anywhere. Offline,
a name that is not on disk fails at once with a message saying what to do; a file that is not a
YOLO detection model fails with the loader's reason.

Region features (``.pt`` models): forward pre-hook on the Detect head captures its input, the neck
levels P3/P4/P5 ([B, C_l, H/s_l, W/s_l], s_l = 8/16/32); every kept box is pooled from each level with
``torchvision.ops.roi_align`` (2x2 bins, averaged) and the levels are concatenated -> [N, sum C_l]
(448-d for yolov8n). ONNX graphs expose no intermediate maps: boxes only, features [N, 0].
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from core.regions.base import DetectionResult, DetectorError

VERSION = "1"
PAD_VALUE = 114


def ultralytics_yolo():
    """Ultralytics' ``YOLO`` class, imported without its global Pillow patch.

    Importing Ultralytics replaces ``PIL.Image.open`` with a wrapper that, on any file Pillow cannot
    identify, tries to install and import ``pi-heif``; offline that raises ModuleNotFoundError instead
    of Pillow's UnidentifiedImageError, which breaks :func:`core.images.decode_image`'s clear message
    for every later non-image. AdLens hands Ultralytics decoded arrays only, so the patch is undone.
    The first import on a machine prints a settings notice to stdout; it goes to stderr, so that ``--json`` output
    stays one JSON object.
    """
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        from ultralytics import YOLO

    try:
        from ultralytics.utils import patches

        if Image.open is getattr(patches, "image_open", None):
            Image.open = patches._image_open
    except ImportError:  # another Ultralytics layout: nothing was patched there
        pass
    return YOLO


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:12]


def find_local_weights(weights: str) -> Path | None:
    """The file ``weights`` names, if it is on this machine (as a path, under home/weights or Ultralytics' weights dir)."""
    from core.config import get_settings

    path = Path(weights).expanduser()
    candidates = [path, get_settings().home / "weights" / path.name]
    try:
        ultralytics_yolo()
        from ultralytics.utils import SETTINGS

        candidates.append(Path(SETTINGS["weights_dir"]) / path.name)
    except Exception:  # noqa: BLE001 - ultralytics settings unreadable: just skip that place
        pass
    return next((c for c in candidates if c.is_file()), None)


PICKLE_SUFFIXES = (".pt", ".pth")
_trusted_files: set[Path] = set()


def trust_weights(weights: str | Path) -> None:
    """Allow one ``.pt`` file the operator named on the command line (``--weights``) for this process."""
    _trusted_files.add(Path(weights).expanduser().resolve())


def trusted_weight_dirs() -> list[Path]:
    """Folders whose ``.pt`` files may be loaded: home/weights, home/detectors (AdLens's own trained detectors),
    the shipped assets/models, Ultralytics' weights folder, and the folders in ``ADLENS_WEIGHTS_DIRS``."""
    import os

    from core.config import REPO_ROOT, get_settings

    settings = get_settings()
    dirs = [settings.home / "weights", settings.home / "detectors", REPO_ROOT / "assets" / "models"]
    dirs += [Path(d).expanduser() for d in settings.weights_dirs.split(os.pathsep) if d.strip()]
    try:
        ultralytics_yolo()
        from ultralytics.utils import SETTINGS

        dirs.append(Path(SETTINGS["weights_dir"]))
    except Exception:  # noqa: BLE001 - ultralytics settings unreadable: that place is not trusted
        pass
    return [d.resolve() for d in dirs]


def check_weights_policy(path: Path) -> None:
    """Refuse a pickled ``.pt`` checkpoint that does not come from a place the operator configured.

    A ``.pt`` file is a Python pickle: loading it can run any code. AdLens loads one only when it is
    the configured ``ADLENS_YOLO_WEIGHTS`` file, a file named with ``--weights`` on the command line,
    or a file inside :func:`trusted_weight_dirs` (links resolved first) — never a path typed into a
    page, uploaded, or read from the database outside those. ONNX files hold no code and load from anywhere.
    """
    from core.config import get_settings

    if path.suffix.lower() not in PICKLE_SUFFIXES:
        return
    real = path.expanduser().resolve()
    configured = Path(get_settings().yolo_weights).expanduser()
    if real in _trusted_files or (configured.suffix.lower() in PICKLE_SUFFIXES and configured.exists()
                                  and configured.resolve() == real):
        return
    dirs = trusted_weight_dirs()
    if any(real.is_relative_to(d) for d in dirs):
        return
    raise DetectorError(
        f"{path}: refused to load. A .pt file is a Python pickle that can run code when loaded, so AdLens loads "
        f"YOLO .pt weights only from the configured ADLENS_YOLO_WEIGHTS file, a --weights file on the command line, "
        f"or these folders: {', '.join(str(d) for d in dirs)} (add more with ADLENS_WEIGHTS_DIRS). "
        "Move the file there, or export the model to ONNX (accepted from anywhere)."
    )


def _looks_like_path(weights: str) -> bool:
    return "/" in weights or "\\" in weights or weights.startswith((".", "~"))


def _trained_imgsz(yolo) -> int | None:
    """The square training size recorded in a ``.pt`` checkpoint (``train_args.imgsz``), when there is one."""
    args = (getattr(yolo, "ckpt", None) or {}).get("train_args") or {}
    size = args.get("imgsz") if isinstance(args, dict) else None
    return int(size) if isinstance(size, int) and 32 <= size <= 2048 else None


class YoloDetector:
    """Ultralytics YOLO detection model (see the module docstring)."""

    backend = "yolo"

    def __init__(self, weights: str, device: str = "cpu", *, imgsz: int | None = None, offline: bool = True) -> None:
        import ultralytics

        ultralytics_yolo()
        local = find_local_weights(weights)
        if local is None:
            if _looks_like_path(weights) or Path(weights).suffix not in (".pt", ".onnx"):
                raise DetectorError(f"YOLO weights file not found: {weights}")
            if offline:
                raise DetectorError(
                    f"YOLO weights '{weights}' are not on this machine and there is no network to fetch them: "
                    "point ADLENS_YOLO_WEIGHTS (or --weights) at a local .pt/.onnx file, or use the offline detector"
                )
        elif local.suffix.lower() not in (".pt", ".onnx", ".pth"):
            raise DetectorError(f"{local}: not a YOLO model file (expected .pt or .onnx)")
        else:
            check_weights_policy(local)
        source = str(local) if local else weights
        try:
            yolo = ultralytics_yolo()(source, task="detect")
        except Exception as exc:  # noqa: BLE001 - any loader failure means "not a usable model"
            raise DetectorError(f"{source}: not a usable YOLO model ({exc.__class__.__name__}: {str(exc)[:200]})") from None
        if getattr(yolo, "task", "detect") != "detect":
            raise DetectorError(f"{source}: a YOLO '{yolo.task}' model, not a detection model")
        self.weights = source
        self.onnx = source.lower().endswith(".onnx")
        path = Path(getattr(yolo, "ckpt_path", None) or source)
        digest = _file_hash(path) if path.is_file() else "remote"
        self.version = f"yolo/{path.name}@{digest}/ultralytics-{ultralytics.__version__}/{VERSION}"
        self.device = device
        self.imgsz = int(imgsz or _trained_imgsz(yolo) or 640)  # default: the size the model was trained at
        self.half = device == "cuda"
        self.names = {int(k): str(v) for k, v in (yolo.names or {}).items()}
        self._yolo = yolo
        self._features: list = []
        self._lock = threading.Lock()  # the hook's capture is per call: one batch at a time (Streamlit sessions share it)
        if self.onnx:
            self.model = None
            self.feature_dim = 0
            return
        import torch

        model = yolo.model.to(torch.device(device)).eval()
        self.model = model.half() if self.half else model.float()
        head = self.model.model[-1]
        self.end2end = bool(getattr(head, "end2end", False))
        head.register_forward_pre_hook(self._capture)
        self.strides = [float(s) for s in self.model.stride]
        probe = torch.zeros(1, 3, 64, 64, device=torch.device(device), dtype=torch.float16 if self.half else torch.float32)
        with torch.inference_mode():
            self.model(probe)
        self.feature_dim = int(sum(f.shape[1] for f in self._features))

    def _capture(self, _module, inputs) -> None:
        self._features = list(inputs[0])

    def _letterbox(self, images: list[Image.Image]):
        """Batch [B, 3, S, S] in [0, 1]: each image scaled to fit S, padded right/bottom; and the scales."""
        import torch

        size = self.imgsz
        batch = np.full((len(images), size, size, 3), PAD_VALUE, np.uint8)
        ratios = []
        for i, img in enumerate(images):
            r = size / max(img.size)
            w, h = max(1, round(img.width * r)), max(1, round(img.height * r))
            batch[i, :h, :w] = np.asarray(img.resize((w, h), Image.BILINEAR))
            ratios.append((w / img.width, h / img.height))
        tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).to(torch.device(self.device))
        tensor = tensor.half() if self.half else tensor.float()
        return tensor / 255.0, ratios

    def detect(self, images: list[Image.Image], *, conf: float = 0.05, iou: float = 0.5, max_det: int = 50) -> list[DetectionResult]:
        """Boxes, confidences, class names and neck features [N, sum C_l] for each image."""
        if not images:
            return []
        if self.onnx:
            return self._detect_onnx(images, conf=conf, iou=iou, max_det=max_det)
        import torch
        from torchvision.ops import roi_align
        from ultralytics.utils.nms import non_max_suppression

        start = time.perf_counter()
        batch, ratios = self._letterbox(images)
        with self._lock, torch.inference_mode():
            preds = self.model(batch)
            dets = non_max_suppression(preds, conf, iou, max_det=max_det, end2end=self.end2end)
            rois = [d[:, :4].to(self._features[0].dtype) for d in dets]
            pooled = [
                roi_align(level, rois, output_size=(2, 2), spatial_scale=1.0 / stride, sampling_ratio=2, aligned=True).mean(dim=(2, 3))
                for level, stride in zip(self._features, self.strides, strict=True)
            ]
            feats = torch.cat(pooled, 1).float().cpu().numpy() if pooled else np.zeros((0, 0), np.float32)
        elapsed = time.perf_counter() - start
        out, offset = [], 0
        for img, det, (rx, ry) in zip(images, dets, ratios, strict=True):
            det = det.float().cpu().numpy()
            n = len(det)
            boxes = det[:, :4] / np.array([rx, ry, rx, ry], np.float32)
            boxes = np.clip(boxes, 0, [img.width, img.height, img.width, img.height]).astype(np.float32)
            out.append(DetectionResult(
                boxes=boxes.reshape(-1, 4), confidences=det[:, 4].astype(np.float32),
                labels=[self.names.get(int(c), str(int(c))) for c in det[:, 5]],
                features=feats[offset: offset + n].astype(np.float32).reshape(n, self.feature_dim),
                image_size=img.size, detector=self.version, backend=self.backend, device=self.device,
                seconds=elapsed / len(images), meta={"weights": self.weights},
            ))
            offset += n
        return out

    def _detect_onnx(self, images: list[Image.Image], *, conf: float, iou: float, max_det: int) -> list[DetectionResult]:
        start = time.perf_counter()
        results = self._yolo.predict([np.asarray(img)[:, :, ::-1] for img in images], conf=conf, iou=iou, max_det=max_det,
                                     imgsz=self.imgsz, device=self.device, verbose=False)
        elapsed = time.perf_counter() - start
        out = []
        for img, res in zip(images, results, strict=True):
            boxes = res.boxes.xyxy.float().cpu().numpy().astype(np.float32).reshape(-1, 4)
            out.append(DetectionResult(
                boxes=boxes, confidences=res.boxes.conf.float().cpu().numpy().astype(np.float32),
                labels=[self.names.get(int(c), str(int(c))) for c in res.boxes.cls.cpu().numpy()],
                features=np.zeros((len(boxes), 0), np.float32), image_size=img.size, detector=self.version,
                backend=self.backend, device=self.device, seconds=elapsed / len(images),
                meta={"weights": self.weights, "features": "ONNX graph exposes no feature maps: no region features"},
            ))
        return out
