"""The Similar ads, Evaluation and Attention pages under AppTest: empty database, and with a trained run."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT
from tests.retrieval_world import world

PAGES = {name: str(REPO_ROOT / "app_pages" / name) for name in ("3_Similar_ads.py", "4_Evaluation.py", "6_Attention.py")}


def _run(page: str) -> AppTest:
    at = AppTest.from_file(PAGES[page], default_timeout=90)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture
def w(tmp_path_factory, monkeypatch):
    return world(tmp_path_factory.getbasetemp(), monkeypatch)


@pytest.mark.parametrize("page", list(PAGES))
def test_pages_on_an_empty_database(home, engine, page):
    at = _run(page)
    text = " ".join(str(i.value) for i in at.info)
    assert ("No finished model run" in text) or ("No evaluated run yet" in text)


def test_similar_ads_page_with_a_run(w):
    at = _run("3_Similar_ads.py")
    assert any("nearest ads" in str(m.value) for m in at.markdown)
    assert any("Shared keywords" in str(m.value) for m in at.markdown)
    at.session_state["sim_pending"] = "demo-00050"  # what selecting that point on the map does
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="sim_ad").value == "demo-00050"
    at.selectbox(key="run").set_value(w["ion"])  # other tests may have added newer runs (a text baseline has no route)
    at.radio(key="sim_mode").set_value("Phrase").run()
    at.text_input(key="sim_phrase").input("fresh").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("nearest ads" in str(m.value) for m in at.markdown)
    assert any("matched to the ads whose texts say the same" in str(c.value) for c in at.caption)  # the route is said


def test_evaluation_page_with_a_run_and_starting_a_job(w, monkeypatch):
    from core import jobs

    started = []
    monkeypatch.setattr(jobs, "start_training", lambda kind, ablate, options: started.append((kind, ablate, options)) or 999)
    at = _run("4_Evaluation.py")
    assert at.dataframe and at.multiselect(key="ev_runs").value
    at.selectbox(key="ev_kind").set_value("ion")
    at.multiselect(key="ev_ablate").set_value(["sca"])
    epochs = at.selectbox(key="ev_epochs")
    assert epochs.format_func(0).startswith("auto (") and epochs.format_func(0).endswith(" epochs)")  # what auto means, in words
    epochs.set_value(10)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert started and started[0][0] == "ion" and started[0][1] == ["sca"] and started[0][2]["epochs"] == 10


def test_attention_page_with_a_run(w):
    at = _run("6_Attention.py")
    assert any("Dual-path fusion" in str(s.value) for s in at.subheader)
    assert len(at.dataframe) >= 2
    at.selectbox(key="att_highlight").select_index(1).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="att_highlight").value.startswith("R")
    assert any("Columns are the kept regions" in str(c.value) for c in at.caption)


class _QuadrantDetector:
    """The retrieval world's stand-in regions as a detector, so the Regions page can use the world's ION run."""

    backend, version, device, feature_dim = "offline", "fake-quadrants/1", "cpu", 48

    def detect(self, images, *, conf=0.05, iou=0.5, max_det=50):  # noqa: ARG002
        from core.regions.base import DetectionResult
        from tests.retrieval_world import fake_image_regions

        out = []
        for image in images:
            r = fake_image_regions(image)
            out.append(DetectionResult(boxes=r.boxes, confidences=r.confidences, labels=r.labels, features=r.features,
                                       image_size=image.size, detector=self.version, backend="offline", device="cpu"))
        return out


def test_regions_page_reranks_with_a_trained_ion_run(w, monkeypatch):
    from core.regions import registry

    monkeypatch.setattr(registry, "get_detector", lambda *_a, **_k: registry.DetectorChoice(
        _QuadrantDetector(), "offline", "test stand-in", "cpu"))
    at = AppTest.from_file(str(REPO_ROOT / "app_pages" / "2_Regions.py"), default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]
    from core.runs import latest_done

    ion = latest_done("ion")["id"]  # the world's full ION (another module may have rebuilt the shared world and retrained it)
    assert at.sidebar.selectbox(key="r_scorer").value == ion  # ION's own SCA by default when there is a run
    assert any(f"Clue scorer: ION run #{ion}" in str(i.value) for i in at.info)
    assert not at.warning  # same detector as the run was trained with
    table = at.dataframe[0].value
    assert len(table) == 5 and (table["kept"] == "yes").sum() == 5  # k2 slider default 10 > 5 boxes
    at.sidebar.selectbox(key="r_scorer").set_value("zero-shot").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("Clue scorer: zero-shot" in str(i.value) for i in at.info)


def test_evaluation_page_shows_a_running_job_and_refreshes_only_while_asked(w):
    from core.runs import create_run, delete_run, start_run, update_run

    run_id = create_run("ion", "a job in progress", {"job": {"mode": "thread"}})
    assert start_run(run_id, "training")
    update_run(run_id, progress=0.4, message="train: epoch 4/10")
    try:
        at = AppTest.from_file(PAGES["4_Evaluation.py"], default_timeout=90)
        at.session_state["ev_refresh"] = False  # no timed re-runs inside the test
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any("Background jobs" in str(s.value) for s in at.subheader)
        assert at.toggle(key="ev_refresh").value is False
        assert any(f"#{run_id} a job in progress" in str(b.proto.text) for b in at.get("progress"))
        # the default comparison: one run per name, full models before ablations / variants
        from core.runs import get_run, is_variant

        chosen = [get_run(i) for i in at.multiselect(key="ev_runs").value]
        names = [r["name"] for r in chosen]
        assert chosen and len(names) == len(set(names))
        flags = [is_variant(r) for r in chosen]
        assert flags == sorted(flags)
    finally:
        update_run(run_id, status="failed", finished=True)
        delete_run(run_id)


def test_the_map_figure_is_the_cached_sample_plus_the_query_neighbourhood(w, monkeypatch):
    """The sampled map's figure is built once per run; the query and results outside the sample are added to it in
    their category's colour, and outlined."""
    import json

    from core.retrieval import projection

    monkeypatch.setattr(projection, "MAP_POINTS", 30)  # a sample that leaves most query neighbourhoods out
    at = AppTest.from_file(PAGES["3_Similar_ads.py"], default_timeout=90)
    at.session_state["sim_pending"] = "demo-00050"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    chart = next(c for c in at.get("plotly_chart") if "query and results" in c.proto.spec)
    traces = json.loads(chart.proto.spec)["data"]
    sampled = [t for t in traces if t.get("showlegend") is not False and t.get("name") != "query and results"]
    added = [t for t in traces if t.get("showlegend") is False]
    outline = next(t for t in traces if t.get("name") == "query and results")
    assert sum(len(t["customdata"]) for t in sampled) == 30 and len(added) == 1
    shown = {c[0] for t in (*sampled, *added) for c in t["customdata"]}
    assert {c[0] for c in outline["customdata"]} <= shown and "demo-00050" in shown  # every focus ad is on the map
    colours = {t["name"]: t["marker"]["color"] for t in sampled}
    assert set(added[0]["marker"]["color"]) <= {*colours.values(), "#9ca3af"}
