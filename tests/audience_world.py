"""A small generated world where the expansion hypothesis holds, for the audience tests.

Users have 10 categorical features (43 one-hot columns). Each category has a latent interest
that is a fixed random function of the features; a user clicks an ad of category c with
probability sigmoid(a + b * interest_c(user)) in both periods (Sept = P, Oct = P'), so clickers of
a category's ads in P click that category's ads in P' more. One long-tail package of 2 ads per
category (CTR ~1.2%, other ads ~2.5%, so the package has few clickers and its category many);
the package ads' impressions are all stored (they are the negatives and the P' population),
other ads store their clicks only (all that expansion reads).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import insert

from core.store import Ad, Category, Impression, Package, PackageAd, User, session_scope

COLUMNS = {"age": 6, "gender": 2, "city": 8, "edu": 4, "income": 5, "device": 3, "home": 3, "kids": 3, "job": 6, "net": 3}
SEPT = datetime(2026, 9, 1)
OCT = datetime(2026, 10, 1)


def _rate_offset(z: np.ndarray, slope: float, target: float) -> float:
    lo, hi = -15.0, 5.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if (1 / (1 + np.exp(-(mid + slope * z)))).mean() < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def build_world(engine, *, n_users: int = 5000, n_categories: int = 4, ads_per_category: int = 8, package_size: int = 2,
                package_imps: int = 3000, other_imps: int = 4000, ctr: float = 0.025, package_ctr: float = 0.012, slope: float = 1.2,
                seed: int = 0) -> dict:
    """Insert the world; returns {package_id: category index} and counts."""
    rng = np.random.default_rng(seed)
    values = {col: rng.integers(0, k, n_users) for col, k in COLUMNS.items()}
    user_ids = [f"u{i:05d}" for i in range(n_users)]
    interest = np.zeros((n_categories, n_users))
    for c in range(n_categories):
        for col, k in COLUMNS.items():
            interest[c] += rng.normal(0, 1, k)[values[col]]
        interest[c] = (interest[c] - interest[c].mean()) / interest[c].std()
    def click_prob(rate: float) -> np.ndarray:  # [C, U]
        offset = np.array([_rate_offset(interest[c], slope, rate) for c in range(n_categories)])
        return 1 / (1 + np.exp(-(offset[:, None] + slope * interest)))

    prob, package_prob = click_prob(ctr), click_prob(package_ctr)

    users = [{"id": u, "source": "test", "features": {col: f"{col}{values[col][i]}" for col in COLUMNS},
              "truth": {}} for i, u in enumerate(user_ids)]
    imps: list[dict] = []
    ads: list[dict] = []
    packages: dict[int, int] = {}
    for c in range(n_categories):
        for j in range(ads_per_category):
            ad_id = f"c{c}a{j}"
            ads.append({"id": ad_id, "text": f"ad {j} of category {c}", "image_path": "images/none.png",
                        "image_hash": ad_id, "content_hash": ad_id, "width": 1, "height": 1, "category_id": c + 1,
                        "source": "test"})
            in_package = j < package_size
            n_shown = package_imps if in_package else other_imps
            for start in (SEPT, OCT):
                shown = rng.choice(n_users, size=n_shown, replace=False)
                clicked = rng.random(n_shown) < (package_prob if in_package else prob)[c, shown]
                secs = rng.integers(0, 29 * 86400, n_shown)
                for u, k, s in zip(shown, clicked, secs, strict=True):
                    if in_package or k:
                        imps.append({"user_id": user_ids[u], "ad_id": ad_id, "ts": start + timedelta(seconds=int(s)),
                                     "clicked": bool(k)})
    with session_scope(engine) as s:
        s.execute(insert(Category), [{"id": c + 1, "name": f"cat{c}", "source": "test"} for c in range(n_categories)])
        s.execute(insert(User), users)
        s.execute(insert(Ad), ads)
        s.execute(insert(Impression), imps)
        for c in range(n_categories):
            pkg = Package(name=f"package {c}", category_id=c + 1, source="test")
            s.add(pkg)
            s.flush()
            s.add_all([PackageAd(package_id=pkg.id, ad_id=f"c{c}a{j}") for j in range(package_size)])
            packages[pkg.id] = c
    return {"packages": packages, "users": n_users, "impressions": len(imps), "ads": len(ads)}
