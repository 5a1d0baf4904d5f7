"""Audience expansion: XGBoost fit time and scoring speed at the paper's scale.

Data: 57 one-hot user features (10 categorical columns), labels from a logistic model of those
features at the 1:3 positive:negative ratio of the paper. Full: fit 550 trees (depth 6, lr 0.1,
hist) on 240k rows on 2 threads (target under 20 s) and on 1 thread, then score 1M users. The
load average is reported: on a shared machine it dominates the timings. Quick: 60k rows, 100
trees, 250k users scored.
"""

from __future__ import annotations

import os
import time

import numpy as np

from core.audience.model import TreeParams, fit

CARDINALITIES = (2, 3, 4, 5, 5, 6, 6, 7, 8, 11)  # 57 one-hot columns


def one_hot_users(n: int, rng: np.random.Generator) -> np.ndarray:
    """[n, 57] float32 one-hot rows (one value per categorical column)."""
    blocks = []
    for k in CARDINALITIES:
        block = np.zeros((n, k), dtype=np.float32)
        block[np.arange(n), rng.integers(0, k, n)] = 1.0
        blocks.append(block)
    return np.concatenate(blocks, axis=1)


def labels(X: np.ndarray, rng: np.random.Generator, positive_share: float = 0.25) -> np.ndarray:
    w = rng.normal(0, 1, X.shape[1]).astype(np.float32)
    logit = X @ w + rng.logistic(size=len(X)).astype(np.float32)
    return (logit > np.quantile(logit, 1 - positive_share)).astype(np.float32)


def run(quick: bool = False) -> dict:
    rng = np.random.default_rng(0)
    n_train, n_trees, n_score = (60_000, 100, 250_000) if quick else (240_000, 550, 1_000_000)
    X = one_hot_users(n_train, rng)
    y = labels(X, rng)
    params = TreeParams(n_estimators=n_trees, max_depth=6, learning_rate=0.1, n_jobs=2)
    model = fit(X, y, params)
    one = fit(X, y, TreeParams(n_estimators=n_trees, n_jobs=1))  # on a busy 2-core machine one thread can beat two
    users = one_hot_users(n_score, rng)
    t = time.perf_counter()
    scores = model.score(users)
    score_s = time.perf_counter() - t
    t = time.perf_counter()
    one.score(users)
    score_1thread_s = time.perf_counter() - t
    return {
        "train_rows": n_train,
        "features": int(X.shape[1]),
        "trees": model.n_trees,
        "threads": 2,
        "fit_s": round(model.seconds, 2),
        "fit_target_s": 20.0,
        "fit_under_target": model.seconds < 20.0,
        "fit_1thread_s": round(one.seconds, 2),
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "scored_users": n_score,
        "score_s": round(score_s, 2),
        "users_per_s": round(n_score / score_s),
        "score_1thread_s": round(score_1thread_s, 2),
        "score_range": [round(float(scores.min()), 4), round(float(scores.max()), 4)],
    }


def summary(result: dict) -> list[tuple[str, str]]:
    """Rows of the README's table."""
    return [(f"XGBoost fit, {result['trees']} trees on {result['train_rows']:,} rows x {result['features']} features",
             f"{result['fit_s']} s on {result['threads']} threads "
             f"({result['fit_1thread_s']} s on 1; target {result['fit_target_s']:.0f} s)"),
            (f"scoring {result['scored_users']:,} users", f"{result['score_s']} s ({result['users_per_s']:,} users/s)")]
