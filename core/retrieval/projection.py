"""The embedding map: a run's indexed vectors read back, and projected to 2-D (PCA or t-SNE) with their categories."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import Engine

from core.errors import RetrievalError
from core.retrieval.catalog import ad_records
from core.retrieval.index import load_index
from core.runs import get_run
from core.store import get_engine


def run_vectors(run_id: int, *, engine: Engine | None = None) -> tuple[list[str], np.ndarray]:
    """(ad ids, vectors [N, d]) stored in the run's index."""
    index = load_index(get_run(run_id, engine=engine))
    if index.factory == "Flat":
        vectors = index.index.reconstruct_n(0, len(index))
    else:
        vectors = np.stack([index.vector(a) for a in index.ids])
    return list(index.ids), np.asarray(vectors, np.float32)


def embedding_map(run_id: int, method: str = "pca", *, limit: int = 3000, seed: int = 0, engine: Engine | None = None) -> dict[str, Any]:
    """2-D coordinates of (up to ``limit``) indexed ads with their categories: PCA or t-SNE (scikit-learn)."""
    engine = engine or get_engine()
    ids, vectors = run_vectors(run_id, engine=engine)
    if len(ids) > limit:
        keep = np.sort(np.random.default_rng(seed).choice(len(ids), size=limit, replace=False))
        ids, vectors = [ids[i] for i in keep], vectors[keep]
    if len(ids) < 3:
        raise RetrievalError("the map needs at least 3 indexed ads")
    if method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, perplexity=min(30.0, (len(ids) - 1) / 3), init="pca", random_state=seed).fit_transform(vectors)
    elif method == "pca":
        from sklearn.decomposition import PCA

        xy = PCA(n_components=2, random_state=seed).fit_transform(vectors)
    else:
        raise RetrievalError(f"unknown map method {method!r}: pca or tsne")
    records = ad_records(ids, engine)
    return {"ids": ids, "x": xy[:, 0].tolist(), "y": xy[:, 1].tolist(),
            "category": [records.get(a, {}).get("category") or "(none)" for a in ids],
            "text": [records.get(a, {}).get("text", "") for a in ids], "method": method}
