"""Simulated users: 13 categorical demographic columns (57 one-hot features) and latent category interests.

Columns are drawn one after another; a column's logits depend on the one-hot codes of the columns drawn
before it (its *parents*) through a random matrix plus a few hand-made rules (students are young, the
retired are old, income follows education and city tier, ...). Interests: per category a linear function
of the one-hot features plus per-user noise, standardised, through a sigmoid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# column -> values (the one-hot width is the total number of values: 57)
COLUMNS: dict[str, tuple[str, ...]] = {
    "age_band": ("18-24", "25-29", "30-34", "35-39", "40-49", "50-59", "60+"),
    "gender": ("female", "male"),
    "region": ("north", "northeast", "east", "south", "central", "southwest", "northwest"),
    "city_tier": ("tier1", "new-tier1", "tier2", "tier3", "tier4+"),
    "education": ("high school or less", "associate", "bachelor", "master or above"),
    "income_band": ("<3k", "3-5k", "5-8k", "8-12k", "12-20k", "20k+"),
    "marital_status": ("single", "married", "divorced or widowed"),
    "has_children": ("no", "yes"),
    "property_status": ("renting", "owns home", "lives with parents"),
    "car_owner": ("no", "yes"),
    "occupation": ("student", "office worker", "professional", "service", "manufacturing", "self-employed",
                   "civil servant", "retired", "freelancer"),
    "device": ("ios", "android high-end", "android mid-range", "android entry"),
    "network": ("wifi", "4g", "5g"),
}

# parents of each column (columns drawn before it whose values shift its distribution)
PARENTS: dict[str, tuple[str, ...]] = {
    "city_tier": ("region",),
    "education": ("age_band", "city_tier"),
    "income_band": ("age_band", "education", "city_tier", "gender"),
    "marital_status": ("age_band",),
    "has_children": ("marital_status", "age_band"),
    "property_status": ("age_band", "income_band", "marital_status"),
    "car_owner": ("income_band", "city_tier"),
    "occupation": ("age_band", "education"),
    "device": ("income_band", "age_band"),
    "network": ("city_tier", "device"),
}

N_FEATURES = sum(len(values) for values in COLUMNS.values())


def feature_names() -> list[str]:
    """Names of the one-hot features, ``column=value``, in encoding order."""
    return [f"{col}={value}" for col, values in COLUMNS.items() for value in values]


def _offsets() -> dict[str, int]:
    out, start = {}, 0
    for col, values in COLUMNS.items():
        out[col] = start
        start += len(values)
    return out


def _rules(col: str, codes: dict[str, np.ndarray], n: int) -> np.ndarray:
    """Hand-made logit shifts (n, n_values) that make the population plausible."""
    shift = np.zeros((n, len(COLUMNS[col])), dtype=np.float64)
    if col == "occupation" and "age_band" in codes:
        age = codes["age_band"]
        shift[:, 0] += np.where(age == 0, 3.0, -4.0)  # students are 18-24
        shift[:, 7] += np.where(age == 6, 4.0, np.where(age == 5, 0.0, -5.0))  # the retired are 50+
    if col == "income_band":
        shift += 0.6 * (codes["education"][:, None] - 1.5) * (np.arange(6)[None, :] - 2.5) / 2.5
        shift += 0.5 * (2 - codes["city_tier"][:, None]) * (np.arange(6)[None, :] - 2.5) / 2.5
    if col == "marital_status":
        age = codes["age_band"]
        shift[:, 1] += 0.6 * age - 1.5
        shift[:, 2] += 0.4 * age - 2.5
    if col == "has_children":
        shift[:, 1] += np.where(codes["marital_status"] == 0, -2.5, 1.0)
    if col == "device":
        shift[:, 0] += 0.35 * (codes["income_band"] - 2.5)
        shift[:, 3] -= 0.35 * (codes["income_band"] - 2.5)
    if col == "car_owner":
        shift[:, 1] += 0.5 * (codes["income_band"] - 2.5)
    return shift


@dataclass
class Population:
    """Users as integer codes (n_users, n_columns) and one-hot features X (n_users, 57)."""

    codes: np.ndarray
    onehot: np.ndarray

    def features(self, i: int) -> dict[str, str]:
        """User ``i`` as {column: value} (what User.features stores)."""
        return {col: COLUMNS[col][int(self.codes[i, j])] for j, col in enumerate(COLUMNS)}


def sample_population(rng: np.random.Generator, n_users: int) -> Population:
    """Draw ``n_users`` users column by column (Gumbel-max over logits with parent effects)."""
    offsets = _offsets()
    onehot = np.zeros((n_users, N_FEATURES), dtype=np.float32)
    codes: dict[str, np.ndarray] = {}
    for col, values in COLUMNS.items():
        k = len(values)
        logits = np.tile(rng.normal(0, 0.6, size=k), (n_users, 1))
        for parent in PARENTS.get(col, ()):
            start, width = offsets[parent], len(COLUMNS[parent])
            effect = rng.normal(0, 0.5, size=(width, k))
            logits += onehot[:, start:start + width] @ effect
        logits += _rules(col, codes, n_users)
        choice = np.argmax(logits + rng.gumbel(size=(n_users, k)), axis=1)
        codes[col] = choice
        onehot[np.arange(n_users), offsets[col] + choice] = 1.0
    return Population(codes=np.stack([codes[c] for c in COLUMNS], axis=1).astype(np.int16), onehot=onehot)


def interest_weights(rng: np.random.Generator, groups: list[str]) -> np.ndarray:
    """Feature-to-affinity weights W (57, n_categories): a part shared by the category's group plus its own sparse part."""
    n_cat = len(groups)
    group_names = sorted(set(groups))
    group_w = {g: rng.normal(0, 0.6, size=N_FEATURES) * (rng.random(N_FEATURES) < 0.25) for g in group_names}
    weights = np.zeros((N_FEATURES, n_cat))
    for k, group in enumerate(groups):
        own = rng.normal(0, 1.0, size=N_FEATURES) * (rng.random(N_FEATURES) < 0.15)
        weights[:, k] = group_w[group] + own
    return weights


def affinities(rng: np.random.Generator, onehot: np.ndarray, weights: np.ndarray, feature_share: float,
               drift: float) -> tuple[np.ndarray, np.ndarray]:
    """Standardised affinities (n_users, n_categories) for the two periods P and P'.

    a_P = sqrt(s) * z(X W) + sqrt(1 - s) * e1 with s = ``feature_share``, z() the per-category standardisation
    and e1 ~ N(0, 1) per user and category; a_P' = sqrt(1 - d^2) * a_P + d * e2 with d = ``drift``.
    """
    linear = onehot.astype(np.float64) @ weights
    linear = (linear - linear.mean(axis=0)) / np.maximum(linear.std(axis=0), 1e-6)
    noise = rng.standard_normal(linear.shape)
    a_p = np.sqrt(feature_share) * linear + np.sqrt(1 - feature_share) * noise
    a_p2 = np.sqrt(1 - drift**2) * a_p + drift * rng.standard_normal(linear.shape)
    return a_p.astype(np.float32), a_p2.astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))
