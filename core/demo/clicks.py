"""Impressions and clicks over two periods P and P', driven by each user's affinity to the ad's category.

Which users see an ad is uniform at random; which of them click is weighted sampling without replacement
(Gumbel top-k) with weights exp(gamma * affinity[user, category, period]). The number of clicks per
(ordinary ad, period) is Binomial(impressions, ad CTR); per (package, period) it is round(CTR * audience),
so that package CTRs land in the low range the ION paper describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from core.demo.knobs import DemoKnobs


@dataclass
class ClickLog:
    """Impressions as parallel arrays (n_rows,): user index, ad index, period (0 = P, 1 = P'), timestamp, clicked."""

    user: np.ndarray
    ad: np.ndarray
    period: np.ndarray
    seconds: np.ndarray  # seconds since the start of the row's period
    clicked: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])


def period_bounds(knobs: DemoKnobs) -> list[tuple[datetime, int]]:
    """(start, length in seconds) of each period; a period ends at the end of its last day."""
    out = []
    for start, end in knobs.periods:
        d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
        if d1 < d0:
            raise ValueError(f"demo knobs: period {start}..{end} ends before it starts")
        out.append((datetime(d0.year, d0.month, d0.day), ((d1 - d0).days + 1) * 86400))
    return out


def timestamps(log: ClickLog, knobs: DemoKnobs) -> list[datetime]:
    bounds = period_bounds(knobs)
    return [bounds[p][0] + timedelta(seconds=int(s)) for p, s in zip(log.period.tolist(), log.seconds.tolist(), strict=True)]


def simulate_clicks(rng: np.random.Generator, ad_category: np.ndarray, packages: list[list[int]],
                    package_ctr: np.ndarray, affinity: tuple[np.ndarray, np.ndarray], knobs: DemoKnobs) -> ClickLog:
    """Draw the impression log.

    ad_category: (n_ads,) category index of each ad; packages: ad indices of each package;
    package_ctr: (n_packages,) target CTR of each package; affinity: two (n_users, n_categories) arrays.
    """
    n_users = affinity[0].shape[0]
    n_ads = ad_category.shape[0]
    bounds = period_bounds(knobs)
    in_package = np.zeros(n_ads, dtype=bool)
    for ads in packages:
        in_package[ads] = True
    ordinary = np.flatnonzero(~in_package)

    # ordinary ads: m uniform users per (ad, period), duplicates dropped
    m = max(1, min(knobs.impressions_per_ad, n_users // 2))
    users = rng.integers(0, n_users, size=(ordinary.size, 2, m))
    ad_rep = np.broadcast_to(ordinary[:, None, None], users.shape)
    per_rep = np.broadcast_to(np.arange(2)[None, :, None], users.shape)
    key = (ad_rep.astype(np.int64) * 2 + per_rep) * n_users + users
    key = np.unique(key.ravel())
    o_user = (key % n_users).astype(np.int32)
    o_group = key // n_users  # = ad * 2 + period
    o_ad = (o_group // 2).astype(np.int32)
    o_period = (o_group % 2).astype(np.int8)
    ctr = np.clip(np.exp(rng.normal(np.log(knobs.ad_ctr_median), knobs.ad_ctr_sigma, size=n_ads)), 0.002, 0.3)
    group_sizes = np.bincount(o_group, minlength=2 * n_ads)
    group_clicks = rng.binomial(group_sizes, np.repeat(ctr, 2))

    # package ads: an audience of distinct users per (package, period), each shown one of the package's ads
    audience = max(1, min(knobs.package_audience, int(0.7 * n_users)))
    p_user, p_ad, p_period, p_group = [], [], [], []
    p_clicks = np.zeros(2 * len(packages), dtype=np.int64)
    for j, ads in enumerate(packages):
        for period in range(2):
            who = rng.choice(n_users, size=audience, replace=False).astype(np.int32)
            p_user.append(who)
            p_ad.append(np.asarray(ads, dtype=np.int32)[rng.integers(0, len(ads), size=audience)])
            p_period.append(np.full(audience, period, dtype=np.int8))
            p_group.append(np.full(audience, 2 * n_ads + 2 * j + period, dtype=np.int64))
            p_clicks[2 * j + period] = max(1, int(round(package_ctr[j] * audience)))

    user = np.concatenate([o_user, *p_user])
    ad = np.concatenate([o_ad, *p_ad])
    period = np.concatenate([o_period, *p_period])
    group = np.concatenate([o_group, *p_group])
    clicks_of_group = np.concatenate([group_clicks, p_clicks])

    # Gumbel top-k per group: weighted sampling without replacement, weights exp(gamma * affinity)
    cat = ad_category[ad]
    aff = np.where(period == 0, affinity[0][user, cat], affinity[1][user, cat])
    score = knobs.click_sharpness * aff.astype(np.float64) + rng.gumbel(size=user.shape[0])
    order = np.lexsort((-score, group))
    sorted_group = group[order]
    first = np.searchsorted(sorted_group, sorted_group, side="left")
    rank = np.arange(order.size) - first
    clicked = np.zeros(user.shape[0], dtype=bool)
    clicked[order] = rank < clicks_of_group[sorted_group]

    lengths = np.asarray([length for _, length in bounds], dtype=np.int64)
    seconds = rng.integers(0, lengths[period.astype(np.int64)])
    return ClickLog(user=user, ad=ad, period=period, seconds=seconds, clicked=clicked)
