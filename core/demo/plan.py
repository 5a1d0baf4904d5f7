"""The demo catalogue before rendering: categories, held-out categories, ads per category, splits, packages.

Kept apart from ``core.demo.world`` (which renders and stores the world) so that the writer in
``core.demo.store`` can take a plan without importing the builder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from core.demo.knobs import DemoKnobs
from core.demo.vocab import CATEGORIES, CategorySpec

# random streams (one per stage, so that changing one stage leaves the others as they were)
STREAM_PLAN, STREAM_IMAGE, STREAM_USERS, STREAM_CLICKS = 1, 2, 3, 4


@dataclass
class WorldPlan:
    """The catalogue before rendering: which categories, which ad is which, the splits and the packages."""

    categories: list[CategorySpec]
    unseen: list[bool]
    ad_category: np.ndarray  # (n_ads,) index into categories
    ad_lang: list[str]
    ad_split: list[str]
    packages: list[list[int]]  # ad indices per package
    package_ctr: np.ndarray  # (n_packages,) target CTR


def resolve_knobs(n_ads: int, knobs: DemoKnobs | None) -> DemoKnobs:
    """Fill the automatic knobs (number of categories and of held-out categories) and validate."""
    knobs = knobs or DemoKnobs()
    knobs.validate()
    n_cat = knobs.n_categories if knobs.n_categories is not None else max(8, min(72, n_ads // 10))
    if not 2 <= n_cat <= len(CATEGORIES):
        raise ValueError(f"demo: n_categories must lie in [2, {len(CATEGORIES)}] (got {n_cat})")
    if n_ads < 3 * n_cat:
        raise ValueError(f"demo: {n_ads} ads are too few for {n_cat} categories (need at least 3 per category, "
                         f"i.e. {3 * n_cat}); ask for more ads or fewer categories")
    n_unseen = knobs.n_unseen if knobs.n_unseen is not None else round(n_cat / 6)
    if not 0 <= n_unseen < n_cat:
        raise ValueError(f"demo: n_unseen must lie in [0, {n_cat - 1}] (got {n_unseen})")
    return replace(knobs, n_categories=n_cat, n_unseen=n_unseen)


def plan_world(n_ads: int, seed: int, knobs: DemoKnobs) -> WorldPlan:
    """Pick categories, held-out categories, ads per category, languages, splits and packages."""
    assert knobs.n_categories is not None and knobs.n_unseen is not None
    rng = np.random.default_rng([seed, STREAM_PLAN])
    n_cat, n_unseen = knobs.n_categories, knobs.n_unseen
    chosen = np.sort(rng.choice(len(CATEGORIES), size=n_cat, replace=False))
    categories = [CATEGORIES[i] for i in chosen]
    unseen_idx = set(rng.choice(n_cat, size=n_unseen, replace=False).tolist())
    unseen = [k in unseen_idx for k in range(n_cat)]

    counts = 3 + rng.multinomial(n_ads - 3 * n_cat, rng.dirichlet(np.full(n_cat, 4.0)))
    ad_category = rng.permutation(np.repeat(np.arange(n_cat), counts))
    ad_lang = ["zh" if r < knobs.chinese_fraction else "en" for r in rng.random(n_ads)]

    ad_split = ["train"] * n_ads
    _train, val_frac, test_frac = knobs.split_fractions
    for k in range(n_cat):
        members = rng.permutation(np.flatnonzero(ad_category == k))
        if unseen[k]:
            for i in members:
                ad_split[i] = "test"
            continue
        n_test = int(round(test_frac * members.size))
        n_val = int(round(val_frac * members.size))
        for pos, i in enumerate(members):
            ad_split[i] = "test" if pos < n_test else "val" if pos < n_test + n_val else "train"

    # packages: one category each, distinct categories, leaving at least two other ads in the category
    n_pkg = min(knobs.n_packages, n_cat // 2)
    lo, hi = knobs.package_ads
    eligible = [k for k in range(n_cat) if counts[k] >= lo + 2]
    unseen_pool = [k for k in eligible if unseen[k]]
    seen_pool = [k for k in eligible if not unseen[k]]
    n_unseen_pkg = min(knobs.n_unseen_packages, len(unseen_pool), n_pkg)
    picked = list(rng.choice(unseen_pool, size=n_unseen_pkg, replace=False)) if n_unseen_pkg else []
    n_seen_pkg = min(n_pkg - n_unseen_pkg, len(seen_pool))
    picked += list(rng.choice(seen_pool, size=n_seen_pkg, replace=False)) if n_seen_pkg else []
    packages: list[list[int]] = []
    for k in picked:
        members = np.flatnonzero(ad_category == k)
        size = min(int(rng.integers(lo, hi + 1)), members.size - 2)
        packages.append(sorted(int(i) for i in rng.choice(members, size=size, replace=False)))
    package_ctr = rng.uniform(knobs.package_ctr[0], knobs.package_ctr[1], size=len(packages))
    return WorldPlan(categories, unseen, ad_category, ad_lang, ad_split, packages, package_ctr)
