"""The Audience page under streamlit.testing.v1.AppTest."""

from __future__ import annotations

import pytest
from audience_world import build_world
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT
from core.store import ExpansionRun, Package, session_scope

PAGE = str(REPO_ROOT / "app_pages" / "5_Audience.py")


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_without_packages_says_what_to_do(home):
    at = _ok(AppTest.from_file(PAGE, default_timeout=60).run())
    assert any("No ad packages yet" in i.value for i in at.info)


@pytest.fixture
def small_world(engine):
    build_world(engine, n_users=1500, n_categories=2, ads_per_category=6, package_imps=1200, other_imps=1200, package_ctr=0.04)
    return engine


def test_run_expansion_shows_metrics_charts_ads_and_export(small_world):
    at = _ok(AppTest.from_file(PAGE, default_timeout=90).run())
    at.sidebar.slider(key="aud_trees").set_value(20)
    at.sidebar.slider(key="aud_similar").set_value(3)
    _ok(at.button(key="aud_go").click().run())
    with session_scope(small_world) as s:
        run = s.scalars(select(ExpansionRun)).one()
        assert run.config["n_estimators"] == 20 and run.config["similar"] == 3 and run.retrieval == "oracle"
    labels = {m.label: m.value for m in at.metric}
    assert labels["AUC initial"] == f"{run.metrics['auc_initial']:.3f}"
    assert labels["AUC expanded"] == f"{run.metrics['auc_expanded']:.3f}"
    assert labels["Positives"] == f"{run.metrics['positives_after']:,}"
    charts = at.get("plotly_chart")
    assert len(charts) >= 4
    users = round(0.05 * 1500)
    assert any(f"Download {users:,} users" in str(b.proto.label) for b in at.get("download_button"))
    # a second run with random ads; both can be compared
    at.sidebar.selectbox(key="aud_retriever").set_value("Random ads (baseline)")
    _ok(at.button(key="aud_go").click().run())
    with session_scope(small_world) as s:
        assert s.scalar(select(func.count()).select_from(ExpansionRun)) == 2
    compare = at.multiselect(key="aud_compare")
    assert set(compare.options) == {"1", "2"}
    _ok(compare.set_value([1, 2]).run())
    spec = at.get("plotly_chart")[-1].proto.spec
    assert "run 1" in spec and "run 2" in spec and spec.count("lines+markers") == 3  # initial + two expanded


def test_create_package_from_ads(small_world):
    at = _ok(AppTest.from_file(PAGE, default_timeout=60).run())
    at.text_area(key="aud_new_ids").set_value("c0a3\nc0a4")
    at.text_input(key="aud_new_name").set_value("my package")
    _ok(at.button(key="aud_new_go").click().run())
    assert any("created" in s.value for s in at.success)
    at.text_area(key="aud_new_ids").set_value("nope")
    at.text_input(key="aud_new_name").set_value("other")
    _ok(at.button(key="aud_new_go").click().run())
    assert any("unknown ad id(s): nope" in e.value for e in at.error)
    with session_scope(small_world) as s:
        assert s.scalar(select(func.count()).select_from(Package)) == 3
