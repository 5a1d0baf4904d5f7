"""Offline AUC / ROC on the test set T and the CTR simulation on the later period P'."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def auc_and_roc(y_true: np.ndarray, scores: np.ndarray, max_points: int = 200) -> tuple[float, dict[str, list[float]]]:
    """ROC AUC of ``scores`` [N] against labels [N], and the ROC curve thinned to ``max_points``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    auc = float(roc_auc_score(y_true, scores))
    fpr, tpr, _ = roc_curve(y_true, scores)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return auc, {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


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
