"""Hit P@k (every ad queries all other ads by Euclidean distance) on a hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest

from core.embed.evaluate import hit_precision_at_k, seen_unseen_precision

# 1-D points at 0, 1, 3, 10, 11 with categories a a b b a
EMB = np.array([[0.0], [1.0], [3.0], [10.0], [11.0]])
LABELS = np.array(["a", "a", "b", "b", "a"])
# neighbours in order, and hits:      k=1  k=2  k=3  k=4
#  q0: 1 a, 2 b, 3 b, 4 a              1    1/2  1/3  2/4
#  q1: 0 a, 2 b, 3 b, 4 a              1    1/2  1/3  2/4
#  q2: 1 a, 0 a, 3 b, 4 a              0    0    1/3  1/4
#  q3: 4 a, 2 b, 1 a, 0 a              0    1/2  1/3  1/4
#  q4: 3 b, 2 b, 1 a, 0 a              0    0    1/3  2/4


def test_hand_computed_precision():
    p = hit_precision_at_k(EMB, LABELS, k_max=5)
    assert p[:4] == pytest.approx([0.4, 0.3, 1 / 3, 0.4])
    assert np.isnan(p[4])  # only 4 other ads


def test_query_mask_and_seen_unseen_split():
    p = hit_precision_at_k(EMB, LABELS, k_max=4, query_mask=LABELS == "b")
    assert p == pytest.approx([0.0, 0.25, 1 / 3, 0.25])
    split = seen_unseen_precision(EMB, LABELS, train_labels=["a"], k_max=4)
    assert split["n_seen"] == 3 and split["n_unseen"] == 2
    assert split["seen"] == pytest.approx([2 / 3, 1 / 3, 1 / 3, 0.5])
    assert split["unseen"] == pytest.approx([0.0, 0.25, 1 / 3, 0.25])
    assert split["all"] == pytest.approx([0.4, 0.3, 1 / 3, 0.4])


def test_chunking_ties_and_errors():
    rng = np.random.default_rng(0)
    emb, labels = rng.normal(size=(50, 3)), rng.integers(0, 4, 50)
    assert hit_precision_at_k(emb, labels, chunk=7) == pytest.approx(hit_precision_at_k(emb, labels))
    # identical vectors: the query itself is never retrieved, ties go to the lower index
    p = hit_precision_at_k(np.zeros((3, 2)), np.array([0, 1, 0]), k_max=1)
    assert p[0] == pytest.approx((0 + 0 + 1) / 3)
    assert np.isnan(hit_precision_at_k(emb, labels, query_mask=np.zeros(50, bool))).all()
    with pytest.raises(ValueError, match="NaN"):
        hit_precision_at_k(np.full((3, 2), np.nan), np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="labels"):
        hit_precision_at_k(emb, labels[:10])


def test_one_search_for_seen_and_unseen_gives_the_same_figures_as_three():
    """seen_unseen_precision searches once for every query and splits the hits; the same figures as one search per
    query set (duplicate vectors included: ties go to the lower index either way)."""
    rng = np.random.default_rng(11)
    for n, k in ((40, 10), (7, 10), (2, 5)):
        emb = rng.normal(size=(n, 4))
        emb[n // 2] = emb[0]  # a tie
        labels = rng.integers(0, 5, size=n)
        train = [0, 1, 2]
        got = seen_unseen_precision(emb, labels, train, k_max=k)
        seen = np.isin(labels, train)
        for key, mask in (("all", None), ("seen", seen), ("unseen", ~seen)):
            np.testing.assert_array_equal(np.asarray(got[key]), hit_precision_at_k(emb, labels, k, mask))
        assert (got["n_seen"], got["n_unseen"]) == (int(seen.sum()), int((~seen).sum()))
