"""Papers vs AdLens: each claim reads the stored runs, names them, and says agrees / does not agree / not measured."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT
from core.papers import AGREES, DISAGREES, NOT_MEASURED, compare

PAGE = str(REPO_ROOT / "app_pages" / "8_Papers_vs_AdLens.py")


def _run(kind, seen, unseen, ablate=(), engine=None):
    from core.runs import record_run

    return record_run(kind, f"{kind} {'-'.join(ablate)}", {"kind": kind, "ablate": list(ablate)},
                      metrics={"seen": [seen, seen], "unseen": [unseen, unseen]}, engine=engine)


def test_nothing_stored_means_not_measured(engine):
    rows = compare(engine)
    assert len(rows) == 5 and {r["verdict"] for r in rows} == {NOT_MEASURED}
    assert all(r["command"].startswith("python -m core") and r["paper_figure"] for r in rows)


def test_verdicts_follow_the_stored_figures(engine):
    from core.runs import record_run

    ion = _run("ion", 0.60, 0.45, engine=engine)
    text = _run("text", 0.13, 0.38, engine=engine)
    _run("image", 0.01, 0.05, engine=engine)
    ksg = _run("ion", 0.50, 0.40, ("ksg",), engine=engine)
    every = _run("ion", 0.62, 0.40, ("dfa", "ksg", "sca"), engine=engine)  # ahead of the full model: the ordering fails
    toty = _run("totyemb", 0.65, 0.57, engine=engine)
    table = record_run("expansion-table", "table", {}, engine=engine, metrics={"rows": [
        {"model": "initial", "packages": 16, "auc": 0.70, "ctr": 0.01},
        {"model": "expanded: random", "packages": 16, "auc": 0.66, "ctr": 0.009},
        {"model": "expanded: ion", "packages": 16, "auc": 0.74, "ctr": 0.014}]})
    ev = record_run("matcher-eval", "eval", {}, engine=engine, data_split={"set": "held-out phrases"},
                    metrics={"scorers": {"lxmert": {"auc": 0.50}, "clip": {"auc": 0.58}, "early": {"auc": 0.49}}})
    rows = {r["claim"].split()[0] + r["paper"]: r for r in compare(engine)}
    by_paper = {r["paper"]: [] for r in rows.values()}
    for r in rows.values():
        by_paper[r["paper"]].append(r)
    baselines, ablations = by_paper["ION"]
    assert baselines["verdict"] == AGREES and baselines["runs"] == [ion, text, 3]
    assert "60.0% seen" in baselines["adlens_figure"]
    assert ablations["verdict"] == DISAGREES and "w/o all" in ablations["words"] and ablations["runs"] == [ion, ksg, every]
    assert by_paper["ToTYEmb"][0]["verdict"] == AGREES and by_paper["ToTYEmb"][0]["runs"] == [toty, text]
    lift = by_paper["ION §4.7"][0]
    assert lift["verdict"] == AGREES and "0.700 -> 0.740" in lift["adlens_figure"] and "0.660" in lift["words"]
    assert lift["runs"] == [table]
    cs = by_paper["Creative selection"][0]
    assert cs["verdict"] == DISAGREES and "lxmert 0.500" in cs["adlens_figure"] and cs["runs"] == [ev]

    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Claims": "5", "Reproduced here": "3", "Not reproduced here": "2"}
    assert sum("does not agree" in m.value for m in at.markdown) == 2
