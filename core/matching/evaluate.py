"""Evaluation of relevance scores: ROC / AUC with bootstrap 95% intervals, per-phrase MAP@10 / NDCG@10, calibration.

AUC and ROC by scikit-learn, the interval by scipy.stats.bootstrap; :func:`auc` and :func:`thinned_roc` also serve
core.audience.metrics (one definition of the AUC and of the stored ROC curve in the project)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def _classes(scores: Sequence[float], labels: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(scores float64 [N], labels bool [N]); ValueError unless both classes are present."""
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels).astype(bool).ravel()
    if len(s) != len(y):
        raise ValueError(f"{len(s)} scores for {len(y)} labels")
    if y.all() or not y.any():
        raise ValueError("AUC needs at least one positive and one negative")
    return s, y


def auc(scores: Sequence[float], labels: Sequence[int]) -> float:
    """ROC AUC (scikit-learn) = P(score of a random positive > score of a random negative), ties counting 1/2."""
    from sklearn.metrics import roc_auc_score

    s, y = _classes(scores, labels)
    return float(roc_auc_score(y, s))


def roc_curve(scores: Sequence[float], labels: Sequence[int], *, drop_intermediate: bool = False
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) by scikit-learn, from (0, 0) to (1, 1): one point per distinct score, or only the
    corners with ``drop_intermediate`` (the same polyline: the points dropped lie on straight segments)."""
    from sklearn.metrics import roc_curve as sk_roc_curve

    s, y = _classes(scores, labels)
    fpr, tpr, thresholds = sk_roc_curve(y, s, drop_intermediate=drop_intermediate)
    return fpr, tpr, thresholds


def thinned_roc(scores: Sequence[float], labels: Sequence[int], max_points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """The ROC curve's corners (``drop_intermediate``), thinned to at most ``max_points`` evenly spaced ones, first and
    last kept: what the app plots and stores (matching evaluations here, audience expansion in core.audience.metrics)."""
    fpr, tpr, _ = roc_curve(scores, labels, drop_intermediate=True)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max(2, max_points)).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr, tpr


def _mann_whitney_auc(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUC of positives ``pos`` against negatives ``neg`` along ``axis`` = Mann-Whitney U / (n_pos * n_neg) (ties 1/2):
    the same number as roc_auc_score, vectorised over the bootstrap's resamples."""
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(pos, neg, axis=axis, method="asymptotic", use_continuity=False).statistic
    return u / (pos.shape[axis] * neg.shape[axis])


def bootstrap_auc(scores: Sequence[float], labels: Sequence[int], n_boot: int = 1000, seed: int = 0,
                  level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUC (scipy.stats.bootstrap), positives and negatives resampled separately
    (stratified: two independent samples). Percentile, not scipy's default BCa: BCa is undefined (NaN) when every
    resample gives the same AUC (e.g. perfectly separated scores), the percentile interval is then that value.
    A class with a single element is the same in every resample (the other one is resampled); with one of each,
    the interval is the AUC itself. ValueError without a positive or a negative."""
    from scipy.stats import bootstrap

    s, y = _classes(scores, labels)
    pos, neg = s[y], s[~y]
    if len(pos) == 1 and len(neg) == 1:
        value = float(_mann_whitney_auc(pos, neg))
        return value, value
    if len(pos) == 1 or len(neg) == 1:
        single, other = (pos, neg) if len(pos) == 1 else (neg, pos)

        def statistic(x: np.ndarray, axis: int = -1) -> np.ndarray:
            x = np.moveaxis(x, axis, -1)
            fixed = np.broadcast_to(single, (*x.shape[:-1], 1))
            return _mann_whitney_auc(fixed, x) if single is pos else _mann_whitney_auc(x, fixed)

        data: tuple[np.ndarray, ...] = (other,)
    else:
        statistic, data = _mann_whitney_auc, (pos, neg)
    result = bootstrap(data, statistic, n_resamples=n_boot, vectorized=True, paired=False, confidence_level=level,
                       method="percentile", batch=max(1, 4_000_000 // len(s)), rng=np.random.default_rng(seed))
    low, high = result.confidence_interval
    return float(low), float(high)


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
    """Every figure for one scorer on one judgement set (the ROC curve's corners, thinned to at most ``roc_points``)."""
    value = auc(scores, labels)
    low, high = bootstrap_auc(scores, labels, n_boot=n_boot, seed=seed)
    fpr, tpr = thinned_roc(scores, labels, roc_points)
    return {
        "auc": round(value, 4), "auc_low": round(low, 4), "auc_high": round(high, 4), "n": len(labels),
        "positives": int(np.sum(labels)), **{k: (round(v, 4) if isinstance(v, float) else v)
                                            for k, v in per_phrase_ranking(phrases, scores, labels).items()},
        "calibration": reliability(scores, labels),
        "roc": {"fpr": [round(float(x), 4) for x in fpr], "tpr": [round(float(x), 4) for x in tpr]},
    }
