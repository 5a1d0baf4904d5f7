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


def paired_auc_bootstrap(y_true: np.ndarray, initial: np.ndarray, expanded: np.ndarray, *, n_boot: int = 1000,
                         seed: int = 0, level: float = 0.95) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals over the users of T (resampled with replacement, positives and negatives
    separately so that every resample has both) of AUC(initial), AUC(expanded) and their difference, from the same
    resamples (paired: both models score the same T). Keys ``initial``, ``expanded``, ``delta``: [low, high]."""
    from scipy.stats import rankdata

    y = np.asarray(y_true).astype(bool)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    if len(pos) < 2 or len(neg) < 2:
        return {"initial": None, "expanded": None, "delta": None}
    rng = np.random.default_rng(seed)
    a = np.empty(n_boot)
    b = np.empty(n_boot)
    n_pos, n_neg = len(pos), len(neg)

    def mann_whitney_auc(scores: np.ndarray) -> float:  # the first n_pos scores are the positives; ties count 1/2
        ranks = rankdata(scores)
        return (ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)

    for i in range(n_boot):
        idx = np.r_[rng.choice(pos, n_pos), rng.choice(neg, n_neg)]
        a[i] = mann_whitney_auc(np.asarray(initial)[idx])
        b[i] = mann_whitney_auc(np.asarray(expanded)[idx])
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def interval(v: np.ndarray) -> list[float]:
        return [round(float(x), 4) for x in np.percentile(v, q)]

    return {"initial": interval(a), "expanded": interval(b), "delta": interval(b - a)}
