"""The two training-recipe additions to ION (docs/ion_training.md): region standardisation and the BatchNorm neck."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from embed_synth import synthetic_catalog

from core.embed.checkpoint import load_checkpoint, save_checkpoint
from core.embed.ion import ION, IONConfig
from core.embed.layers import RegionProjection
from core.embed.pipeline import fit_and_evaluate, split_by_category
from core.embed.text import Vocabulary
from core.embed.train import TrainConfig, train_model
from core.filestore import load_torch_payload

SMALL = dict(d_model=16, layers=1, heads=2, k1=6, k2=3, d_out=16, dropout=0.0, max_words=16)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: one thread (tests/conftest.py)


def test_region_projection_standardises_real_regions_only():
    torch.manual_seed(0)
    proj = RegionProjection(3, 4, dropout=0.0)
    regions = torch.tensor([[[1.0, 10.0, -5.0], [3.0, 30.0, -5.0], [999.0, 999.0, 999.0]],
                            [[5.0, 50.0, -5.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]])
    mask = torch.tensor([[True, True, False], [True, False, False]])  # the 999 row and the zeros are padding
    x = proj((regions - 0) / 1, mask)  # identity before the statistics are set
    assert torch.allclose(proj.feature_mean, torch.zeros(3)) and torch.allclose(proj.feature_std, torch.ones(3))
    proj.set_feature_stats(regions, mask)
    assert torch.allclose(proj.feature_mean, torch.tensor([3.0, 30.0, -5.0]))
    assert torch.allclose(proj.feature_std[:2], torch.tensor([2.0, 20.0]))
    assert proj.feature_std[2] == pytest.approx(1e-3)  # a constant dimension is not divided by zero
    y = proj(regions, mask)
    assert not torch.allclose(x, y)
    # the projection now sees (x - mean) / std: the mean region maps to relu(bias)
    z = proj(torch.tensor([[[3.0, 30.0, -5.0]]]), torch.tensor([[True]]))
    assert torch.allclose(z[0, 0], torch.relu(proj.linear.bias))
    one = RegionProjection(3, 4, dropout=0.0)
    one.set_feature_stats(regions[:1, :1], mask[:1, :1])  # one region: no spread to estimate, identity kept
    assert torch.allclose(one.feature_std, torch.ones(3))


def test_neck_config_default_paper_head_and_old_checkpoints():
    default = ION(IONConfig(vocab_size=20, region_dim=8, **SMALL))
    paper = ION(IONConfig(vocab_size=20, region_dim=8, neck="none", **SMALL))
    assert isinstance(default.neck, torch.nn.BatchNorm1d) and not default.neck.affine
    assert isinstance(paper.neck, torch.nn.Identity)
    assert sum(p.numel() for p in default.parameters()) == sum(p.numel() for p in paper.parameters())  # parameter-free
    with pytest.raises(ValueError, match="neck"):
        IONConfig(vocab_size=20, region_dim=8, neck="layernorm")
    old = default.config.to_dict()
    del old["neck"], old["text_norm"]
    assert IONConfig.from_dict(old).neck == "none"  # checkpoints from before the neck were trained without it
    assert IONConfig.from_dict(old).text_norm == "post"  # ... and with the post-norm text encoder
    assert default.text.encoder.layers[0].norm_first and default.text.encoder.norm is not None
    post = ION(IONConfig(vocab_size=20, region_dim=8, text_norm="post", **SMALL))
    assert not post.text.encoder.layers[0].norm_first and post.text.encoder.norm is None
    with pytest.raises(ValueError, match="norm"):
        ION(IONConfig(vocab_size=20, region_dim=8, text_norm="middle", **SMALL))
    default.train()
    tokens = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="at least 2 ads"):
        default(tokens, tokens > 0, torch.randn(1, 6, 8), torch.ones(1, 6, dtype=torch.bool), torch.rand(1, 6))


def test_checkpoint_keeps_the_statistics_and_loads_checkpoints_without_them(tmp_path):
    texts, feats, confs, labels = synthetic_catalog(n_categories=4, per_category=6, seed=0)
    split = split_by_category(labels, unseen_fraction=0.0, val_fraction=0.0, test_fraction=0.25, seed=0)
    cfg = TrainConfig(epochs=2, seed=0, categories_per_batch=4, ads_per_category=3, device="cpu")
    fit = fit_and_evaluate("ion", texts, feats, confs, labels, split, model_options={**SMALL, "k1": 20, "k2": 4}, train_config=cfg)
    train_regions = np.concatenate([feats[i] for i in split.train])
    assert np.allclose(fit.model.region.feature_mean.numpy(), train_regions.mean(axis=0), atol=1e-4)
    path = save_checkpoint(tmp_path / "model.pt", fit.model, fit.vocab)
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt.model.region.feature_std, fit.model.region.feature_std)
    assert torch.equal(ckpt.model.neck.running_mean, fit.model.neck.running_mean)
    # an older checkpoint: no statistics buffers, no neck -> identity statistics, paper's head
    payload = load_torch_payload(path, kind="embedding", fmt="adlens-embed/1")
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items() if "feature_" not in k and not k.startswith("neck.")}
    del payload["config"]["neck"], payload["config"]["text_norm"]
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items() if not k.startswith("text.encoder.norm.")}
    torch.save(payload, tmp_path / "old.pt")
    old = load_checkpoint(tmp_path / "old.pt")
    assert isinstance(old.model.neck, torch.nn.Identity) and torch.equal(old.model.region.feature_mean, torch.zeros(16))
    assert old.model.config.text_norm == "post"
    payload["state_dict"]["text.word.weight"] = payload["state_dict"]["text.word.weight"][:3]
    del payload["state_dict"]["ffn_f.0.weight"]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match="does not fit"):
        load_checkpoint(tmp_path / "broken.pt")


def test_batch_hard_training_collapses_without_the_neck_and_not_with_it():
    """The failure the neck fixes, at the paper's sizes: when the category signal is not learnt quickly (here: none
    at all, random labels), the batch-hardest triplet loss with the paper's head pulls every ad onto one point
    (loss = gamma); with the neck the ads stay spread out."""
    from core.embed.data import build_dataset
    from core.embed.train import embed

    rng = np.random.default_rng(0)
    words = [f"w{i}" for i in range(60)]
    texts = [" ".join(rng.choice(words, size=8)) for _ in range(96)]
    feats = [rng.normal(0.4, 0.7, size=(int(rng.integers(2, 8)), 64)).astype(np.float32) for _ in range(96)]
    confs = [np.sort(rng.random(len(f)).astype(np.float32))[::-1] for f in feats]
    vocab = Vocabulary.build([t.split() for t in texts])
    ds = build_dataset(texts, feats, confs, rng.integers(0, 12, size=96).tolist(), vocab, k1=20, max_words=16)
    spread = {}
    for neck in ("none", "batchnorm"):
        torch.manual_seed(0)
        model = ION(IONConfig(vocab_size=len(vocab), region_dim=64, max_words=16, neck=neck))  # paper sizes
        model.region.set_feature_stats(ds.regions, ds.region_mask)
        train_model(model, ds, None, TrainConfig(epochs=3, lr=1e-3, seed=0, device="cpu"))
        vectors = embed(model, ds)
        spread[neck] = float(np.linalg.norm(vectors[:, None] - vectors[None], axis=-1).mean())
    # seeds 0-4 x torch threads 1, 2 x AVX-512 / AVX2 kernels: none 0.003-0.005, batchnorm 1.388-1.396 (with lr 0: none 0.17)
    assert spread["none"] < 0.02  # collapsed: mean distance between unit vectors ~0
    assert spread["batchnorm"] > 0.3


def test_precise_batchnorm_recalibration_matches_the_training_sets_statistics():
    from core.embed.data import build_dataset
    from core.embed.train import recalibrate_batchnorm

    texts, feats, confs, labels = synthetic_catalog(n_categories=4, per_category=8, seed=1)
    vocab = Vocabulary.build([t.split() for t in texts])
    ds = build_dataset(texts, feats, confs, labels, vocab, k1=20, max_words=16)
    torch.manual_seed(0)
    model = ION(IONConfig(vocab_size=len(vocab), region_dim=ds.region_dim, **{**SMALL, "k1": 20, "dropout": 0.3}))
    cfg = TrainConfig(epochs=1, seed=0, categories_per_batch=4, ads_per_category=8, device="cpu")  # one batch = the whole set
    model.train()
    assert recalibrate_batchnorm(model, ds, cfg) and model.training
    assert model.neck.momentum == 0.1  # restored
    model.eval()
    with torch.no_grad():  # the pre-neck vectors of the whole set, dropout off
        captured = {}
        handle = model.neck.register_forward_hook(lambda _m, i, _o: captured.setdefault("f", i[0]))
        model.forward_batch(ds.batch(range(len(ds))))
        handle.remove()
    f = captured["f"]
    assert torch.allclose(model.neck.running_mean, f.mean(dim=0), atol=1e-5)
    assert torch.allclose(model.neck.running_var, f.var(dim=0), rtol=1e-3, atol=1e-6)
    assert not recalibrate_batchnorm(ION(IONConfig(vocab_size=len(vocab), region_dim=ds.region_dim, neck="none", **SMALL)), ds, cfg)
