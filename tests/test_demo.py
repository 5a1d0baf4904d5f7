"""The embedded demo world: determinism, statistics, ground truth, clicks, packages, idempotent rebuilds."""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from datetime import datetime

import numpy as np
import pytest
from sqlalchemy import func, select

from core.demo import DEMO_LABEL, OPENMOJI_ATTRIBUTION, DemoKnobs, build_world
from core.demo.population import COLUMNS, N_FEATURES, feature_names
from core.demo.vocab import CATEGORIES, GROUP_KEYWORDS, SHARED_KEYWORDS_ZH

N_ADS, N_USERS, N_CATEGORIES = 240, 2000, 24
KNOBS = DemoKnobs(n_categories=N_CATEGORIES, impressions_per_ad=250)  # half the default: a smaller log, a faster test
SPLIT_P2 = datetime(2026, 10, 1)


def _use_home(path) -> None:
    from core.config import get_settings

    os.environ["ADLENS_HOME"] = str(path)
    os.environ.pop("ADLENS_DATABASE_URL", None)
    get_settings.cache_clear()


class World:
    """A demo world built once per module into its own home; ``enter()`` makes it the active home."""

    def __init__(self, path, seed: int) -> None:
        self.path = path
        self.enter()
        from core.store import get_engine

        self.engine = get_engine()
        self.summary = build_world(N_ADS, N_USERS, seed, engine=self.engine, knobs=KNOBS)

    def enter(self) -> None:
        _use_home(self.path)

    def rows(self, sql: str) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(sql).all()]


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    saved = os.environ.get("ADLENS_HOME")
    a = World(tmp_path_factory.mktemp("demo-a"), seed=0)
    b = World(tmp_path_factory.mktemp("demo-b"), seed=0)
    yield a, b
    if saved is None:
        os.environ.pop("ADLENS_HOME", None)
    else:
        os.environ["ADLENS_HOME"] = saved
    from core.config import get_settings

    get_settings.cache_clear()


@pytest.fixture
def world(worlds):
    worlds[0].enter()
    return worlds[0]


def _fingerprint(w: World) -> dict:
    return {
        "ads": w.rows("SELECT a.id, a.text, a.lang, a.split, a.image_hash, a.content_hash, c.name, a.truth "
                      "FROM ads a JOIN categories c ON c.id = a.category_id ORDER BY a.id"),
        "users": w.rows("SELECT id, features, truth FROM users ORDER BY id"),
        "clicks": w.rows("SELECT user_id, ad_id, ts, clicked FROM impressions ORDER BY user_id, ad_id, ts"),
        "packages": w.rows("SELECT p.name, pa.ad_id FROM packages p JOIN package_ads pa ON pa.package_id = p.id "
                           "ORDER BY p.name, pa.ad_id"),
    }


def test_summary_counts_and_labels(world):
    s = world.summary
    assert s["label"] == DEMO_LABEL and "synthetic" in DEMO_LABEL.lower()
    assert "OpenMoji" in OPENMOJI_ATTRIBUTION and "creativecommons.org/licenses/by-sa/4.0" in OPENMOJI_ATTRIBUTION
    assert (s["ads"], s["users"], s["categories"], s["unseen_categories"]) == (N_ADS, N_USERS, N_CATEGORIES, 4)
    assert s["user_features_onehot"] == N_FEATURES == 57 == len(feature_names())
    from core.catalog import stats

    db = stats(world.engine)
    assert (db["ads"], db["users"], db["categories"], db["unseen_categories"]) == (N_ADS, N_USERS, N_CATEGORIES, 4)
    assert db["impressions"] == s["impressions"] and db["clicks"] == s["clicks"] > 0
    assert s["impressions"] < 3_000_000
    assert world.rows("SELECT DISTINCT source FROM ads") == [("demo",)]
    assert world.rows("SELECT min(id), max(id) FROM ads") == [("demo-00001", f"demo-{N_ADS:05d}")]
    assert world.rows("SELECT min(id), max(id) FROM users") == [("u000001", f"u{N_USERS:06d}")]


def test_categories_splits_and_languages(world):
    cats = world.rows("SELECT name, name_zh, unseen, meta FROM categories")
    assert len(cats) == N_CATEGORIES
    known = {c.name: c for c in CATEGORIES}
    for name, name_zh, _unseen, meta in cats:
        spec = known[name]
        assert name_zh == spec.name_zh and 1 <= len(json.loads(meta)["glyphs"]) <= 3
    by_cat = defaultdict(list)
    for cat, unseen, split in world.rows("SELECT c.name, c.unseen, a.split FROM ads a JOIN categories c ON c.id = a.category_id"):
        by_cat[(cat, unseen)].append(split)
    seen_splits = []
    for (cat, unseen), splits in by_cat.items():
        assert len(splits) >= 3, cat
        if unseen:
            assert set(splits) == {"test"}, f"held-out category {cat} leaks into {set(splits)}"
        else:
            assert "train" in splits, cat
            seen_splits += splits
    fractions = {s: seen_splits.count(s) / len(seen_splits) for s in ("train", "val", "test")}
    assert 0.6 < fractions["train"] < 0.8 and 0.04 < fractions["val"] < 0.16 and 0.12 < fractions["test"] < 0.28
    # languages: about 30% Chinese; texts in the right script
    langs = world.rows("SELECT lang, text FROM ads")
    zh = [t for lang, t in langs if lang == "zh"]
    assert 0.18 < len(zh) / len(langs) < 0.42
    assert all(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in zh)
    assert all(not any("\u4e00" <= ch <= "\u9fff" for ch in t) for lang, t in langs if lang == "en")


def test_chinese_texts_segment_with_jieba(world):
    import jieba

    vocab = {w for c in CATEGORIES for w in (*c.keywords_zh, c.name_zh)} | set(SHARED_KEYWORDS_ZH)
    vocab |= {w for _, zh in GROUP_KEYWORDS.values() for w in zh}
    vocab = {w for w in vocab if len(w) >= 2}
    found = recovered = 0
    for (text,) in world.rows("SELECT text FROM ads WHERE lang = 'zh'"):
        tokens = [t for t in jieba.lcut(text) if t.strip() and t not in "，。！：、"]
        assert len(tokens) >= 4, (text, tokens)
        present = [w for w in vocab if w in text]
        found += len(present)
        recovered += sum(w in tokens for w in present)
    assert found > 100
    assert recovered / found > 0.8, f"jieba recovered only {recovered}/{found} vocabulary words as tokens"


def test_ambiguous_texts(world):
    rows = world.rows("SELECT a.text, a.lang, c.name, c.name_zh, a.truth FROM ads a JOIN categories c ON c.id = a.category_id")
    named = [(n if lang == "en" else nz) in text for text, lang, n, nz, _ in rows]
    assert 0.2 < np.mean(named) < 0.5  # category name present with p = 0.35
    truth_named = [json.loads(t)["name_in_text"] for *_, t in rows]
    assert np.mean(np.asarray(named) == np.asarray(truth_named)) > 0.9
    # brands are shared across categories
    brand_cats = defaultdict(set)
    for *_, cat, _, t in rows:
        brand_cats[json.loads(t)["brand"]].add(cat)
    assert np.mean([len(v) for v in brand_cats.values()]) > 3


def test_images_and_ground_truth(world):
    from core.filestore import resolve
    from core.images import load_image

    rows = world.rows("SELECT a.id, a.text, a.image_path, a.image_hash, a.content_hash, a.width, a.height, a.truth, c.name "
                      "FROM ads a JOIN categories c ON c.id = a.category_id")
    product_areas, distractor_areas = [], []
    for i, (_id, text, path, image_hash, content_hash, w, h, truth_json, cat) in enumerate(rows):
        truth = json.loads(truth_json)
        x1, y1, x2, y2 = truth["product_box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        products = [o for o in truth["objects"] if o["role"] == "product"]
        assert len(products) == 1 and products[0]["box"] == truth["product_box"] and products[0]["category"] == cat
        assert products[0]["glyph"] == truth["product_glyph"]
        assert truth["printed_text"] and truth["printed_text"].isascii()
        product_areas.append((x2 - x1) * (y2 - y1))
        for o in truth["objects"]:
            bx1, by1, bx2, by2 = o["box"]
            assert 0 <= bx1 < bx2 <= w and 0 <= by1 < by2 <= h
            if o["role"] == "distractor":
                distractor_areas.append((bx2 - bx1) * (by2 - by1))
                assert o["category"] != cat
        assert content_hash == hashlib.sha256(f"{text}|{image_hash}|{cat}".encode()).hexdigest()
        if i < 12:
            data = resolve(path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == image_hash
            decoded = load_image(resolve(path))
            assert decoded.format == "JPEG" and decoded.image.size == (w, h) == (512, 512)
    assert np.mean(product_areas) * 3 < np.mean(distractor_areas)
    assert len(distractor_areas) >= 2 * len(rows)


def test_users_features_and_interests(world):
    rows = world.rows("SELECT features, truth FROM users")
    assert len(rows) == N_USERS
    names = [r[0] for r in world.rows("SELECT name FROM categories ORDER BY name")]
    index = {f: j for j, f in enumerate(feature_names())}
    x = np.zeros((len(rows), N_FEATURES))
    interest = np.zeros((len(rows), len(names)))
    for u, (features_json, truth_json) in enumerate(rows):
        features = json.loads(features_json)
        assert set(features) == set(COLUMNS)
        for col, value in features.items():
            x[u, index[f"{col}={value}"]] = 1
        got = json.loads(truth_json)["interest"]
        assert sorted(got) == names
        interest[u] = [got[n][0] for n in names]
    assert x.sum(axis=1).tolist() == [len(COLUMNS)] * len(rows)
    assert (x.sum(axis=0) > 0).sum() >= 50  # nearly every one-hot feature is used
    assert ((interest > 0) & (interest < 1)).all()
    # interests are tied to the features: a linear model of the one-hot features explains a good share
    logit = np.log(interest.clip(1e-3, 1 - 1e-3) / (1 - interest.clip(1e-3, 1 - 1e-3)))
    coef, *_ = np.linalg.lstsq(x, logit, rcond=None)
    r2 = 1 - ((logit - x @ coef) ** 2).sum(axis=0) / ((logit - logit.mean(axis=0)) ** 2).sum(axis=0)
    assert 0.4 < np.median(r2) < 0.8


def test_packages_are_long_tail_low_ctr(world):
    packages = world.rows("SELECT p.id, p.name, p.source, count(pa.ad_id) FROM packages p "
                          "JOIN package_ads pa ON pa.package_id = p.id GROUP BY p.id")
    assert len(packages) == world.summary["packages"] == N_CATEGORIES // 2
    unseen_pkgs = 0
    for pid, _name, source, n in packages:
        assert source == "demo" and 2 <= n <= 4
        cats = world.rows(f"SELECT DISTINCT c.name, c.unseen FROM package_ads pa JOIN ads a ON a.id = pa.ad_id "
                          f"JOIN categories c ON c.id = a.category_id WHERE pa.package_id = {pid}")
        assert len(cats) == 1
        unseen_pkgs += cats[0][1]
        (imps, clicks), = world.rows(f"SELECT count(*), sum(clicked) FROM impressions WHERE ad_id IN "
                                     f"(SELECT ad_id FROM package_ads WHERE package_id = {pid})")
        assert 0.002 <= clicks / imps <= 0.009
        for lo, hi in (("2026-09-01", "2026-10-01"), ("2026-10-01", "2026-11-01")):
            (users,), = world.rows(f"SELECT count(DISTINCT user_id) FROM impressions WHERE ts >= '{lo}' AND ts < '{hi}' "
                                   f"AND ad_id IN (SELECT ad_id FROM package_ads WHERE package_id = {pid})")
            assert users == int(0.7 * N_USERS)
        # the other ads of the category have clickers too (what audience expansion borrows)
        (others,), = world.rows(f"SELECT count(DISTINCT i.user_id) FROM impressions i JOIN ads a ON a.id = i.ad_id "
                                f"WHERE i.clicked AND a.category_id = (SELECT category_id FROM packages WHERE id = {pid}) "
                                f"AND a.id NOT IN (SELECT ad_id FROM package_ads WHERE package_id = {pid})")
        assert others >= 10
    assert unseen_pkgs >= 1
    assert 0.002 <= world.summary["package_ctr_min"] <= world.summary["package_ctr_max"] <= 0.009


def test_ordinary_ads_are_targeted_packages_are_shown_broadly(world):
    """Ordinary ads reach users interested in their category (a few percent CTR); packages reach everyone (low CTR)."""
    interest = {u: json.loads(t)["interest"] for u, t in world.rows("SELECT id, truth FROM users")}
    population = np.mean([v[0] for per_user in interest.values() for v in per_user.values()])
    rows = world.rows("SELECT i.user_id, c.name, i.ts >= '2026-10-01', i.clicked, pa.package_id IS NOT NULL FROM impressions i "
                      "JOIN ads a ON a.id = i.ad_id JOIN categories c ON c.id = a.category_id "
                      "LEFT JOIN package_ads pa ON pa.ad_id = i.ad_id")
    seen = {True: [], False: []}
    clicks = {True: [0, 0], False: [0, 0]}
    for user, cat, later, clicked, in_package in rows:
        seen[bool(in_package)].append(interest[user][cat][int(later)])
        clicks[bool(in_package)][0] += clicked
        clicks[bool(in_package)][1] += 1
    assert abs(population - 0.5) < 0.02
    assert np.mean(seen[False]) > population + 0.12, "ordinary ads are not targeted at interested users"
    assert abs(np.mean(seen[True]) - population) < 0.02, "package audiences are not uniform"
    ordinary_ctr, package_ctr = clicks[False][0] / clicks[False][1], clicks[True][0] / clicks[True][1]
    assert 0.03 < ordinary_ctr < 0.1 and package_ctr < ordinary_ctr / 5, (ordinary_ctr, package_ctr)
    # each ordinary ad reaches impressions_per_ad distinct users per period
    per_ad = world.rows("SELECT count(*), count(DISTINCT user_id) FROM impressions WHERE ad_id NOT IN "
                        "(SELECT ad_id FROM package_ads) GROUP BY ad_id, ts >= '2026-10-01'")
    assert set(per_ad) == {(KNOBS.impressions_per_ad, KNOBS.impressions_per_ad)}


def test_targeting_sharpness_and_independent_package_stream():
    """simulate_clicks directly: beta skews who sees ordinary ads; their knobs never change the packages' log."""
    from core.demo.clicks import simulate_clicks

    rng = np.random.default_rng(5)
    n_users, n_cat = 3000, 6
    aff = rng.standard_normal((n_users, n_cat)).astype(np.float32)
    affinity = (aff, (0.95 * aff + 0.3 * rng.standard_normal((n_users, n_cat))).astype(np.float32))
    ad_category = np.repeat(np.arange(n_cat), 10)
    packages, package_ctr = [[0, 1], [20, 21, 22]], np.array([0.005, 0.008])

    def draw(**knobs):
        log = simulate_clicks(np.random.default_rng(9), ad_category, packages, package_ctr, affinity, DemoKnobs(**knobs))
        return log, np.isin(log.ad, [a for p in packages for a in p])

    sharp, in_pkg = draw(impressions_per_ad=300, targeting_sharpness=2.0)
    flat, in_pkg_flat = draw(impressions_per_ad=200, targeting_sharpness=0.0, ad_ctr_median=0.1)
    for log in (sharp, flat):
        keys = log.user.astype(np.int64) * 1000 + log.ad * 2 + log.period
        assert np.unique(keys).size == len(log)  # (user, ad, period) unique
    seen = {name: affinity[0][log.user, ad_category[log.ad]][~mask & (log.period == 0)].mean()
            for name, log, mask in (("sharp", sharp, in_pkg), ("flat", flat, in_pkg_flat))}
    assert seen["sharp"] > 1.0 and abs(seen["flat"]) < 0.05, seen
    assert (~in_pkg).sum() == 55 * 2 * 300 and (~in_pkg_flat).sum() == 55 * 2 * 200  # 55 ordinary ads
    assert flat.clicked[~in_pkg_flat].mean() > sharp.clicked[~in_pkg].mean()  # median CTR 10% against 5%
    for field in ("user", "ad", "period", "seconds", "clicked"):
        assert np.array_equal(getattr(sharp, field)[in_pkg], getattr(flat, field)[in_pkg_flat]), field
    assert int(sharp.clicked[in_pkg].sum()) == 2 * (round(0.005 * 2100) + round(0.008 * 2100))


def test_clickers_of_a_category_click_it_again(world):
    rows = world.rows("SELECT i.user_id, a.category_id, i.ts >= '2026-10-01', i.clicked FROM impressions i "
                      "JOIN ads a ON a.id = i.ad_id")
    assert all("2026-09-01" <= ts < "2026-11-01" for (ts,) in world.rows("SELECT DISTINCT substr(ts, 1, 10) FROM impressions"))
    p_clickers = {(u, c) for u, c, later, clicked in rows if not later and clicked}
    hits = {True: [0, 0], False: [0, 0]}
    for u, c, later, clicked in rows:
        if later:
            cell = hits[(u, c) in p_clickers]
            cell[0] += clicked
            cell[1] += 1
    rate_clickers = hits[True][0] / hits[True][1]
    rate_others = hits[False][0] / hits[False][1]
    assert hits[True][1] > 500
    assert rate_clickers > 2.5 * rate_others, (rate_clickers, rate_others)


def test_idempotent_rebuild_is_a_fast_noop(world, monkeypatch):
    def no_rendering(*_args, **_kwargs):
        raise AssertionError("an unchanged world must not be rendered again")

    monkeypatch.setattr("core.demo.world.render_creative", no_rendering)
    before = world.rows("SELECT count(*), max(id) FROM impressions")
    again = build_world(N_ADS, N_USERS, 0, engine=world.engine, knobs=KNOBS)
    assert again["unchanged"] is True
    volatile = ("unchanged", "seconds", "stage_seconds")
    assert {k: v for k, v in again.items() if k not in volatile} == {k: v for k, v in world.summary.items() if k not in volatile}
    assert world.rows("SELECT count(*), max(id) FROM impressions") == before
    assert world.rows("SELECT count(*) FROM import_runs WHERE kind = 'demo'") == [(1,)]


def test_same_seed_same_world(worlds):
    a, b = worlds
    assert a.summary["unchanged"] is False and b.summary["unchanged"] is False
    a.enter()
    fa = _fingerprint(a)
    b.enter()
    fb = _fingerprint(b)
    for key in fa:
        assert fa[key] == fb[key], key


def test_new_seed_replaces_only_demo_rows_and_failure_changes_nothing(worlds, monkeypatch):
    from core.store import Ad, Category, ImportRun, Impression, User, session_scope

    _, b = worlds
    b.enter()
    seed0 = _fingerprint(b)
    with session_scope(b.engine) as s:  # rows of another source must survive a demo rebuild
        s.add(Category(id=9999, name="manifest-shoes", source="manifest"))
        s.add(Ad(id="m-1", text="x", image_path="images/x.jpg", image_hash="0" * 64, content_hash="0" * 64, width=1,
                 height=1, category_id=9999, source="manifest"))
        s.add(User(id="m-user", source="manifest"))
        s.flush()
        s.add(Impression(user_id="m-user", ad_id="m-1", ts=datetime(2026, 1, 1), clicked=True))
        s.add(Impression(user_id="u000001", ad_id="m-1", ts=datetime(2026, 1, 2), clicked=False))

    summary = build_world(N_ADS, N_USERS, 1, engine=b.engine, knobs=KNOBS, force=True)  # it holds imported ads
    assert summary["unchanged"] is False and summary["ads"] == N_ADS
    seed1 = _fingerprint(b)
    texts0 = {r[0]: r[1] for r in seed0["ads"]}
    texts1 = {r[0]: r[1] for r in seed1["ads"]}
    assert sum(texts0[k] != texts1[k] for k in texts0) > 0.9 * N_ADS
    assert {r[4] for r in seed0["ads"]}.isdisjoint({r[4] for r in seed1["ads"]})
    assert seed0["clicks"] != seed1["clicks"]
    with session_scope(b.engine) as s:
        assert s.scalar(select(func.count()).select_from(Ad).where(Ad.source == "demo")) == N_ADS
        assert s.get(Ad, "m-1") is not None and s.get(Category, 9999) is not None and s.get(User, "m-user") is not None
        # impressions of demo users are demo rows (removed); the manifest user's impression stays
        assert s.scalar(select(func.count()).select_from(Impression).where(Impression.ad_id == "m-1")) == 1
        runs = s.scalars(select(ImportRun).where(ImportRun.kind == "demo")).all()
        assert len(runs) == 1 and json.loads(runs[0].source)["params"]["seed"] == 1

    # a failure in the middle of the database write changes nothing
    import core.demo.store as demo_store

    real = demo_store._insert_impressions

    def broken(conn, log, *args, **kwargs):
        real(conn, log, *args, **kwargs)
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(demo_store, "_insert_impressions", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        build_world(120, 600, 2, engine=b.engine, knobs=DemoKnobs(n_categories=12), force=True)
    assert _fingerprint(b) == seed1


def test_bad_sizes_give_clear_messages(engine):
    with pytest.raises(ValueError, match="too few"):
        build_world(20, 2000, 0, engine=engine, knobs=DemoKnobs(n_categories=24))
    with pytest.raises(ValueError, match="at least"):
        build_world(240, 10, 0, engine=engine)
    with pytest.raises(ValueError, match="product_scale"):
        build_world(240, 2000, 0, engine=engine, knobs=DemoKnobs(product_scale=(0.5, 0.1)))
    from typer.testing import CliRunner

    from core.cli import app

    result = CliRunner().invoke(app, ["demo", "--ads", "5", "--json"])
    assert result.exit_code != 0
    assert json.loads(result.stdout)["ok"] is False and "too few" in json.loads(result.stdout)["error"]


def test_category_name_clash_with_other_source_is_refused(engine):
    from core.demo import plan_world, resolve_knobs
    from core.store import Category, session_scope

    knobs = resolve_knobs(30, DemoKnobs(n_categories=8, n_packages=2))
    taken = plan_world(30, 0, knobs).categories[0].name
    with session_scope(engine) as s:
        s.add(Category(name=taken, source="manifest"))
    with pytest.raises(ValueError, match=f"already use these names: {taken}"):
        build_world(30, 60, 0, engine=engine, knobs=knobs)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Category)) == 1


def test_product_judgement_set_reads_the_ground_truth(world, tmp_path):
    from typer.testing import CliRunner

    from core.cli import app
    from core.demo.judgements import product_judgements
    from core.matching.triples import read_judgements

    truth = {ad_id: (json.loads(t), cat) for ad_id, t, cat in world.rows(
        "SELECT a.id, a.truth, c.name FROM ads a JOIN categories c ON c.id = a.category_id WHERE a.split = 'test'")}
    rows = product_judgements(split="test", seed=0)
    assert {r["ad_id"] for r in rows} == set(truth)
    for r in rows:
        t, cat = truth[r["ad_id"]]
        in_picture = {o["category"] for o in t["objects"]}
        if r["kind"] == "product":
            assert r["label"] == 1 and r["phrase"] == cat
        elif r["kind"] == "distractor":
            assert r["label"] == 0 and r["phrase"] in in_picture and r["phrase"] != cat
        else:
            assert r["kind"] == "absent" and r["label"] == 0 and r["phrase"] not in in_picture
    assert sum(r["kind"] == "product" for r in rows) == len(truth) and any(r["kind"] == "distractor" for r in rows)
    out = tmp_path / "judged.csv"
    result = CliRunner().invoke(app, ["demo-judgements", "--out", str(out), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["rows"] == len(rows)
    judged = read_judgements(out)  # what evaluate-matching --judgements reads
    assert len(judged.triples) == len(rows) and sum(t.label for t in judged.triples) == len(truth)
    bad = CliRunner().invoke(app, ["demo-judgements", "--out", str(out), "--split", "holdout", "--json"])
    assert bad.exit_code == 2


def _stored_world(engine) -> dict:
    """The demo rows as Python values (JSON parsed, timestamps as datetimes), comparable across backends."""
    from core.store import Ad, Category, Impression, Package, PackageAd, User, session_scope

    with session_scope(engine) as s:
        return {
            "categories": sorted((c.name, c.name_zh, c.unseen, c.meta.get("demo_index")) for c in s.scalars(select(Category))),
            "ads": sorted((a.id, a.text, a.split, a.image_hash, a.category.name, json.dumps(a.truth, sort_keys=True))
                          for a in s.scalars(select(Ad))),
            "users": sorted((u.id, json.dumps(u.features, sort_keys=True), json.dumps(u.truth, sort_keys=True))
                            for u in s.scalars(select(User))),
            "clicks": sorted(tuple(r) for r in s.execute(select(Impression.user_id, Impression.ad_id, Impression.ts,
                                                                Impression.clicked))),
            "packages": sorted(tuple(r) for r in s.execute(select(Package.name, PackageAd.ad_id).join(PackageAd))),
        }


@pytest.mark.both_backends
def test_tiny_world_round_trip_rebuild_and_failure(engine, db_backend, tmp_path, monkeypatch):
    """The demo world through each backend: stored as generated, a no-op rebuild, a seed change, a failed write."""
    import core.demo.store as demo_store
    from core.catalog import stats
    from core.store import Category, ImportRun, session_scope

    knobs = DemoKnobs(n_categories=8, n_packages=2, n_unseen_packages=1, impressions_per_ad=20)
    summary = build_world(40, 60, 0, engine=engine, knobs=knobs)
    db = stats(engine)
    assert (db["ads"], db["users"], db["categories"]) == (40, 60, 8)
    assert db["impressions"] == summary["impressions"] > 0 and db["clicks"] == summary["clicks"]
    first = _stored_world(engine)
    assert len(first["packages"]) >= 4 and all(isinstance(ts, datetime) for _, _, ts, _ in first["clicks"])
    if db_backend == "postgresql":  # the same world as SQLite stores, row for row
        from core.store import get_engine
        from core.store.db import dispose_engine

        twin = f"sqlite:///{tmp_path / 'twin.sqlite'}"
        try:
            build_world(40, 60, 0, engine=get_engine(twin), knobs=knobs)
            assert _stored_world(get_engine(twin)) == first
        finally:
            dispose_engine(twin)

    again = build_world(40, 60, 0, engine=engine, knobs=knobs)
    assert again["unchanged"] is True and _stored_world(engine) == first

    with session_scope(engine) as s:  # a category of another source survives a rebuild
        s.add(Category(name="manifest-shoes", source="manifest"))
    second = build_world(40, 60, 1, engine=engine, knobs=knobs)
    assert second["unchanged"] is False
    stored = _stored_world(engine)
    assert stored["clicks"] != first["clicks"] and ("manifest-shoes", None, False) in [c[:3] for c in stored["categories"]]
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(ImportRun).where(ImportRun.kind == "demo")) == 1

    def broken(conn, log, *args, **kwargs):
        real(conn, log, *args, **kwargs)
        raise RuntimeError("disk full (simulated)")

    real = demo_store._insert_impressions
    monkeypatch.setattr(demo_store, "_insert_impressions", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        build_world(40, 60, 2, engine=engine, knobs=knobs)
    assert _stored_world(engine) == stored
