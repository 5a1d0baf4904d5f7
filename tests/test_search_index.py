"""FAISS vector index: exact and approximate search, incremental adds, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from core.search import VectorIndex, auto_factory, recall_at_k


def _unit(rng, n, d=32, centres=0):
    """Unit vectors; with ``centres``, drawn around that many category centres (as ad embeddings are)."""
    x = rng.normal(size=(n, d)).astype(np.float32)
    if centres:
        centre_rng = np.random.default_rng(99)  # the same centres for the catalog and its queries
        x = 0.5 * x + centre_rng.normal(size=(centres, d)).astype(np.float32)[rng.integers(0, centres, n)]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_auto_factory_is_exact_for_small_and_approximate_for_large():
    assert auto_factory(1_000) == "Flat"
    assert auto_factory(100_000) == "IVF1264,Flat"
    assert auto_factory(5_000_000).startswith("IVF8944_HNSW32")


def test_exact_search_matches_brute_force_and_excludes_the_query():
    rng = np.random.default_rng(0)
    x = _unit(rng, 200)
    ids = [f"ad{i}" for i in range(200)]
    index = VectorIndex.build(x, ids)
    assert index.factory == "Flat"
    res = index.search(x[:5], k=3, exclude=ids[:5])
    d2 = ((x[:5, None, :] - x[None, :, :]) ** 2).sum(-1)
    for q in range(5):
        d2[q, q] = np.inf
        expected = [ids[i] for i in np.argsort(d2[q])[:3]]
        assert res.ids[q] == expected
        np.testing.assert_allclose(res.distances[q], np.sort(d2[q])[:3], rtol=1e-4)


@pytest.mark.parametrize("factory", ["HNSW32", "IVF64,Flat"])
def test_approximate_recall_against_exact(factory):
    rng = np.random.default_rng(1)
    x = _unit(rng, 5000, centres=100)
    ids = [str(i) for i in range(5000)]
    exact = VectorIndex.build(x, ids, factory="Flat")
    approx = VectorIndex.build(x, ids, factory=factory)
    q = _unit(rng, 50, centres=100)
    assert recall_at_k(approx.search(q, 10), exact.search(q, 10), 10) >= 0.95


def test_adding_new_ads_needs_no_rebuild_and_rejects_duplicates():
    rng = np.random.default_rng(2)
    x = _unit(rng, 20)
    index = VectorIndex.build(x[:10], [f"a{i}" for i in range(10)])
    index.add(x[10:], [f"a{i}" for i in range(10, 20)])
    assert len(index) == 20
    assert index.search(x[15:16], k=1).ids == [["a15"]]
    with pytest.raises(ValueError, match="already in the index"):
        index.add(x[:1], ["a3"])


def test_search_survives_a_restart(tmp_path):
    rng = np.random.default_rng(3)
    x = _unit(rng, 300)
    ids = [f"ad{i}" for i in range(300)]
    index = VectorIndex.build(x, ids, factory="IVF8,Flat")
    before = index.search(x[:4], k=5)
    index.save(tmp_path / "run1")
    loaded = VectorIndex.load(tmp_path / "run1")
    after = loaded.search(x[:4], k=5)
    assert after.ids == before.ids
    assert loaded.factory == "IVF8,Flat" and loaded.nprobe == index.nprobe
    np.testing.assert_allclose(loaded.vector("ad7"), x[7], rtol=1e-6)
