"""Pages with a large catalogue (issue 15): the ad picker, the Catalog listing and the embedding map stay bounded.

A 20,000-ad catalogue is bulk-inserted (rows only: listing needs no image). Instead of timing, the tests count what
the database returns: every statement the code under test runs is recorded (SQLAlchemy ``after_cursor_execute``) and
run again afterwards to count its rows, so "bounded" means a number of rows that does not grow with the catalogue.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from sqlalchemy import event, insert
from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT

N_ADS = 20_000
N_CATEGORIES = 20
CATALOG_PAGE = str(REPO_ROOT / "app_pages" / "1_Catalog.py")
ROW_BOUND = 200  # rows any one page run may fetch from a 20,000-ad catalogue (a page of 48 ads plus counts and names)


def ad_id(i: int) -> str:
    return f"ad-{i:06d}"


@pytest.fixture
def big_catalog(db_engine):
    """N_ADS ads in N_CATEGORIES categories, inserted in one executemany (no image files: only listing is tested)."""
    from core.store import Ad, Category, session_scope

    with session_scope(db_engine) as s:
        s.execute(insert(Category), [{"id": c + 1, "name": f"category {c:02d}", "unseen": c == 0, "source": "manifest"}
                                     for c in range(N_CATEGORIES)])
        s.execute(insert(Ad), [{"id": ad_id(i), "text": f"{'sparkling water' if i % 1000 == 7 else 'plain item'} number {i}",
                                "lang": "en", "image_path": f"images/{i}.png", "image_hash": f"{i:064d}", "content_hash": f"{i:064d}",
                                "width": 64, "height": 64, "category_id": i % N_CATEGORIES + 1,
                                "split": ("train", "val", "test")[i % 3], "source": "manifest", "truth": {}} for i in range(N_ADS)])
    return db_engine


class Statements:
    """The statements run on an engine while recording, and (afterwards) how many rows each returns."""

    def __init__(self, engine):
        self.engine = engine
        self.seen: list[tuple[str, object]] = []

    def _record(self, conn, cursor, statement, parameters, context, executemany):  # noqa: ARG002 - SQLAlchemy's signature
        if statement.lstrip().upper().startswith("SELECT"):
            self.seen.append((statement, parameters))

    def rows(self) -> list[int]:
        with self.engine.connect() as conn:
            return [len(conn.exec_driver_sql(sql, params).fetchall()) for sql, params in self.seen]

    def touching_ads(self) -> list[str]:
        return [sql for sql, _ in self.seen if "FROM ads" in sql]


@contextmanager
def recording(engine) -> Iterator[Statements]:
    stmts = Statements(engine)
    event.listen(engine, "after_cursor_execute", stmts._record)
    try:
        yield stmts
    finally:
        event.remove(engine, "after_cursor_execute", stmts._record)


def test_the_counter_can_fail(big_catalog):
    """The measure itself sees an unbounded listing: every ad returned by one statement."""
    from core.catalog import list_ads

    with recording(big_catalog) as stmts:
        records, total = list_ads(limit=N_ADS, engine=big_catalog)
    assert total == N_ADS and len(records) == N_ADS
    assert max(stmts.rows()) == N_ADS


def test_search_ads_is_two_bounded_queries(big_catalog):
    from core.catalog import search_ads

    with recording(big_catalog) as stmts:
        first = search_ads("", limit=50, engine=big_catalog)
    assert [a["id"] for a in first] == [ad_id(i) for i in range(50)]  # by id
    assert len(stmts.seen) == 1 and stmts.rows() == [50]
    with recording(big_catalog) as stmts:
        water = search_ads("sparkling", limit=50, engine=big_catalog)
    assert [a["id"] for a in water] == [ad_id(i) for i in range(7, N_ADS, 1000)]  # the 20 ads whose text says it
    assert max(stmts.rows()) <= 50
    exact = search_ads(ad_id(12345), limit=5, engine=big_catalog)
    assert exact[0]["id"] == ad_id(12345) and len(exact) == 1
    assert exact[0]["category"] == f"category {12345 % N_CATEGORIES:02d}"
    by_category = search_ads("category 03", limit=10, engine=big_catalog)
    assert [a["id"] for a in by_category] == [ad_id(i) for i in range(3, 400, N_CATEGORIES)][:10]
    assert search_ads("no such words", engine=big_catalog) == []


def test_catalog_listing_pages_with_limit_and_offset(big_catalog):
    from core.catalog import AdFilter, count_ads, list_ads

    with recording(big_catalog) as stmts:
        records, total = list_ads(AdFilter(splits=["test"]), limit=48, offset=6624, engine=big_catalog)
    test_ads = [ad_id(i) for i in range(N_ADS) if i % 3 == 2]
    assert total == len(test_ads) == 6666 and [r["id"] for r in records] == test_ads[6624:]
    assert len(stmts.seen) == 2 and sorted(stmts.rows()) == [1, 42]  # the COUNT, then one page
    assert all("LIMIT" in sql.upper() or "COUNT(" in sql.upper() for sql in stmts.touching_ads())
    assert count_ads(AdFilter(categories=["category 00"], unseen_only=True), engine=big_catalog) == N_ADS // N_CATEGORIES
    with recording(big_catalog) as stmts:  # the Catalog page counts once (count_ads), then fetches the page alone
        records, total = list_ads(AdFilter(text="sparkling"), limit=48, engine=big_catalog, count=False)
    assert total == -1 and len(records) == 20 and len(stmts.seen) == 1


def _run(what) -> AppTest:
    """Run an AppTest, or the AppTest of a widget just changed."""
    at = what.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_catalog_page_fetches_one_page_of_a_large_catalogue(big_catalog):
    at = AppTest.from_file(CATALOG_PAGE, default_timeout=90)
    with recording(big_catalog) as stmts:
        _run(at)
    assert any(f"of {N_ADS:,} ads" in str(c.value) for c in at.caption)
    assert sum(1 for b in at.button if b.key and b.key.startswith("open-")) == 48
    assert max(stmts.rows()) <= 48 and sum(stmts.rows()) <= ROW_BOUND
    with recording(big_catalog) as stmts:  # a search in the sidebar: still one page of rows
        _run(at.sidebar.text_input(key="f_text").input("sparkling"))
    assert any("of 20 ads" in str(c.value) for c in at.caption)
    assert sum(stmts.rows()) <= ROW_BOUND


def picker_page():
    import streamlit as st

    from ui.adpicker import pick_ad

    chosen = pick_ad("t_ad", pending=st.session_state.pop("t_pending", None))
    st.markdown(f"chosen: {chosen}")


def _chosen(at: AppTest) -> str:
    return next(str(m.value) for m in at.markdown if str(m.value).startswith("chosen:")).removeprefix("chosen: ")


def test_the_picker_searches_instead_of_listing(big_catalog):
    at = AppTest.from_function(picker_page, default_timeout=60)
    with recording(big_catalog) as stmts:
        _run(at)
    box = at.selectbox(key="t_ad")
    assert len(box.options) == 50 and box.value == ad_id(0) and _chosen(at) == ad_id(0)
    assert f"{N_ADS:,} in the catalog" in box.label
    assert sum(stmts.rows()) <= ROW_BOUND  # the catalog stats (counts, group-bys) and 50 matches, never 20,000 ads
    with recording(big_catalog) as stmts:  # a search: its matches, the first one chosen
        _run(at.text_input(key="t_ad_find").input("sparkling"))
    box = at.selectbox(key="t_ad")
    assert len(box.options) == 20 and box.value == ad_id(7)
    assert "sparkling water" in box.format_func(box.value)
    assert sum(stmts.rows()) <= ROW_BOUND
    _run(at.selectbox(key="t_ad").set_value(ad_id(3007)))
    assert _chosen(at) == ad_id(3007)
    # a choice made elsewhere (a point on the map) that the search does not list is selected, and listed first
    at.session_state["t_pending"] = ad_id(19_999)
    _run(at)
    box = at.selectbox(key="t_ad")
    assert box.value == ad_id(19_999) and box.options[0].startswith(f"{ad_id(19_999)} — ") and len(box.options) == 51
    assert at.text_input(key="t_ad_find").value == ""  # the search that hid it is cleared


def test_the_picker_starts_at_the_url_ad_and_says_when_it_is_unknown(big_catalog):
    at = AppTest.from_function(picker_page, default_timeout=60)
    at.query_params["ad"] = f" {ad_id(15_000)} "
    _run(at)
    assert _chosen(at) == ad_id(15_000)
    other = AppTest.from_function(picker_page, default_timeout=60)
    other.query_params["ad"] = "no-such-ad"
    _run(other)
    assert _chosen(other) == ad_id(0)
    assert any("There is no ad with id “no-such-ad”" in str(w.value) for w in other.warning)
    _run(other.text_input(key="t_ad_find").input("nothing says this"))
    assert _chosen(other) == "None" and any("No ad's id, text or category contains" in str(w.value) for w in other.warning)


# ---------------------------------------------------------------- the embedding map


@pytest.fixture
def indexed_run(engine):
    """A finished 'image' run whose index holds 20,000 clustered vectors (the ads are not needed for the map's coordinates)."""
    from core.retrieval.index import write_run_index
    from core.runs import record_run, update_run

    rng = np.random.default_rng(3)
    centres = rng.normal(size=(N_CATEGORIES, 16)) * 4
    vectors = (centres[np.arange(N_ADS) % N_CATEGORIES] + rng.normal(size=(N_ADS, 16))).astype(np.float32)
    ids = [ad_id(i) for i in range(N_ADS)]
    run_id = record_run("image", "scale map", {}, metrics={}, engine=engine)
    _, rel = write_run_index(run_id, "image", ids, ["x"] * N_ADS, vectors)
    update_run(run_id, engine=engine, index_path=rel)
    return run_id, ids, vectors


def _neighbours(ids: list[str], vectors: np.ndarray, query: str, k: int) -> list[str]:
    q = vectors[ids.index(query)]
    return [ids[i] for i in np.argsort(((vectors - q) ** 2).sum(1), kind="stable")[:k]]


def test_the_map_is_a_seeded_sample_that_always_holds_the_query_neighbourhood(indexed_run):
    from core.retrieval.projection import MAP_POINTS, embedding_map, project_sample

    run_id, ids, vectors = indexed_run
    base = project_sample(run_id, "pca")
    assert len(base["ids"]) == MAP_POINTS and base["total"] == N_ADS
    assert project_sample(run_id, "pca")["ids"] == base["ids"]  # seeded: the same sample every time
    assert project_sample(run_id, "pca", seed=1)["ids"] != base["ids"]
    outside = next(a for a in ids if a not in set(base["ids"]))
    focus = _neighbours(ids, vectors, outside, 13)
    data = embedding_map(run_id, "pca", focus=focus, base=base)
    missing = [a for a in focus if a not in set(base["ids"])]
    assert missing and len(data["ids"]) == MAP_POINTS + len(missing) <= MAP_POINTS + 13
    flagged = {a for a, f in zip(data["ids"], data["focus"], strict=True) if f}
    assert flagged == set(focus)
    # an added ad sits where the fitted PCA puts it: the same place as if it had been in the sample
    pos = data["ids"].index(outside)
    centred = vectors[ids.index(outside)] - base["pca_mean"]
    assert (data["x"][pos], data["y"][pos]) == pytest.approx(tuple(centred @ base["pca_components"].T), abs=1e-4)
    assert embedding_map(run_id, "pca", base=base)["ids"] == base["ids"]  # no focus: the sample alone


def test_tsne_places_added_ads_among_their_nearest_sampled_ads(indexed_run):
    from core.retrieval.projection import embedding_map, place, project_sample

    run_id, ids, vectors = indexed_run
    base = project_sample(run_id, "tsne", limit=300)
    assert len(base["ids"]) == 300
    sampled = base["ids"][5]
    assert tuple(place(base, vectors[ids.index(sampled)])[0]) == pytest.approx(tuple(base["xy"][5]), abs=1e-3)
    outside = next(a for a in ids if a not in set(base["ids"]))
    data = embedding_map(run_id, "tsne", focus=[outside], base=base)
    assert data["ids"][-1] == outside and data["focus"][-1] and sum(data["focus"]) == 1
    xy = np.c_[data["x"][:-1], data["y"][:-1]]
    same = [i for i, a in enumerate(base["ids"]) if int(a[3:]) % N_CATEGORIES == int(outside[3:]) % N_CATEGORIES]
    here = np.array([data["x"][-1], data["y"][-1]])
    assert np.linalg.norm(xy[same] - here, axis=1).mean() < np.linalg.norm(xy - here, axis=1).mean()  # among its own cluster
