"""The embedding map: a run's indexed vectors read back, and projected to 2-D (PCA or t-SNE) with their categories.

With a large catalogue the map shows a fixed, seeded random sample of the index (``MAP_POINTS``; fewer for t-SNE,
whose cost grows fastest), projected once per run (:func:`project_sample`, which the page caches). The ads a query
is about (the query ad and its results) are always added (:func:`embedding_map`'s ``focus``): placed by the fitted PCA
exactly, or for t-SNE (which has no out-of-sample transform) at the distance-weighted mean position of their nearest
sampled ads in the embedding space.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Engine

from core.errors import RetrievalError
from core.retrieval.catalog import ad_records
from core.retrieval.index import load_index
from core.runs import get_run
from core.search.index import VectorIndex
from core.store import get_engine

MAP_POINTS = 5000  # sampled points on a PCA map
TSNE_POINTS = 2000  # sampled points on a t-SNE map
PLACE_NEIGHBOURS = 5  # sampled ads that place an added ad on a t-SNE map


def run_vectors(run_id: int, *, engine: Engine | None = None) -> tuple[list[str], np.ndarray]:
    """(ad ids, vectors [N, d]) stored in the run's index."""
    index = load_index(get_run(run_id, engine=engine))
    if index.factory == "Flat":
        vectors = index.index.reconstruct_n(0, len(index))
    else:
        vectors = np.stack([index.vector(a) for a in index.ids])
    return list(index.ids), np.asarray(vectors, np.float32)


def sample_positions(n: int, limit: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of a seeded random sample of ``limit`` out of ``n`` (all of them when ``n <= limit``)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def _vectors(index: VectorIndex, ids: Sequence[str]) -> np.ndarray:
    if not ids:
        return np.zeros((0, index.dim), np.float32)
    return np.asarray(np.stack([index.vector(a) for a in ids]), np.float32)


def project_sample(run_id: int, method: str = "pca", *, limit: int | None = None, seed: int = 0,
                   engine: Engine | None = None) -> dict[str, Any]:
    """The sampled part of a run's map: ids, 2-D coordinates, categories and texts, and what places more ads on it."""
    if method not in ("pca", "tsne"):
        raise RetrievalError(f"unknown map method {method!r}: pca or tsne")
    engine = engine or get_engine()
    index = load_index(get_run(run_id, engine=engine))
    limit = limit or (MAP_POINTS if method == "pca" else TSNE_POINTS)
    ids = [index.ids[i] for i in sample_positions(len(index), limit, seed)]
    if len(ids) < 3:
        raise RetrievalError("the map needs at least 3 indexed ads")
    vectors = _vectors(index, ids)
    base: dict[str, Any] = {"run": run_id, "method": method, "seed": seed, "total": len(index), "ids": ids, "vectors": vectors}
    if method == "tsne":
        from sklearn.manifold import TSNE

        base["xy"] = TSNE(n_components=2, perplexity=min(30.0, (len(ids) - 1) / 3), init="pca", random_state=seed).fit_transform(vectors)
    else:
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(vectors)
        base["xy"], base["pca_mean"], base["pca_components"] = pca.transform(vectors), pca.mean_, pca.components_
    records = ad_records(ids, engine)
    base["category"] = [records.get(a, {}).get("category") or "(none)" for a in ids]
    base["text"] = [records.get(a, {}).get("text", "") for a in ids]
    return base


def place(base: dict[str, Any], vectors: np.ndarray, *, k: int = PLACE_NEIGHBOURS) -> np.ndarray:
    """2-D positions of more vectors on a sampled map: the fitted PCA, or (t-SNE) the inverse-distance-weighted mean
    position of their ``k`` nearest sampled vectors."""
    vectors = np.asarray(vectors, np.float32).reshape(-1, base["vectors"].shape[1])
    if not len(vectors):
        return np.zeros((0, 2))
    if "pca_components" in base:
        return (vectors - base["pca_mean"]) @ base["pca_components"].T
    sample = base["vectors"]
    dist = np.sqrt(np.maximum(((vectors[:, None, :] - sample[None, :, :]) ** 2).sum(-1), 0.0))
    k = min(k, len(sample))
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    weights = 1.0 / (np.take_along_axis(dist, nearest, axis=1) + 1e-6)
    return (base["xy"][nearest] * weights[..., None]).sum(1) / weights.sum(1, keepdims=True)


def embedding_map(run_id: int, method: str = "pca", *, focus: Sequence[str] = (), limit: int | None = None, seed: int = 0,
                  base: dict[str, Any] | None = None, engine: Engine | None = None) -> dict[str, Any]:
    """2-D coordinates of a sample of the indexed ads plus every indexed ad of ``focus`` (flagged), with categories.

    ``base`` is a cached :func:`project_sample` of the same run and method (computed here when absent).
    """
    engine = engine or get_engine()
    base = base or project_sample(run_id, method, limit=limit, seed=seed, engine=engine)
    index = load_index(get_run(run_id, engine=engine))
    sampled = set(base["ids"])
    extra = [a for a in dict.fromkeys(focus) if a not in sampled and a in index]
    xy = np.concatenate([np.asarray(base["xy"], float).reshape(-1, 2), place(base, _vectors(index, extra))])
    records = ad_records(extra, engine) if extra else {}
    wanted = set(focus)
    ids = [*base["ids"], *extra]
    return {"ids": ids, "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(),
            "category": [*base["category"], *(records.get(a, {}).get("category") or "(none)" for a in extra)],
            "text": [*base["text"], *(records.get(a, {}).get("text", "") for a in extra)],
            "focus": [a in wanted for a in ids], "method": base["method"], "sampled": len(base["ids"]), "total": base["total"]}
