"""Users' one-hot feature matrix (the targeting model's input).

``User.features`` holds raw values ({column: value}). Text, booleans and numbers with few distinct
values become one-hot columns named ``column=value`` (the paper's 57 one-hot user features); a
numeric column with many distinct values (e.g. an exact age) is kept as one numeric column. A user
missing one column gets zeros in its one-hot block (NaN for a numeric column).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.audience.errors import FeatureError
from core.store import User

MAX_CATEGORIES = 64  # numeric columns with more distinct values stay numeric instead of one-hot


@dataclass
class FeatureMatrix:
    """``X`` [U, F] float32: row i = ``user_ids[i]``, column j = ``columns[j]``."""

    user_ids: list[str]
    columns: list[str]
    X: np.ndarray
    _rows: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self._rows:
            self._rows = {u: i for i, u in enumerate(self.user_ids)}

    def __len__(self) -> int:
        return len(self.user_ids)

    def __contains__(self, user_id: str) -> bool:
        return user_id in self._rows

    def missing(self, user_ids: Iterable[str]) -> list[str]:
        """The ids among ``user_ids`` that have no row (no features)."""
        return sorted(u for u in user_ids if u not in self._rows)

    def rows(self, user_ids: Sequence[str]) -> np.ndarray:
        """Row indices of ``user_ids`` (all must be present; see :meth:`require`)."""
        return np.fromiter((self._rows[u] for u in user_ids), dtype=np.int64, count=len(user_ids))

    def take(self, user_ids: Sequence[str]) -> np.ndarray:
        """The feature rows [len(user_ids), F] of these users."""
        return self.X[self.rows(user_ids)]

    def require(self, user_ids: Iterable[str], what: str) -> None:
        """Raise FeatureError naming the users of ``what`` that have no features."""
        missing = self.missing(user_ids)
        if missing:
            raise FeatureError(
                f"{len(missing)} {what} have no features (e.g. {', '.join(missing[:5])}); "
                "import their features first (python -m core ingest users)"
            )


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool | np.bool_)


def _category(value: Any) -> str:
    """The one-hot key of a value (3, 3.0 and "3" are one category)."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def encode_features(user_ids: Sequence[str], features: Sequence[dict[str, Any] | None],
                    max_categories: int = MAX_CATEGORIES) -> FeatureMatrix:
    """One-hot encode raw feature dicts (one per user) into a :class:`FeatureMatrix`.

    Raises FeatureError for users with no features at all and for values that are not single
    text/number/boolean values (lists, dicts...), naming the column and an example user.
    """
    if len(user_ids) != len(features):
        raise ValueError(f"{len(user_ids)} user ids for {len(features)} feature rows")
    if not user_ids:
        raise FeatureError("no users with features: import users first (python -m core ingest users)")
    empty = [u for u, f in zip(user_ids, features, strict=True) if not f]
    if empty:
        raise FeatureError(f"{len(empty)} users have no features (e.g. {', '.join(map(str, empty[:5]))})")
    not_dict = [u for u, f in zip(user_ids, features, strict=True) if not isinstance(f, dict)]
    if not_dict:
        raise FeatureError(f"features of user {not_dict[0]} are not a {{column: value}} mapping")
    n = len(features)
    all_columns = sorted({col for f in features for col in f}, key=str)
    blocks: list[np.ndarray] = []
    names: list[str] = []
    for col in all_columns:
        values = [f.get(col) for f in features]
        for uid, value in zip(user_ids, values, strict=True):
            if not _is_missing(value) and not (isinstance(value, str | bool | np.bool_) or _is_number(value)):
                raise FeatureError(
                    f"feature '{col}' of user {uid} is a {type(value).__name__} ({str(value)[:40]}): "
                    "only single text, number or true/false values can be encoded"
                )
        present = [v for v in values if not _is_missing(v)]
        if present and all(_is_number(v) for v in present) and len(set(present)) > max_categories:
            column = np.array([np.nan if _is_missing(v) else float(v) for v in values], dtype=np.float32)
            if not np.isfinite(column[~np.isnan(column)]).all():
                raise FeatureError(f"feature '{col}' holds an infinite value")
            blocks.append(column[:, None])
            names.append(str(col))
            continue
        keys = [None if _is_missing(v) else _category(v) for v in values]
        cats = sorted({k for k in keys if k is not None})
        if not cats:
            continue
        # one column per category, in sorted order, named column=value; a missing value (None) is all zeros
        block = pd.get_dummies(pd.Categorical(keys, categories=cats), prefix=str(col), prefix_sep="=", dtype=np.float32)
        blocks.append(block.to_numpy())
        names.extend(map(str, block.columns))
    X = np.concatenate(blocks, axis=1) if blocks else np.zeros((n, 0), dtype=np.float32)
    return FeatureMatrix(list(map(str, user_ids)), names, np.ascontiguousarray(X))


def load_features(session: Session, max_categories: int = MAX_CATEGORIES) -> FeatureMatrix:
    """The feature matrix of every user that has features (users without any are left out).

    Whether the users a run needs are all present is checked with :meth:`FeatureMatrix.require`.
    """
    ids: list[str] = []
    feats: list[dict[str, Any]] = []
    for uid, f in session.execute(select(User.id, User.features).order_by(User.id)):
        if f:
            ids.append(uid)
            feats.append(f)
    return encode_features(ids, feats, max_categories)
