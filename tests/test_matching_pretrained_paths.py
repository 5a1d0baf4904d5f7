"""The paths users with a network get, run offline: the pretrained LXMERT-base and open_clip ViT-B-32 architectures
and code, built with random weights (no download), trained a few steps, scored, saved and loaded again.

With a model hub, ``variant="pretrained"`` loads ``unc-nlp/lxmert-base-uncased`` / open_clip's laion2b weights into
exactly these modules; everything after the weights (region adapter, tower fine-tuning, scoring, checkpoints) is what
runs here. Loading a fine-tuned pretrained checkpoint rebuilds the architecture the same way, so it needs no hub.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from core.matching.base import FitConfig
from core.matching.features import Creative
from core.matching.triples import Triple

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REGION_DIM = 8
PHRASES = ("red apples", "green shoes")


def _creatives() -> dict[str, Creative]:
    rng = np.random.default_rng(0)
    out = {}
    for cat, colour in enumerate([(220, 30, 30), (30, 160, 60)]):
        for i in range(3):
            feats = 0.1 * rng.standard_normal((2, REGION_DIM)).astype(np.float32)
            feats[0, cat] += 1.0
            boxes = np.array([[0.1, 0.1, 0.6, 0.6], [0.0, 0.0, 1.0, 1.0]], np.float32)
            key = f"k{cat}-{i}"
            out[key] = Creative(key, np.zeros(1280, np.float32), feats, boxes, np.array([0.9, 0.3], np.float32),
                                boxes_px=boxes * 64, labels=["object", "object"], width=64, height=64,
                                extra={"pil": Image.new("RGB", (64, 64), tuple(v + 5 * i for v in colour))})
    return out


def _triples(creatives) -> list[Triple]:
    return [Triple(p, k, int(k.startswith(f"k{c}-")), "train") for c, p in enumerate(PHRASES) for k in creatives]


def _trains_and_round_trips(scorer, tmp_path, name: str) -> None:
    from core.matching.service import load_matcher, save_matcher

    creatives = _creatives()
    triples = _triples(creatives)
    before = scorer.score(list(PHRASES), list(creatives.values()))
    fit = scorer.fit(triples, creatives, FitConfig(epochs=1, batch_size=6, lr=1e-4, max_steps=2, seed=0))
    assert fit["steps"] == 2 and all(np.isfinite(fit["epoch_loss"]))
    after = scorer.score(list(PHRASES), list(creatives.values()))
    assert after.shape == (2, 6) and np.isfinite(after).all() and ((after >= 0) & (after <= 1)).all()
    assert not np.allclose(before, after)  # the steps changed the weights the scores come from
    again = load_matcher(save_matcher(tmp_path / f"{name}.pt", scorer))
    assert again.variant == scorer.variant
    for c in creatives.values():
        c.extra = {"pil": c.extra["pil"]}  # drop cached tower outputs: the loaded model recomputes them
    assert np.allclose(again.score(list(PHRASES), list(creatives.values())), after, atol=1e-5)


def test_lxmert_base_architecture_with_random_weights(tmp_path):
    from core.matching.lxmert import PRETRAINED_VISUAL_DIM, LxmertScorer

    torch.manual_seed(0)
    scorer = LxmertScorer(REGION_DIM, variant="random-base")
    config = scorer.lxmert.config  # LXMERT-base: hidden 768, 9 language / 5 object / 5 cross layers, 2048-d regions
    assert (config.hidden_size, config.l_layers, config.r_layers, config.x_layers) == (768, 9, 5, 5)
    assert config.visual_feat_dim == PRETRAINED_VISUAL_DIM and scorer.adapter.in_features == REGION_DIM
    assert "random weights" in scorer.variant
    _trains_and_round_trips(scorer, tmp_path, "lxmert")
    att = scorer.cross_attention("red apples", _creatives()["k0-0"])
    assert np.allclose(np.asarray(att["weights"]).sum(1), 1.0, atol=1e-5)


def test_open_clip_vit_b_32_with_random_weights_fine_tunes_its_towers(tmp_path):
    from core.matching.clip import OPEN_CLIP_MODEL, ClipScorer

    torch.manual_seed(0)
    scorer = ClipScorer("random-base", tune_blocks=1)
    assert OPEN_CLIP_MODEL in scorer.variant and "random weights" in scorer.variant
    trainable = {n for n, p in scorer.named_parameters() if p.requires_grad}
    # the towers themselves are tuned (last block of each, final norms, projections), not new heads on frozen towers
    assert any(n.startswith("open_clip.visual.transformer.resblocks.11.") for n in trainable)
    assert any(n.startswith("open_clip.transformer.resblocks.11.") for n in trainable)
    assert not any(n.startswith("open_clip.visual.transformer.resblocks.10.") for n in trainable)
    assert isinstance(scorer.text_proj, torch.nn.Identity)
    _trains_and_round_trips(scorer, tmp_path, "clip")
    zero_shot = ClipScorer("random-base", mode="zero-shot")
    assert not any(p.requires_grad for n, p in zero_shot.named_parameters() if n != "logit_scale")
