"""Building the training sets: positives, 1:ratio negatives, the held-out test set T, the expansion.

Pure functions over user-id sets (sorted before any random draw, so a seed gives one result).
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass

import numpy as np

from core.audience.errors import NoClickersError, NoImpressionsError


@dataclass
class Dataset:
    """Training and test users of one model (ids sorted)."""

    train_pos: list[str]
    train_neg: list[str]
    test_pos: list[str]
    test_neg: list[str]

    @property
    def test_users(self) -> set[str]:
        return set(self.test_pos) | set(self.test_neg)

    def train(self) -> tuple[list[str], np.ndarray]:
        """(user ids, labels [N] float32) of the training set."""
        users = self.train_pos + self.train_neg
        return users, np.r_[np.ones(len(self.train_pos)), np.zeros(len(self.train_neg))].astype(np.float32)

    def test(self) -> tuple[list[str], np.ndarray]:
        users = self.test_pos + self.test_neg
        return users, np.r_[np.ones(len(self.test_pos)), np.zeros(len(self.test_neg))].astype(np.float32)


def _draw(rng: np.random.Generator, pool: list[str], k: int) -> list[str]:
    k = max(0, min(k, len(pool)))
    if k == len(pool):
        return list(pool)
    return sorted(pool[i] for i in rng.choice(len(pool), size=k, replace=False))


def initial_dataset(package_clickers: Set[str], impression_users: Set[str], ratio: float, test_fraction: float,
                    rng: np.random.Generator) -> Dataset:
    """Positives = the package's clickers; negatives = ``ratio`` x as many non-clicking impression users;
    then a stratified ``test_fraction`` of both held out as T (at least one of each)."""
    positives = sorted(package_clickers)
    if len(positives) < 2:
        raise NoClickersError(
            f"the package has {len(positives)} clicker(s) in the training period: at least 2 are needed "
            "(one to train on, one to test on); choose a longer period or another package")
    pool = sorted(set(impression_users) - set(package_clickers))
    if len(pool) < 2:
        raise NoImpressionsError(
            f"the package has {len(pool)} impression user(s) who did not click in the training period: "
            "at least 2 are needed as negatives")
    negatives = _draw(rng, pool, round(ratio * len(positives)))
    n_test_pos = min(len(positives) - 1, max(1, round(test_fraction * len(positives))))
    n_test_neg = min(len(negatives) - 1, max(1, round(test_fraction * len(negatives))))
    test_pos = _draw(rng, positives, n_test_pos)
    test_neg = _draw(rng, negatives, n_test_neg)
    held = set(test_pos) | set(test_neg)
    return Dataset([u for u in positives if u not in held], [u for u in negatives if u not in held], test_pos, test_neg)


def expanded_dataset(initial: Dataset, similar_clickers: Set[str], package_clickers: Set[str],
                     impression_users: Set[str], ratio: float, rng: np.random.Generator) -> tuple[Dataset, list[str]]:
    """Add the similar ads' clickers as positives (never T, never users already positive) and top the
    negatives up from the package's non-clicking impression users (never T, never positive) to keep
    ``ratio`` (as far as the impression users allow). Returns (dataset with the same T, added users)."""
    test = initial.test_users
    already = set(initial.train_pos)
    added = sorted(set(similar_clickers) - test - already - set(package_clickers))
    positives = sorted(already | set(added))
    pos_set = set(positives)
    kept = [u for u in initial.train_neg if u not in pos_set]
    pool = sorted(set(impression_users) - set(package_clickers) - test - pos_set - set(kept))
    extra = _draw(rng, pool, round(ratio * len(positives)) - len(kept))
    return Dataset(positives, sorted(kept + extra), list(initial.test_pos), list(initial.test_neg)), added
