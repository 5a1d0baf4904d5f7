"""ION: shapes, masking, each module (KSG / SCA / DFA) and its ablation."""

from __future__ import annotations

import pytest
import torch

from core.embed.ion import ION, IONConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread (tests/conftest.py)


D_R = 12


def make(ablate=(), **kw) -> ION:
    torch.manual_seed(0)
    cfg = dict(vocab_size=40, region_dim=D_R, d_model=16, layers=2, heads=2, k1=8, k2=4, d_out=24, dropout=0.0, max_words=16)
    cfg.update(kw)
    return ION(IONConfig(**cfg, ablate=frozenset(ablate))).eval()


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, 40, (3, 6), generator=g)
    tokens[0, 4:] = 0  # 4 words
    tokens[2, 1:] = 0  # 1 word
    regions = torch.randn(3, 8, D_R, generator=g)
    region_mask = torch.ones(3, 8, dtype=torch.bool)
    region_mask[1, 3:] = False  # 3 regions
    region_mask[2, 6:] = False
    conf = torch.rand(3, 8, generator=g).sort(dim=1, descending=True).values * region_mask
    return tokens, tokens != 0, regions, region_mask, conf


ALL = [(), ("ksg",), ("sca",), ("dfa",), ("ksg", "sca", "dfa")]


@pytest.mark.parametrize("ablate", ALL)
def test_output_shapes_and_unit_norm(ablate):
    out = make(ablate)(*batch())
    assert out.embedding.shape == (3, 24)
    assert torch.allclose(out.embedding.norm(dim=1), torch.ones(3), atol=1e-5)
    assert out.kept.shape == (3, 4) and out.kept_mask.shape == (3, 4)
    assert out.kept_mask[1].tolist() == [True, True, True, False]  # only 3 real regions
    assert (out.keyword_logits is None) == ("ksg" in ablate)
    assert (out.key_gates is None) == ("ksg" in ablate)
    assert (out.alpha is None) == ("sca" in ablate)
    assert (out.beta is None) == ("dfa" in ablate)
    if "ksg" not in ablate:
        assert out.keyword_logits.shape == (3, 6, 2) and out.key_gates.shape == (3, 6, 16)
        assert out.key_gates[0, 4:].abs().sum() == 0  # no gate on padding
    if "sca" not in ablate:
        assert out.alpha.shape == (3, 8) and out.alpha[1, 3:].abs().sum() == 0
    if "dfa" not in ablate:
        assert out.beta.shape == (3, 6, 4) and out.beta[1, :, 3].abs().sum() == 0


@pytest.mark.parametrize("ablate", ALL)
def test_padding_changes_nothing(ablate):
    """Extra padding words / regions, and garbage in padded region slots, leave the embedding unchanged."""
    model = make(ablate)
    tokens, tmask, regions, rmask, conf = batch()
    ref = model(tokens, tmask, regions, rmask, conf).embedding
    tokens2 = torch.cat([tokens, torch.zeros(3, 5, dtype=torch.long)], dim=1)
    garbage = torch.where(rmask[..., None], regions, torch.randn_like(regions) * 100)
    got = model(tokens2, tokens2 != 0, garbage, rmask, conf).embedding
    assert torch.allclose(ref, got, atol=1e-5)
    with torch.no_grad():  # inference (PyTorch's fused encoder path) agrees too
        fast = model(tokens2, tokens2 != 0, garbage, rmask, conf).embedding
    assert torch.allclose(ref, fast, atol=1e-5)
    # fewer region columns than k1 (only the real ones of ad 0 and a padded copy)
    one = model(tokens[:1], tmask[:1], regions[:1, :8], rmask[:1, :8], conf[:1, :8]).embedding
    assert torch.allclose(one, ref[:1], atol=1e-5)


def test_region_count_below_k2_and_empty_inputs_are_finite():
    model = make()
    tokens, tmask, regions, rmask, conf = batch()
    out = model(tokens, tmask, regions[:, :2], rmask[:, :2], conf[:, :2])
    assert out.kept.shape == (3, 2)
    empty_text = torch.zeros_like(tokens)
    no_regions = torch.zeros_like(rmask)
    out = model(empty_text, empty_text != 0, regions, no_regions, conf * 0)
    assert torch.isfinite(out.embedding).all()


@pytest.mark.parametrize("sca", ["literal", "additive"])
def test_sca_keeps_k2_and_resorts_by_alpha(sca):
    """Make alpha grow with region feature 0 and give the LEAST confident regions the largest feature:
    SCA must keep them (reverse detector order); w/o SCA keeps the k2 most confident ones."""
    tokens, tmask, _, _, _ = batch()
    regions = torch.zeros(3, 8, D_R)
    regions[:, :, 0] = torch.arange(8, dtype=torch.float)  # last = least confident = largest feature
    rmask = torch.ones(3, 8, dtype=torch.bool)
    rmask[1, 6:] = False
    conf = torch.linspace(0.9, 0.1, 8).expand(3, 8).clone()
    with_sca, without = make(region_dim=D_R, sca=sca), make(["sca"], region_dim=D_R)
    for model in (with_sca, without):
        with torch.no_grad():
            model.region.linear.weight.zero_()
            model.region.linear.weight[0, 0] = 1.0
            model.region.linear.bias.zero_()
    with torch.no_grad():
        with_sca.clue_region.weight.zero_()
        with_sca.clue_region.weight[0, 0] = 0.3  # alpha stays far from saturation
        if sca == "additive":  # alpha = sigmoid(w^T tanh(W_v v + W_o h_bar)): w reads unit 0 only, text term off
            with_sca.clue_region.bias.zero_()
            with_sca.clue_text.weight.zero_()
            with_sca.clue_out.weight.zero_()
            with_sca.clue_out.weight[0, 0] = 1.0
    out = with_sca(tokens, tmask, regions, rmask, conf)
    assert out.kept[0].tolist() == [7, 6, 5, 4]
    assert out.kept[1].tolist() == [5, 4, 3, 2]  # padded regions 6, 7 never kept
    kept_alpha = torch.gather(out.alpha, 1, out.kept)
    assert (kept_alpha[:, :-1] >= kept_alpha[:, 1:]).all()
    assert torch.equal(out.kept, torch.sort(out.alpha.masked_fill(~rmask, -1), dim=1, descending=True).indices[:, :4])
    assert without(tokens, tmask, regions, rmask, conf).kept[0].tolist() == [0, 1, 2, 3]


EXPECTED_ABSENT = {
    "ksg": ("keyword_head", "gate_word", "gate_context"),
    "sca": ("clue_region", "clue_text", "clue_out"),
    "dfa": ("fusion_bilinear", "ffn_h", "ffn_v"),
}


@pytest.mark.parametrize("ablate", ALL)
def test_ablation_removes_module_and_every_remaining_parameter_is_used(ablate):
    model = make(ablate).train()
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    for module, params in EXPECTED_ABSENT.items():
        assert all((p in names) == (module not in ablate) for p in params), (module, names)
    tokens, tmask, regions, rmask, conf = batch()
    labels = torch.tensor([0, 0, 1])
    kw = torch.where(tmask, (tokens % 2), torch.full_like(tokens, -100))
    loss, _ = model.loss({"tokens": tokens, "token_mask": tmask, "kw_labels": kw, "regions": regions,
                          "region_mask": rmask, "region_conf": conf, "labels": labels})
    loss.backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None]
    assert unused == []


def test_straight_through_keyword_lambda_gets_gradient_from_the_triplet_loss():
    model = make(keyword_weight=0.0, margin=4.0).train()  # margin 4 (the largest squared distance): the hinge is active
    tokens, tmask, regions, rmask, conf = batch()
    loss, parts = model.loss({"tokens": tokens, "token_mask": tmask, "kw_labels": torch.full_like(tokens, -100),
                              "regions": regions, "region_mask": rmask, "region_conf": conf, "labels": torch.tensor([0, 0, 1])})
    assert "keyword" not in parts
    loss.backward()
    assert model.keyword_head.weight.grad.abs().sum() > 0


def test_config_validation():
    with pytest.raises(ValueError, match="unknown ION ablation"):
        IONConfig(vocab_size=10, region_dim=4, ablate=frozenset({"kgs"}))
    with pytest.raises(ValueError, match="k2"):
        IONConfig(vocab_size=10, region_dim=4, k1=5, k2=10)
    with pytest.raises(ValueError, match="max_words"):
        make()(torch.ones(1, 20, dtype=torch.long), torch.ones(1, 20, dtype=torch.bool), *[t[:1] for t in batch()[2:]])
    cfg = IONConfig(vocab_size=10, region_dim=4, ablate=frozenset({"dfa", "ksg"}))
    assert IONConfig.from_dict(cfg.to_dict()) == cfg


def test_attention_view_maps_back_to_the_callers_regions():
    import numpy as np

    from core.embed.attention import ion_attention
    from core.embed.pipeline import embed_ads
    from core.embed.text import Vocabulary

    vocab = Vocabulary.build([["fresh", "green", "tea"]])
    model = make(vocab_size=len(vocab))
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(5, D_R)).astype(np.float32)
    confs = np.array([0.3, 0.9, 0.1, 0.6, 0.5], dtype=np.float32)
    att = ion_attention(model, vocab, "Fresh green tea for you", feats, confs)
    assert att.words == ["fresh", "green", "tea", "for", "you"] and att.in_vocab == [True, True, True, False, False]
    assert att.keyword_label[:3] == [1, 1, 1] and len(att.keyword_prob) == 5 and len(att.gate) == 5
    assert att.region_order == [1, 3, 4, 0, 2]
    assert len(att.kept) == 4 and att.beta.shape == (5, 4)
    assert att.kept == sorted(range(5), key=lambda i: -att.alpha[i])[:4]  # caller indices, by alpha
    ref = embed_ads(model, vocab, ["Fresh green tea for you"], [feats], [confs])
    assert np.allclose(att.embedding, ref[0], atol=1e-5)
