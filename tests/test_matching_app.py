"""End to end on a tiny catalog: train / store / load every scorer, match, evaluate, the CLI, and the Phrase match page."""

from __future__ import annotations

import json

import pytest
import torch
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from core.config import REPO_ROOT
from tests.matching_world import build_catalog, use_colour_detector

PAGE = str(REPO_ROOT / "app_pages" / "7_Phrase_match.py")
TINY_LXMERT = {"l_layers": 1, "x_layers": 1, "r_layers": 1}
torch.set_num_threads(1)


@pytest.fixture
def catalog(engine, monkeypatch):
    build_catalog(engine)
    use_colour_detector(monkeypatch)
    return engine


def _cli(*args: str):
    from core.cli import app

    result = CliRunner().invoke(app, list(args))
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    return result.exit_code, (json.loads(lines[-1]) if lines else None), result.output


def _page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_train_match_evaluate_cli_and_page(catalog, home, tmp_path):
    from core.matching.service import evaluate_matching, latest_matchers, match, train_matcher
    from core.store import ModelRun, session_scope

    at = _page()  # nothing trained: the page says so and how to train
    assert any("train-matcher" in str(df.value.to_dict()) for df in at.dataframe)

    lx = train_matcher("lxmert", engine=catalog, options=TINY_LXMERT, max_steps=3, epochs=1)
    assert lx["variant"].startswith("offline LXMERT-small") and "no network" in lx["reason"]
    assert lx["triples"]["train"]["triples"] > 0 and (home / lx["checkpoint"]).is_file()
    for name in ("clip", "ion"):
        out = train_matcher(name, engine=catalog, epochs=1, max_steps=5)
        assert out["ok"] and out["run_id"] > 0
    code, early, _ = _cli("train-matcher", "--scorer", "early", "--epochs", "2", "--json")
    assert code == 0 and early["scorer"] == "early" and early["checkpoint"].startswith("runs/matcher-early-")
    assert early["metrics"]["train_loss_after"] < early["metrics"]["train_loss_before"]
    with session_scope(catalog) as s:
        kinds = sorted(r.kind for r in s.query(ModelRun).all())
    assert kinds == ["matcher-clip", "matcher-early", "matcher-ion", "matcher-lxmert"]
    assert set(latest_matchers(catalog)) == {"lxmert", "clip", "early", "ion"}

    result = match(["fruit", "鞋子"], ["apples-0", "ties-1", "sneakers-2"], engine=catalog)
    for name in ("lxmert", "clip", "early", "ion"):
        assert len(result["scores"][name]) == 2 and len(result["scores"][name][0]) == 3
        assert all(0 <= v <= 1 for row in result["scores"][name] for v in row)
    assert result["variants"]["clip"]["variant"].startswith("offline CLIP-style")
    code, out, _ = _cli("match", "--phrase", "fruit", "--ads", "apples-0", "--ads", "ties-0", "--scorer", "early", "--json")
    assert code == 0 and list(out["scores"]) == ["early"] and out["missing"] == []
    code, out, _ = _cli("match", "--phrase", "fruit", "--ads", "nope", "--json")
    assert code == 2 and "unknown ad id" in out["error"]
    code, out, _ = _cli("train-matcher", "--scorer", "bert", "--json")
    assert code == 2 and "unknown scorer" in out["error"]

    ev = evaluate_matching(engine=catalog, n_boot=100)
    train_phrases = set().union(*(set(i["train_phrases"]) for i in latest_matchers(catalog).values()))
    assert ev["triples"] > 0 and ev["phrases"] > 0
    for name, row in ev["table"].items():
        assert 0 <= row["ci95"][0] <= row["auc"] <= row["ci95"][1] <= 1, name
        groups = ev["scorers"][name]["groups"]  # split by seen / held-out category and language; no ground truth: no ceiling
        assert groups["all"]["auc"] == pytest.approx(row["auc"], abs=1e-4) and "held-out" in groups and "en" in groups
    assert ev["ceiling"] is None
    assert "grapes" not in train_phrases  # unseen category phrases never trained on
    judged = tmp_path / "judged.csv"
    judged.write_text("phrase,ad_id,label\nred fruit,apples-4,1\nred fruit,apples-5,1\nred fruit,ties-4,0\nred fruit,boots-5,0\n",
                      encoding="utf-8")
    code, out, _ = _cli("evaluate-matching", "--judgements", str(judged), "--bootstrap", "100", "--json")
    assert code == 0 and out["triples"] == 4 and out["set"] == "judgements:judged.csv"
    bad = tmp_path / "bad.csv"
    bad.write_text("phrase,ad_id,label\nred fruit,nope,1\n", encoding="utf-8")
    code, out, text = _cli("evaluate-matching", "--judgements", str(bad), "--json")
    assert code == 1 and out["errors"][0]["row"] == 2

    at = _page()  # trained + evaluated: scores, heatmap, best creatives, attention, ROC curves
    at.text_area(key="pm_phrases").set_value("fruit\nshoes").run()
    at.number_input(key="pm_limit").set_value(6).run()
    at.button(key="pm_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) >= 3  # heatmap + ROC + reliability
    assert at.selectbox(key="pm_att_phrase").options == ["fruit", "shoes"]
    assert any("P(relevant)" in c.value for c in at.caption)
    frames = [df.value for df in at.dataframe]
    panel = next(f for f in frames if "variant" in f.columns and "why" in f.columns)
    assert panel["variant"].str.startswith("offline LXMERT-small").any() and panel["run"].notna().all()
    table = next(f for f in frames if "AUC" in f.columns)
    assert sorted(table["scorer"]) == ["CLIP", "Early fusion", "ION", "LXMERT"]
    by_group = next(f for f in frames if {"all", "seen", "en"} <= set(f.columns))  # AUC per kind of pair (no ground truth: no ceiling)
    assert sorted(by_group.index) == ["CLIP", "Early fusion", "ION", "LXMERT"]
    assert ((table["AUC"] >= 0) & (table["AUC"] <= 1)).all()
    words = next(f for f in frames if any(str(c).startswith("r0") for c in f.columns))  # LXMERT word-to-region attention
    assert len(words.columns) == 2 and abs(float(words.iloc[0].sum()) - 1.0) < 1e-3
    # one view per scorer that can say what it looked at; ION's says that it reads the ad text
    assert {"LXMERT", "CLIP", "Early fusion", "ION"} <= {t.label for t in at.tabs}
    assert any("reads the ad text" in c.value for c in at.caption)


def test_a_matcher_run_shows_while_it_trains_and_cancel_stops_it(catalog):
    import time

    from core.matching.service import train_matcher
    from core.runs import RunCancelled, list_runs, request_cancel

    seen = []

    def progress(done, total, message):
        active = [r for r in list_runs("matcher-early") if r["status"] in ("running", "cancelling")]
        seen.append((active[0]["status"], active[0]["message"]) if active else None)
        if len(seen) == 1:  # the row exists before any creative is loaded: the page can show it at once
            request_cancel(active[0]["id"])
            time.sleep(0.6)  # the job reads its row at most every 0.5 s

    with pytest.raises(RunCancelled):
        train_matcher("early", engine=catalog, epochs=50, progress=progress)
    run = list_runs("matcher-early")[0]
    assert seen[0][0] == "running" and run["status"] == "cancelled" and run["checkpoint_path"] is None
    assert len(seen) <= 3  # it stopped at the next report, not at the end of 50 epochs


def test_phrase_match_trains_from_the_page_and_checks_before_detecting(catalog, monkeypatch):
    from pathlib import Path

    from core import jobs
    from core.demo.models import stage_for_kind

    started = []
    monkeypatch.setattr(jobs, "start_command", lambda args, label: started.append((list(args), label)) or (4321, Path("x.log")))
    at = _page()
    at.button(key="pm_go").click().run()  # nothing trained: it says so at once (no detection first)
    assert not at.exception
    assert any("No scorer is trained yet" in w.value for w in at.warning)
    at.selectbox(key="pm_train_scorer").set_value("clip").run()
    at.button(key="pm_train_go").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert started and started[0][0] == list(stage_for_kind("matcher-clip").args) and started[0][1].startswith("matcher-clip-")


def test_evaluation_of_a_chosen_run_and_the_ion_scorer_over_a_chosen_ion_run(catalog):
    from core.matching.service import evaluate_matching, train_matcher

    first = train_matcher("clip", engine=catalog, epochs=1, max_steps=2)["run_id"]
    second = train_matcher("clip", engine=catalog, epochs=1, max_steps=2, seed=1)["run_id"]
    assert second > first
    newest = evaluate_matching(engine=catalog, n_boot=50, scorers=["clip"])
    pinned = evaluate_matching(engine=catalog, n_boot=50, scorers=["clip"], runs={"clip": first})
    assert newest["scorers"]["clip"]["run_id"] == second and pinned["scorers"]["clip"]["run_id"] == first
    with pytest.raises(ValueError, match="not a finished early scorer"):
        evaluate_matching(engine=catalog, n_boot=50, scorers=["early"], runs={"early": first})
    code, out, _ = _cli("evaluate-matching", "--scorer", "clip", "--run", f"clip={first}", "--bootstrap", "50", "--json")
    assert code == 0 and out["scorers"]["clip"]["run_id"] == first
    with pytest.raises(ValueError, match="not a finished ION run"):
        train_matcher("ion", engine=catalog, epochs=1, options={"ion_run": first})
