"""Evaluation of relevance scores: ROC / AUC with bootstrap 95% intervals, per-phrase MAP@10 / NDCG@10, calibration."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties sharing their mean rank."""
    from scipy.stats import rankdata

    return rankdata(x, method="average")


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """ROC AUC = P(score of a random positive > score of a random negative), ties counting 1/2 (Mann-Whitney)."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("AUC needs at least one positive and one negative")
    r = _ranks(s)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def roc_curve(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds), from (0, 0) to (1, 1), one point per distinct score."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    tpr = np.r_[0.0, tp / max(1, y.sum())]
    fpr = np.r_[0.0, fp / max(1, (~y).sum())]
    return fpr, tpr, np.r_[np.inf, s[last]]


def bootstrap_auc(scores: Sequence[float], labels: Sequence[int], n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC, resampling positives and negatives separately (stratified)."""
    s, y = np.asarray(scores, np.float64), np.asarray(labels).astype(bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("AUC needs at least one positive and one negative")
    rng = np.random.default_rng(seed)
    values = np.empty(n_boot)
    lab = np.r_[np.ones(len(pos), int), np.zeros(len(neg), int)]
    for b in range(n_boot):
        values[b] = auc(np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))], lab)
    alpha = (1 - level) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def average_precision_at_k(relevance_in_rank_order: Sequence[int], k: int = 10, n_relevant: int | None = None) -> float:
    """AP@k: mean of precision@i over the relevant items in the top k, divided by min(k, n_relevant)."""
    rel = np.asarray(relevance_in_rank_order[:k], np.float64)
    total = int(np.sum(relevance_in_rank_order)) if n_relevant is None else n_relevant
    if total == 0:
        return 0.0
    hits = np.cumsum(rel)
    return float(np.sum(rel * hits / np.arange(1, len(rel) + 1)) / min(k, total))


def ndcg_at_k(relevance_in_rank_order: Sequence[int], k: int = 10) -> float:
    """NDCG@k with binary gains 1 / log2(rank + 1)."""
    rel = np.asarray(relevance_in_rank_order, np.float64)
    discounts = 1 / np.log2(np.arange(2, k + 2))
    dcg = float(np.sum(rel[:k] * discounts[:len(rel[:k])]))
    ideal = np.sort(rel)[::-1][:k]
    idcg = float(np.sum(ideal * discounts[:len(ideal)]))
    return dcg / idcg if idcg > 0 else 0.0


def per_phrase_ranking(phrases: Sequence[str], scores: Sequence[float], labels: Sequence[int], k: int = 10) -> dict:
    """Mean MAP@k and NDCG@k over the phrases that have at least one positive.

    Tied scores are ranked pessimistically (irrelevant first), so a scorer that gives every creative the same
    score gets no credit from the order its input happened to be in."""
    groups: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for p, s, y in zip(phrases, scores, labels, strict=True):
        groups[p].append((float(s), int(y)))
    aps, ndcgs = [], []
    for items in groups.values():
        if not any(y for _, y in items):
            continue
        order = sorted(range(len(items)), key=lambda i: (-items[i][0], items[i][1]))
        rel = [items[i][1] for i in order]
        aps.append(average_precision_at_k(rel, k))
        ndcgs.append(ndcg_at_k(rel, k))
    return {f"map@{k}": float(np.mean(aps)) if aps else None, f"ndcg@{k}": float(np.mean(ndcgs)) if ndcgs else None,
            "phrases": len(aps)}


def reliability(probabilities: Sequence[float], labels: Sequence[int], bins: int = 10) -> dict:
    """Reliability curve (equal-width bins) and the expected calibration error (ECE, bin-weighted |accuracy - confidence|)."""
    p, y = np.asarray(probabilities, np.float64), np.asarray(labels, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    curve, ece = [], 0.0
    for b in range(bins):
        m = idx == b
        if not m.any():
            continue
        conf, acc = float(p[m].mean()), float(y[m].mean())
        curve.append({"bin": b, "confidence": conf, "frequency": acc, "count": int(m.sum())})
        ece += m.sum() / len(p) * abs(acc - conf)
    return {"curve": curve, "ece": float(ece)}


def evaluate_scores(phrases: Sequence[str], scores: Sequence[float], labels: Sequence[int], *, n_boot: int = 1000,
                    seed: int = 0, roc_points: int = 101) -> dict:
    """Every figure for one scorer on one judgement set (the ROC curve is thinned to about ``roc_points`` points)."""
    value = auc(scores, labels)
    low, high = bootstrap_auc(scores, labels, n_boot=n_boot, seed=seed)
    fpr, tpr, _ = roc_curve(scores, labels)
    keep = np.unique(np.r_[np.linspace(0, len(fpr) - 1, min(roc_points, len(fpr))).astype(int), len(fpr) - 1])
    return {
        "auc": round(value, 4), "auc_low": round(low, 4), "auc_high": round(high, 4), "n": len(labels),
        "positives": int(np.sum(labels)), **{k: (round(v, 4) if isinstance(v, float) else v)
                                            for k, v in per_phrase_ranking(phrases, scores, labels).items()},
        "calibration": reliability(scores, labels),
        "roc": {"fpr": [round(float(x), 4) for x in fpr[keep]], "tpr": [round(float(x), 4) for x in tpr[keep]]},
    }
