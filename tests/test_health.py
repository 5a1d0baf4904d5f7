"""core.health: a stalled loss and collapsed embeddings are named; healthy runs get no warning; runs store them."""

from __future__ import annotations

import numpy as np
import pytest

from core.health import collapsed, loss_stalled, spread, training_warnings


def test_a_loss_that_does_not_move_is_stalled():
    assert loss_stalled([0.6931, 0.6930, 0.6932, 0.6929])  # LXMERT at ln 2
    assert not loss_stalled([0.71, 0.60, 0.41])
    assert not loss_stalled([0.7, 0.7])  # too few epochs to say
    assert loss_stalled([0.5, 0.6, 0.7])  # rising counts too


def test_spread_and_collapse():
    rng = np.random.default_rng(0)
    healthy = rng.normal(size=(200, 16))
    healthy /= np.linalg.norm(healthy, axis=1, keepdims=True)
    assert spread(healthy) == pytest.approx(1.0, abs=0.05) and not collapsed(healthy)
    point = np.tile(healthy[:1], (200, 1)) + 1e-4 * rng.normal(size=(200, 16))
    assert spread(point) < 1e-6 and collapsed(point)
    assert spread(np.zeros((5, 3))) == 0.0 and np.isnan(spread(np.zeros((1, 3))))


def test_warnings_in_words():
    rng = np.random.default_rng(1)
    ok = training_warnings([0.9, 0.5, 0.3], rng.normal(size=(50, 8)), val_auc=0.8)
    assert ok == []
    bad = training_warnings([0.6931, 0.6931, 0.6930], np.ones((50, 8)), val_auc=0.5)
    assert len(bad) == 3
    assert "stayed at its starting value" in bad[0] and "collapsed" in bad[1] and "chance" in bad[2]
    assert "did not fall" in training_warnings(loss_before=0.69, loss_after=0.69)[0]


def test_training_calls_back_after_every_epoch():
    import torch
    from embed_synth import synthetic_dataset

    from core.embed.ion import ION, IONConfig
    from core.embed.train import TrainConfig, train_model

    ds, vocab = synthetic_dataset()
    torch.manual_seed(0)
    model = ION(IONConfig(vocab_size=len(vocab), region_dim=16, d_model=32, layers=1, heads=2, k1=8, k2=4, d_out=32, dropout=0.0,
                          max_words=12))
    seen = []
    result = train_model(model, ds, None, TrainConfig(epochs=3, seed=0, device="cpu", categories_per_batch=6, ads_per_category=5),
                         on_epoch=lambda history: seen.append([h.epoch for h in history]))
    assert seen == [[1], [1, 2], [1, 2, 3]] and len(result.history) == 3


def test_a_scorer_that_cannot_learn_is_flagged(engine, monkeypatch):
    from core.matching.service import train_matcher
    from core.runs import list_runs
    from tests.matching_world import build_catalog, use_colour_detector

    build_catalog(engine)
    use_colour_detector(monkeypatch)
    frozen = train_matcher("early", engine=engine, epochs=3, lr=0.0)  # a zero learning rate: the loss cannot move
    assert any("did not learn" in w for w in frozen["metrics"]["warnings"]), frozen["metrics"]
    stored = list_runs("matcher-early", "done")[0]["metrics"]
    assert stored["warnings"] == frozen["metrics"]["warnings"] and len(stored["fit"]["epoch_loss"]) == 3
    learns = train_matcher("early", engine=engine, epochs=4)
    assert not any("did not learn" in w for w in learns["metrics"]["warnings"]), learns["metrics"]
