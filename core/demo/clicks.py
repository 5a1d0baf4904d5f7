"""Impressions and clicks over two periods P and P', driven by each user's affinity to the ad's category.

Ordinary ads are delivered by an existing targeting system: each (ad, period) reaches ``impressions_per_ad``
distinct users drawn with weights exp(beta * affinity[user, category]) (beta = ``targeting_sharpness``), so
their audiences lean towards the users interested in their category. Package ads are cold-start long-tail
ads shown broadly (a uniform audience). Which impressed users click is weighted sampling without replacement
(Gumbel top-k) with weights exp(gamma * affinity). The number of clicks per (ordinary ad, period) is
Binomial(impressions, ad CTR) with CTRs of a few percent; per (package, period) it is round(CTR * audience),
so that package CTRs land in the low range the ION paper describes.

Ordinary ads and packages draw from two independent child streams of the clicks generator, so changing
the ordinary ads' knobs leaves the packages' logs exactly as they were (and vice versa).
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


def targeted_impressions(rng: np.random.Generator, ads: np.ndarray, ad_category: np.ndarray,
                         affinity: tuple[np.ndarray, np.ndarray], m: int, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Impressions of the ordinary ``ads`` (n,): for each (ad, period), ``m`` distinct users drawn without
    replacement with weights exp(beta * affinity[u, category of the ad]) in that period (Gumbel top-m;
    beta = 0 gives a uniform draw). ``affinity``: two (n_users, n_categories) arrays.

    Returns (user, ad, period) arrays of n * 2 * m rows, ordered by ad, then period, then user.
    """
    n_users = affinity[0].shape[0]
    if not 1 <= m <= n_users:
        raise ValueError(f"demo: cannot show an ad to {m} of {n_users} users")
    users = np.empty((ads.size, 2, m), dtype=np.int32)
    # a block of ads at a time (about 32 MB of scores): the same draws, in the same order, as one (ad, period) at a time
    block = max(1, 2_000_000 // n_users)
    for lo in range(0, ads.size, block):
        cats = ad_category[ads[lo: lo + block]].astype(np.int64)
        score = rng.gumbel(size=(cats.size, 2, n_users))
        if beta:
            for period in range(2):
                score[:, period] += beta * affinity[period][:, cats].T
        users[lo: lo + cats.size] = np.sort(np.argpartition(-score, m - 1, axis=2)[:, :, :m], axis=2)
    ad = np.broadcast_to(ads.astype(np.int32)[:, None, None], users.shape).ravel()
    period = np.broadcast_to(np.arange(2, dtype=np.int8)[None, :, None], users.shape).ravel()
    return users.ravel(), ad, period


def choose_clickers(rng: np.random.Generator, group: np.ndarray, weight_logit: np.ndarray, clicks_of_group: np.ndarray) -> np.ndarray:
    """Within each group (n_rows,) int, mark ``clicks_of_group[group]`` rows as clicked, drawn without replacement
    with weights exp(weight_logit) (Gumbel top-k). Returns clicked (n_rows,) bool."""
    score = weight_logit.astype(np.float64) + rng.gumbel(size=group.shape[0])
    order = np.lexsort((-score, group))
    sorted_group = group[order]
    first = np.searchsorted(sorted_group, sorted_group, side="left")
    rank = np.arange(order.size) - first
    clicked = np.zeros(group.shape[0], dtype=bool)
    clicked[order] = rank < clicks_of_group[sorted_group]
    return clicked


def _affinity_of_rows(affinity: tuple[np.ndarray, np.ndarray], user: np.ndarray, cat: np.ndarray, period: np.ndarray) -> np.ndarray:
    return np.where(period == 0, affinity[0][user, cat], affinity[1][user, cat])


def simulate_clicks(rng: np.random.Generator, ad_category: np.ndarray, packages: list[list[int]],
                    package_ctr: np.ndarray, affinity: tuple[np.ndarray, np.ndarray], knobs: DemoKnobs) -> ClickLog:
    """Draw the impression log: ordinary ads' rows first (by ad, period, user), then each package's.

    ad_category: (n_ads,) category index of each ad; packages: ad indices of each package;
    package_ctr: (n_packages,) target CTR of each package; affinity: two (n_users, n_categories) arrays.
    """
    n_users = affinity[0].shape[0]
    n_ads = ad_category.shape[0]
    lengths = np.asarray([length for _, length in period_bounds(knobs)], dtype=np.int64)
    gamma = knobs.click_sharpness
    rng_ordinary, rng_packages = rng.spawn(2)
    in_package = np.zeros(n_ads, dtype=bool)
    for ads in packages:
        in_package[ads] = True
    ordinary = np.flatnonzero(~in_package)

    # ordinary ads: targeted audiences of m users per (ad, period); clicks ~ Binomial(m, the ad's CTR)
    m = max(1, min(knobs.impressions_per_ad, n_users // 2))
    o_user, o_ad, o_period = targeted_impressions(rng_ordinary, ordinary, ad_category, affinity, m, knobs.targeting_sharpness)
    o_group = o_ad.astype(np.int64) * 2 + o_period
    ctr = np.clip(np.exp(rng_ordinary.normal(np.log(knobs.ad_ctr_median), knobs.ad_ctr_sigma, size=n_ads)), 0.002, 0.3)
    o_clicks = rng_ordinary.binomial(np.bincount(o_group, minlength=2 * n_ads), np.repeat(ctr, 2))
    o_logit = gamma * _affinity_of_rows(affinity, o_user, ad_category[o_ad], o_period)
    o_clicked = choose_clickers(rng_ordinary, o_group, o_logit, o_clicks)
    o_seconds = rng_ordinary.integers(0, lengths[o_period.astype(np.int64)])

    # package ads: a uniform audience of distinct users per (package, period), each shown one of the package's ads
    audience = max(1, min(knobs.package_audience, int(0.7 * n_users)))
    p_user, p_ad, p_period, p_group = [], [], [], []
    p_clicks = np.zeros(2 * len(packages), dtype=np.int64)
    for j, ads in enumerate(packages):
        for period in range(2):
            who = rng_packages.choice(n_users, size=audience, replace=False).astype(np.int32)
            p_user.append(who)
            p_ad.append(np.asarray(ads, dtype=np.int32)[rng_packages.integers(0, len(ads), size=audience)])
            p_period.append(np.full(audience, period, dtype=np.int8))
            p_group.append(np.full(audience, 2 * j + period, dtype=np.int64))
            p_clicks[2 * j + period] = max(1, int(round(package_ctr[j] * audience)))
    if packages:
        pu, pa, pp, pg = (np.concatenate(x) for x in (p_user, p_ad, p_period, p_group))
        p_clicked = choose_clickers(rng_packages, pg, gamma * _affinity_of_rows(affinity, pu, ad_category[pa], pp), p_clicks)
        p_seconds = rng_packages.integers(0, lengths[pp.astype(np.int64)])
    else:
        pu, pa, pp = (np.zeros(0, dtype=t) for t in (np.int32, np.int32, np.int8))
        p_clicked, p_seconds = np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)

    return ClickLog(user=np.concatenate([o_user, pu]), ad=np.concatenate([o_ad, pa]), period=np.concatenate([o_period, pp]),
                    seconds=np.concatenate([o_seconds, p_seconds]), clicked=np.concatenate([o_clicked, p_clicked]))
