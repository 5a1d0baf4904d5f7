"""The offline LXMERT forward (LxmertScorer.encode: transformers' LXMERT sub-modules called one by one, phrases and
creatives deduplicated, object states cached, the last cross layer's vision stream skipped) against
``transformers.LxmertModel.forward`` with the same weights: a tiny random config, no download."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from core.matching.features import Creative

REGION_DIM = 8
TOL = {"rtol": 1e-5, "atol": 1e-5}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny():
    """A scorer whose LxmertModel is tiny (hidden 32, 4 heads, 2/2/2 layers) with random weights large enough that
    attention is far from uniform (a masking or ordering slip changes the outputs), and its creatives."""
    from transformers import LxmertConfig, LxmertModel

    from core.matching.lxmert import LxmertScorer, RelevanceHead

    torch.manual_seed(0)
    scorer = LxmertScorer(REGION_DIM, l_layers=1, x_layers=1, r_layers=1, init_language=False)  # MiniLM tokenizer
    config = LxmertConfig(vocab_size=scorer.tokenizer.vocab_size, hidden_size=32, num_attention_heads=4, intermediate_size=64,
                          l_layers=2, x_layers=2, r_layers=2, visual_feat_dim=REGION_DIM, visual_pos_dim=4,
                          max_position_embeddings=64, type_vocab_size=2)
    scorer.lxmert = LxmertModel(config)
    scorer.head = RelevanceHead(config.hidden_size)
    with torch.no_grad():
        for p in scorer.lxmert.parameters():
            p.normal_(0.0, 0.3)
    scorer.eval()
    rng = np.random.default_rng(0)

    def creative(key: str, k: int) -> Creative:
        boxes = np.sort(rng.random((k, 4)), axis=1).astype(np.float32)
        return Creative(key, np.zeros(1280, np.float32), rng.standard_normal((k, REGION_DIM)).astype(np.float32), boxes,
                        np.linspace(0.9, 0.1, k).astype(np.float32))

    # 5, 3, 1 and no region (one full-image slot): padding on the vision side; phrases of different lengths and
    # repeats (deduplicated by encode), creatives repeated with different phrases
    creatives = [creative("five", 5), creative("three", 3), creative("one", 1), creative("none", 0)]
    phrases = ["red apples", "running shoes for the mountain trail", "red apples", "silk ties", "running shoes for the mountain trail"]
    paired = [creatives[0], creatives[1], creatives[3], creatives[2], creatives[0]]
    return scorer, phrases, paired


def _reference(scorer, phrases, creatives):
    """LxmertModel.forward on the aligned pairs, inputs built as the scorer builds them."""
    from core.matching.lxmert import MAX_TOKENS

    tok = scorer.tokenizer(list(phrases), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
    feats, boxes, vmask = scorer._visual(creatives, "cpu")
    with torch.no_grad():
        out = scorer.lxmert(input_ids=tok["input_ids"], token_type_ids=tok["token_type_ids"], attention_mask=tok["attention_mask"],
                            visual_feats=feats, visual_pos=boxes, visual_attention_mask=vmask, output_attentions=True)
    return out, vmask, tok["input_ids"]


def _summary(scorer, ref, phrases):
    """What the head reads, from the reference outputs: the pooled [CLS] output (pool="cls"), or the mean of the
    language states over each phrase's word pieces (pool="mean", the default)."""
    from core.matching.lxmert import MAX_TOKENS

    if scorer.pool == "cls":
        return ref.pooled_output
    mask = scorer.tokenizer(list(phrases), padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")["attention_mask"]
    weights = mask.float()[..., None]
    return (ref.language_output * weights).sum(1) / weights.sum(1)


def _check(got: dict, ref, vmask: torch.Tensor, input_ids: torch.Tensor) -> None:
    assert torch.equal(got["input_ids"], input_ids)
    assert_close(got["pooled"], ref.pooled_output, **TOL)
    assert_close(got["language"], ref.language_output, **TOL)
    assert_close(got["cross_attention"], ref.cross_encoder_attentions[-1], **TOL)
    if "vision" in got:
        assert torch.equal(got["vision_mask"], vmask)
        keep = vmask.bool()  # padded region slots are masked out everywhere (see LxmertScorer.encode)
        assert_close(got["vision"][keep], ref.vision_output[keep], **TOL)


@pytest.mark.parametrize("vision_output", [False, True])
def test_offline_forward_equals_lxmert_model_cached(tiny, vision_output):
    """Eval mode without gradients: object states cached on the creatives (the app's scoring path)."""
    scorer, phrases, creatives = tiny
    ref, vmask, input_ids = _reference(scorer, phrases, creatives)
    for _ in range(2):  # the second pass reads the cached object states
        with torch.no_grad():
            got = scorer.encode(phrases, creatives, output_attentions=True, vision_output=vision_output)
        _check(got, ref, vmask, input_ids)
    assert any(k.startswith("lxmert:") for k in creatives[0].extra)


def test_offline_forward_equals_lxmert_model_with_gradients(tiny):
    """With gradients (the training path: nothing cached), padded slots included."""
    scorer, phrases, creatives = tiny
    ref, vmask, input_ids = _reference(scorer, phrases, creatives)
    got = scorer.encode(phrases, creatives, output_attentions=True, vision_output=True)
    _check(got, ref, vmask, input_ids)
    assert_close(got["vision"], ref.vision_output, **TOL)  # nothing cached: padded slots computed as LxmertModel does
    got["pooled"].sum().backward()
    assert scorer.lxmert.encoder.r_layers[0].attention.self.query.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pool", ["mean", "cls"])
def test_scores_are_the_head_on_the_reference_outputs(tiny, pool):
    scorer, phrases, creatives = tiny
    scorer.pool = pool
    try:
        ref, _, _ = _reference(scorer, phrases, creatives)
        with torch.no_grad():
            expected = torch.sigmoid(scorer.head(_summary(scorer, ref, phrases)))
            assert_close(torch.sigmoid(scorer.pair_logits(phrases, creatives)), expected, **TOL)
        grid = scorer.score(["red apples", "silk ties"], creatives[:4])
        with torch.no_grad():
            grid_phrases = ["red apples"] * 4 + ["silk ties"] * 4
            out, _, _ = _reference(scorer, grid_phrases, creatives[:4] * 2)
            assert_close(torch.from_numpy(grid).reshape(-1), torch.sigmoid(scorer.head(_summary(scorer, out, grid_phrases))), **TOL)
    finally:
        scorer.pool = "mean"
