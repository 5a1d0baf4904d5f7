"""A tiny synthetic catalog for the embedding tests: category-dependent words and region features."""

from __future__ import annotations

import numpy as np

from core.embed.data import EmbedDataset, build_dataset
from core.embed.text import Vocabulary, tokenize

PRODUCTS = [
    ("tea", "green", "leaves"),
    ("bracelet", "sparkling", "wrist"),
    ("shoes", "running", "sole"),
    ("phone", "smart", "screen"),
    ("sofa", "soft", "cushion"),
    ("watch", "elegant", "dial"),
    ("lipstick", "red", "lips"),
    ("coffee", "dark", "beans"),
]
FILLERS = ["buy", "now", "for", "your", "the", "best", "with", "today", "new", "love"]


def synthetic_catalog(n_categories: int = 6, per_category: int = 5, region_dim: int = 16, seed: int = 0,
                      category_offset: int = 0):
    """Texts, region features / confidences and labels; each category has its own words and a region prototype
    hidden among background regions (which are shared noise)."""
    rng = np.random.default_rng(seed)
    protos = np.random.default_rng(1234).normal(size=(len(PRODUCTS), region_dim)).astype(np.float32)
    texts, feats, confs, labels = [], [], [], []
    for c in range(category_offset, category_offset + n_categories):
        noun, adj, part = PRODUCTS[c]
        for _ in range(per_category):
            filler = rng.choice(FILLERS, size=3, replace=False)
            texts.append(f"{filler[0]} {adj} {noun} {filler[1]} {part} {filler[2]}")
            m = int(rng.integers(3, 7))
            f = rng.normal(size=(m, region_dim)).astype(np.float32)
            f[int(rng.integers(0, m))] = protos[c] + 0.1 * rng.normal(size=region_dim)
            feats.append(f)
            confs.append(rng.uniform(0.2, 0.9, size=m).astype(np.float32))
            labels.append(c)
    return texts, feats, confs, labels


def synthetic_dataset(k1: int = 8, **kwargs) -> tuple[EmbedDataset, Vocabulary]:
    texts, feats, confs, labels = synthetic_catalog(**kwargs)
    words = [tokenize(t) for t in texts]
    vocab = Vocabulary.build([[w.text for w in ws] for ws in words])
    return build_dataset(words, feats, confs, labels, vocab, k1=k1, max_words=12), vocab
