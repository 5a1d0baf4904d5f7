"""The paper's experiment in a few calls: split by category, train ION / ToTYEmb, evaluate Hit P@k seen/unseen.

Protocol (ION section 4.1, Table 1): some categories are held out and appear only in the test set
("unseen"); the ads of the other categories are split into train / validation / test. Every test ad
then queries all other test ads (core.embed.evaluate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from core.embed.data import EmbedDataset, build_dataset
from core.embed.evaluate import seen_unseen_precision
from core.embed.ion import ION, IONConfig
from core.embed.text import Vocabulary, Word, tokenize
from core.embed.totyemb import ToTYEmb, ToTYEmbConfig
from core.embed.train import TrainConfig, TrainResult, embed, train_model
from core.progress import ProgressFn, no_progress

MODEL_KINDS = ("ion", "totyemb")


@dataclass
class Split:
    """Row indices of the train / validation / test ads and the held-out (test-only) categories."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    unseen_categories: list[int] = field(default_factory=list)


def split_by_category(labels: Sequence[int], unseen_fraction: float = 0.1, val_fraction: float = 0.07,
                      test_fraction: float = 0.25, seed: int = 0) -> Split:
    """Hold out ``unseen_fraction`` of the categories (test only); split the other ads per category.

    Defaults follow the MP dataset's proportions (40 of 390 categories unseen; 9,413 / 1,000 / 3,613 ads).
    Every seen category keeps at least one training ad. Deterministic for a seed.
    """
    for name, value in (("unseen_fraction", unseen_fraction), ("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError("val_fraction + test_fraction must leave ads for training")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    cats = np.unique(labels)
    if len(cats) < 2:
        raise ValueError("the catalog needs at least 2 categories")
    n_unseen = min(int(round(unseen_fraction * len(cats))), len(cats) - 2)
    unseen = sorted(rng.choice(cats, size=n_unseen, replace=False).tolist()) if n_unseen > 0 else []
    train, val, test = [], [], []
    for cat in cats:
        idx = rng.permutation(np.flatnonzero(labels == cat))
        if cat in unseen:
            test.extend(idx)
            continue
        n_test = int(round(test_fraction * len(idx)))
        n_val = int(round(val_fraction * len(idx)))
        n_test, n_val = min(n_test, len(idx) - 1), min(n_val, max(0, len(idx) - 1 - n_test))
        test.extend(idx[:n_test])
        val.extend(idx[n_test : n_test + n_val])
        train.extend(idx[n_test + n_val :])
    return Split(np.sort(train), np.sort(val), np.sort(test), [int(c) for c in unseen])


def build_model(kind: str, vocab_size: int, region_dim: int, class_labels: Sequence[int] = (), seed: int = 0,
                **options) -> ION | ToTYEmb:
    """A freshly initialised model (seeded, so the same seed gives the same weights); ``options`` go to its config."""
    configs = {"ion": IONConfig, "totyemb": ToTYEmbConfig}
    if kind not in configs:
        raise ValueError(f"unknown model kind {kind!r}; choose from {MODEL_KINDS}")
    foreign = set(options) - {f.name for f in fields(configs[kind])}
    if foreign:
        raise ValueError(f"option(s) {', '.join(sorted(foreign))} do not apply to {kind}")
    torch.manual_seed(seed)
    if kind == "ion":
        return ION(IONConfig(vocab_size=vocab_size, region_dim=region_dim, **options))
    return ToTYEmb(ToTYEmbConfig(vocab_size=vocab_size, region_dim=region_dim, class_labels=tuple(class_labels), **options))


@dataclass
class FitResult:
    model: ION | ToTYEmb
    vocab: Vocabulary
    training: TrainResult
    metrics: dict  # seen_unseen_precision on the test split (empty when there is no test ad)
    split: Split


def fit_and_evaluate(
    kind: str,
    texts: Sequence[str],
    region_features: Sequence[np.ndarray],
    region_confidences: Sequence[np.ndarray],
    labels: Sequence[int],
    split: Split,
    *,
    model_options: dict | None = None,
    train_config: TrainConfig | None = None,
    max_words: int = 32,
    min_word_freq: int = 1,
    progress: ProgressFn = no_progress,
    should_stop: Callable[[], bool] | None = None,
    on_epoch: Callable[[list], None] | None = None,
    catalogue_texts: Sequence[str] = (),
) -> FitResult:
    """Tokenize, build the vocabulary, train, and report Hit P@1..10 seen / unseen on test.

    The vocabulary holds the training ads' words, or (model option ``vocab="catalogue"``) the words of every text given:
    ``texts`` (all splits) and ``catalogue_texts`` (unlabelled catalogue ads); no label is read for it."""
    options = dict(model_options or {})
    cfg = train_config or TrainConfig(sampler="balanced" if kind == "ion" else "random")
    tokenized: list[list[Word]] = []
    for i, text in enumerate(texts):
        tokenized.append(tokenize(text))
        if i % 200 == 0:
            progress(i, len(texts), "tokenize: ad texts")
    if options.get("vocab", "train") == "catalogue":
        vocab_words = [[w.text for w in words] for words in tokenized] + [[w.text for w in tokenize(t)] for t in catalogue_texts]
    else:
        vocab_words = [[w.text for w in tokenized[i]] for i in split.train]
    vocab = Vocabulary.build(vocab_words, min_freq=min_word_freq)
    labels_arr = np.asarray(labels)
    k1 = int(options.get("k1", 20))
    max_words = int(options.setdefault("max_words", max_words))  # one length for training, validation, test and inference

    def part(index: np.ndarray) -> EmbedDataset:
        return build_dataset([tokenized[i] for i in index], [region_features[i] for i in index],
                             [region_confidences[i] for i in index], labels_arr[index].tolist(), vocab, k1=k1, max_words=max_words)

    train_ds = part(split.train)
    val_ds = part(split.val) if len(split.val) > 1 else None
    class_labels = sorted(set(train_ds.labels.tolist())) if kind == "totyemb" else ()
    model = build_model(kind, len(vocab), train_ds.region_dim, class_labels, seed=cfg.seed, **options)
    if getattr(model, "region", None) is not None and model.config.region_norm == "standardise":
        model.region.set_feature_stats(train_ds.regions, train_ds.region_mask)
    if model.config.word_init == "minilm":
        from core.embed.word_vectors import init_word_embeddings

        init_word_embeddings(model.text.word, vocab.words)
    result = train_model(model, train_ds, val_ds, cfg, progress, should_stop, on_epoch)
    train_labels = train_ds.labels.tolist()
    del train_ds, val_ds  # their inputs go before the test split's are built (a large catalogue's would not fit twice)
    metrics: dict = {}
    if len(split.test) > 1:
        test_ds = part(split.test)
        emb = embed(model, test_ds, device=cfg.device, progress=progress)
        metrics = seen_unseen_precision(emb, test_ds.labels.numpy(), train_labels)
    return FitResult(model, vocab, result, metrics, split)


def embed_ads(model: ION | ToTYEmb, vocab: Vocabulary, texts: Sequence[str], region_features: Sequence[np.ndarray],
              region_confidences: Sequence[np.ndarray], device: str | None = None, batch_size: int = 256,
              progress: ProgressFn = no_progress) -> np.ndarray:
    """Ad vectors [N, d] for new ads (no category needed) with a trained model and its vocabulary; the ads' inputs are
    built ``EMBED_PART`` ads at a time, so a whole catalogue's never are at once."""
    parts = []
    for lo in range(0, len(texts), EMBED_PART):
        hi = min(len(texts), lo + EMBED_PART)
        ds = build_dataset(list(texts[lo:hi]), region_features[lo:hi], region_confidences[lo:hi], [0] * (hi - lo), vocab,
                           k1=model.config.k1, max_words=model.config.max_words, region_dim=model.config.region_dim)
        parts.append(embed(model, ds, batch_size=batch_size, device=device,
                           progress=lambda d, _t, m, lo=lo: progress(lo + d, len(texts), m)))
    if parts:
        return np.concatenate(parts)
    ds = build_dataset([], [], [], [], vocab, k1=model.config.k1, max_words=model.config.max_words, region_dim=model.config.region_dim)
    return embed(model, ds, batch_size=batch_size, device=device, progress=progress)


EMBED_PART = 8192  # ads whose model inputs embed_ads builds at a time
