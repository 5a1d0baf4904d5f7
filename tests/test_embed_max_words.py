"""One text length for training and inference: ``max_words`` in the model options is the length everywhere."""

from __future__ import annotations

import pytest
import torch
from embed_synth import synthetic_catalog

from core.embed.data import build_dataset
from core.embed.pipeline import embed_ads, fit_and_evaluate, split_by_category
from core.embed.text import tokenize
from core.embed.train import TrainConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LONG_TAIL = " ".join(f"extra{i}" for i in range(40))  # 40 more words: every text is longer than 32 words


def _catalog():
    texts, feats, confs, labels = synthetic_catalog(n_categories=4, per_category=6, seed=0)
    return [f"{t} {LONG_TAIL}" for t in texts], feats, confs, labels


@pytest.mark.parametrize("max_words", [8, 48])
def test_model_option_max_words_is_used_in_training_and_inference(max_words, monkeypatch):
    texts, feats, confs, labels = _catalog()
    assert min(len(tokenize(t)) for t in texts) > 48
    split = split_by_category(labels, unseen_fraction=0.25, val_fraction=0.2, test_fraction=0.2, seed=0)
    seen_lengths: list[int] = []
    real_build = build_dataset

    def spying_build(*args, **kwargs):
        ds = real_build(*args, **kwargs)
        seen_lengths.append(int(ds.tokens.shape[1]))
        return ds

    monkeypatch.setattr("core.embed.pipeline.build_dataset", spying_build)
    cfg = TrainConfig(epochs=1, seed=0, sampler="random", batch_size=8)
    options = {"d_model": 16, "layers": 1, "heads": 2, "k1": 6, "k2": 3, "dropout": 0.0, "max_words": max_words}
    fit = fit_and_evaluate("ion", texts, feats, confs, labels, split, model_options=options, train_config=cfg)
    assert fit.model.config.max_words == max_words
    # train, validation and test sets were all cut to the model's length (below 32 this used to crash)
    assert seen_lengths and set(seen_lengths) == {max_words}
    seen_lengths.clear()
    vectors = embed_ads(fit.model, fit.vocab, texts[:2], feats[:2], confs[:2])
    assert seen_lengths == [max_words] and vectors.shape[0] == 2
    # inference sees exactly what training saw: words past max_words change nothing
    cut = [" ".join(t.split()[:max_words]) for t in texts[:2]]
    torch.testing.assert_close(torch.from_numpy(embed_ads(fit.model, fit.vocab, cut, feats[:2], confs[:2])),
                               torch.from_numpy(vectors))
