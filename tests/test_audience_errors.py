"""Bad input to audience expansion: a clear message, and nothing stored (no run row, no audience file)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from audience_world import OCT, SEPT, build_world
from sqlalchemy import func, insert, select, update

from core.audience import (
    AudienceError,
    ExpansionConfig,
    FeatureError,
    NoClickersError,
    NoImpressionsError,
    NotFoundError,
    SimilarAdsError,
    make_retriever,
    run_all_packages,
    run_expansion,
)
from core.store import Ad, ExpansionRun, Impression, Package, PackageAd, User, session_scope

FAST = {"n_estimators": 10, "n_jobs": 1}


def _package(s, name: str, ad_ids: list[str]) -> int:
    pkg = Package(name=name, source="test")
    s.add(pkg)
    s.flush()
    s.add_all([PackageAd(package_id=pkg.id, ad_id=a) for a in ad_ids])
    return pkg.id


def _events(user_ids, ad_id, start: datetime, clicked: bool) -> list[dict]:
    return [{"user_id": u, "ad_id": ad_id, "ts": start + timedelta(hours=i + 1), "clicked": clicked} for i, u in enumerate(user_ids)]


@pytest.fixture
def odd_world(engine):
    """The small generated world plus packages that break one rule each."""
    build_world(engine, n_users=600, n_categories=2, ads_per_category=6, package_imps=300, other_imps=300, ctr=0.05, package_ctr=0.05)
    users = [f"u{i:05d}" for i in range(40)]
    ads = [{"id": f"z{i}", "text": "odd ad", "image_path": "images/none.png", "image_hash": f"z{i}", "content_hash": f"z{i}",
            "width": 1, "height": 1, "category_id": 1, "source": "test"} for i in range(4)]
    with session_scope(engine) as s:
        s.execute(insert(Ad), ads)
        s.execute(insert(User), [{"id": f"nf{i}", "features": {}, "source": "test", "truth": {}} for i in range(5)])
        s.execute(insert(Impression), _events(users, "z0", SEPT, False) + _events(users, "z0", OCT, False)  # no clicks
                  + _events(users[:10], "z2", SEPT, True) + _events(users[10:30], "z2", SEPT, False)  # nothing in P'
                  + _events([f"nf{i}" for i in range(5)], "z3", SEPT, True)  # clickers without features
                  + _events(users[10:30], "z3", SEPT, False) + _events(users[:30], "z3", OCT, False))
        ids = {"no_clicks": _package(s, "no clicks", ["z0"]), "no_impressions": _package(s, "never shown", ["z1"]),
               "no_later": _package(s, "not shown in P'", ["z2"]), "no_features": _package(s, "faceless", ["z3"]),
               "empty": _package(s, "empty", [])}
    return engine, ids


def _stored(engine, home) -> tuple[int, int]:
    with session_scope(engine) as s:
        rows = s.scalar(select(func.count()).select_from(ExpansionRun))
    files = len(list((home / "audiences").glob("*"))) if (home / "audiences").exists() else 0
    return rows, files


@pytest.mark.parametrize(("case", "error", "needle"), [
    ("no_clicks", NoClickersError, "0 clicker(s) in the training period"),
    ("no_impressions", NoImpressionsError, "no impressions in the training period"),
    ("no_later", NoImpressionsError, "no impressions in the later period"),
    ("no_features", FeatureError, "have no features (e.g. nf0, nf1"),
    ("empty", AudienceError, "holds no ads"),
])
def test_bad_packages_are_refused_with_a_reason(odd_world, home, case, error, needle):
    engine, ids = odd_world
    with pytest.raises(error) as info:
        run_expansion(ids[case], make_retriever("random", engine=engine), ExpansionConfig(similar=3, **FAST), engine=engine)
    assert needle in str(info.value)
    assert _stored(engine, home) == (0, 0)


def test_missing_ids_and_impossible_requests(odd_world, home):
    engine, _ = odd_world
    oracle = make_retriever("oracle", engine=engine)
    with pytest.raises(NotFoundError, match="package 999 does not exist") as info:
        run_expansion(999, oracle, ExpansionConfig(**FAST), engine=engine)
    assert str(info.value) == "package 999 does not exist"  # a KeyError, but not printed quoted
    with pytest.raises(SimilarAdsError, match="asked for 50 similar ads but the catalog holds only 14"):
        run_expansion(1, oracle, ExpansionConfig(similar=50, **FAST), engine=engine)
    with pytest.raises(NotFoundError, match="model run 7 does not exist"):
        make_retriever("model", engine=engine, model_run_id=7)
    with pytest.raises(SimilarAdsError, match="needs a model run id"):
        make_retriever("model", engine=engine)
    with pytest.raises(AudienceError, match="negative ratio must be in"):
        run_expansion(1, oracle, ExpansionConfig(ratio=-1, **FAST), engine=engine)
    with pytest.raises(AudienceError, match="audience sizes must be fractions"):
        run_expansion(1, oracle, ExpansionConfig(audience_sizes=(5.0,), **FAST), engine=engine)
    with pytest.raises(AudienceError, match="outside the log"):
        run_expansion(1, oracle, ExpansionConfig(split_at=datetime(2030, 1, 1), **FAST), engine=engine)
    assert _stored(engine, home) == (0, 0)


def test_all_packages_skips_the_bad_ones_with_their_reason(odd_world, home):
    engine, ids = odd_world
    table = run_all_packages([make_retriever("oracle", engine=engine)], ExpansionConfig(similar=3, store=False, **FAST),
                             engine=engine)
    skipped = {s["package_id"] for s in table.skipped}
    assert skipped == set(ids.values())
    assert table.rows[0]["packages"] == 2 and len(table.per_package) == 2
    assert _stored(engine, home) == (0, 0)


def test_unencodable_feature_values_are_named(odd_world, home):
    engine, _ = odd_world
    with session_scope(engine) as s:
        s.execute(update(User).where(User.id == "u00003").values(features={"city": ["a", "b"], "age": "age1"}))
    with pytest.raises(FeatureError, match="feature 'city' of user u00003 is a list"):
        run_expansion(1, make_retriever("oracle", engine=engine), ExpansionConfig(similar=3, **FAST), engine=engine)
    assert _stored(engine, home) == (0, 0)


def test_a_failed_store_leaves_no_row_and_no_file(odd_world, home):
    from sqlalchemy.exc import IntegrityError

    from core.audience.store import save_run

    engine, _ = odd_world
    result = run_expansion(1, make_retriever("oracle", engine=engine), ExpansionConfig(similar=3, store=False, **FAST),
                           engine=engine)
    assert result.run_id is None and _stored(engine, home) == (0, 0)
    result.package_id = 12345  # no such package: the foreign key refuses the row
    with pytest.raises(IntegrityError):
        save_run(result, engine=engine)
    assert _stored(engine, home) == (0, 0)
    result.package_id = 1
    assert save_run(result, engine=engine) == result.run_id and _stored(engine, home) == (1, 1)
