"""The paper's retrieval evaluation: every test ad queries all OTHER test ads by Euclidean distance; Hit P@k.

Hit P@k (ION section 4.2) = the fraction of the k nearest ads that share the query's category, averaged
over the queries; reported separately for queries whose category was seen in training and for unseen
(held-out) categories. The searched set is always all test ads but the query itself.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def hit_precision_at_k(emb: np.ndarray, labels: np.ndarray, k_max: int = 10, query_mask: np.ndarray | None = None,
                       chunk: int = 1024) -> np.ndarray:
    """Hit P@k for k = 1..k_max -> float array [k_max].

    emb [N, d], labels [N]; query_mask [N] bool selects the queries (default: all). Ties in distance are
    broken by the lower index. Values for k > N - 1 (fewer other ads than k) are NaN; no query gives all NaN.
    """
    emb, labels = _checked(emb, labels, k_max)
    queries = np.arange(len(emb)) if query_mask is None else np.flatnonzero(np.asarray(query_mask, dtype=bool))
    return _precision(_query_hits(emb, labels, k_max, queries, chunk), k_max)


def _checked(emb: np.ndarray, labels: np.ndarray, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    emb = np.asarray(emb, dtype=np.float64)
    labels = np.asarray(labels)
    if emb.ndim != 2 or labels.shape != (len(emb),):
        raise ValueError(f"expected emb [N, d] and labels [N], got {emb.shape} and {labels.shape}")
    if k_max < 1:
        raise ValueError("k_max must be at least 1")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or infinite values")
    return emb, labels


def _query_hits(emb: np.ndarray, labels: np.ndarray, k_max: int, queries: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Per query, the number of same-category ads among its k nearest others, k = 1..min(k_max, N - 1) -> int [Q, k]."""
    k_eff = min(k_max, len(emb) - 1)
    if len(queries) == 0 or k_eff < 1:
        return np.zeros((len(queries), max(k_eff, 0)), dtype=np.int64)
    sq = (emb**2).sum(axis=1)
    out = []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        dist = sq[q, None] + sq[None, :] - 2.0 * emb[q] @ emb.T
        dist[np.arange(len(q)), q] = np.inf  # never retrieve the query itself
        order = np.argsort(dist, axis=1, kind="stable")[:, :k_eff]
        out.append(np.cumsum(labels[order] == labels[q][:, None], axis=1))
    return np.concatenate(out)


def _precision(hits: np.ndarray, k_max: int) -> np.ndarray:
    out = np.full(k_max, np.nan)
    k_eff = hits.shape[1]
    if len(hits) and k_eff:
        out[:k_eff] = hits.sum(axis=0) / len(hits) / np.arange(1, k_eff + 1)
    return out


def seen_unseen_precision(emb: np.ndarray, labels: np.ndarray, train_labels: Iterable[int], k_max: int = 10) -> dict:
    """Hit P@k for all queries, for queries of categories seen in training and for unseen ones (one search for all).

    -> {"all": [k_max], "seen": [k_max], "unseen": [k_max], "n_seen": int, "n_unseen": int} (lists of floats).
    """
    emb, labels = _checked(emb, labels, k_max)
    seen = np.isin(labels, np.asarray(list(set(train_labels))))
    hits = _query_hits(emb, labels, k_max, np.arange(len(emb)))
    return {
        "all": _precision(hits, k_max).tolist(),
        "seen": _precision(hits[seen], k_max).tolist(),
        "unseen": _precision(hits[~seen], k_max).tolist(),
        "n_seen": int(seen.sum()),
        "n_unseen": int((~seen).sum()),
    }
