"""Offline AUC / ROC on the test set T and the CTR simulation on the later period P'."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def auc_and_roc(y_true: np.ndarray, scores: np.ndarray, max_points: int = 200) -> tuple[float, dict[str, list[float]]]:
    """ROC AUC of ``scores`` [N] against labels [N], and the ROC curve thinned to ``max_points`` (scikit-learn, through
    the helpers core.matching.evaluate shares with the creative-selection evaluation)."""
    from core.matching.evaluate import auc, thinned_roc

    fpr, tpr = thinned_roc(scores, y_true, max_points)
    return auc(scores, y_true), {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def top_order(scores: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices by decreasing score; equal scores (frequent with one-hot users) in random order."""
    return np.lexsort((rng.random(len(scores)), -scores))


def ctr_at_sizes(scores: np.ndarray, clicked: np.ndarray, sizes: Sequence[float], rng: np.random.Generator) -> list[dict]:
    """For each audience size s (fraction of the users), target the top ``ceil``-rounded s x U users:
    CTR = |targeted ∩ clicked| / |targeted|."""
    order = top_order(scores, rng)
    hits = np.cumsum(clicked[order].astype(np.int64))
    out = []
    for s in sizes:
        k = int(min(len(scores), max(1, round(s * len(scores)))))
        out.append({"size": float(s), "targeted": k, "clicked": int(hits[k - 1]), "ctr": float(hits[k - 1] / k)})
    return out
