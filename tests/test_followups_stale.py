"""Issue 14 follow-up: runs built on a demo world that is gone (core.stale) feed no paper figure and are labelled
stale where jobs are listed."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.stale import REASON_KEY, STALE_KEY, STALE_LABEL

STALE = {STALE_KEY: True, REASON_KEY: "the demo world was replaced", "world_fingerprint": "old"}


def _done(engine, kind: str, name: str, seen: float, unseen: float, stale: bool = False) -> int:
    from core.runs import record_run

    return record_run(kind, name, {**(STALE if stale else {}), "ablate": []}, metrics={"seen": [seen], "unseen": [unseen]},
                      engine=engine)


def test_paper_figures_come_from_current_runs_only(engine):
    from core.papers import AGREES, NOT_MEASURED, ion_beats_baselines
    from core.runs import record_run

    ion = _done(engine, "ion", "ion", 0.5, 0.4)
    text = _done(engine, "text", "text", 0.3, 0.2)
    stale_ion = _done(engine, "ion", "ion", 0.1, 0.1, stale=True)  # newer, built on the previous world
    stale_text = _done(engine, "text", "text", 0.9, 0.9, stale=True)
    found = ion_beats_baselines(engine)
    assert found.runs == (ion, text) and stale_ion not in found.runs and stale_text not in found.runs
    assert found.verdict == AGREES and "ION 50.0% seen" in found.figure and "text 30.0%" in found.figure
    # with only stale runs of a claim, the claim is not measured (its old figure is not shown)
    from core.papers import expansion_lifts

    record_run("expansion-table", "old table", dict(STALE), engine=engine, metrics={"rows": [
        {"model": "initial", "auc": 0.6, "ctr": 0.01}, {"model": "expanded: oracle", "auc": 0.7, "ctr": 0.02, "packages": 3}]})
    assert expansion_lifts(engine).verdict == NOT_MEASURED


def jobs_page():
    from ui.waiting import job_progress

    job_progress(["text"], key="t_jobs", live=False)


def test_an_active_stale_run_is_labelled_stale_in_the_jobs_list(engine):
    from core.runs import create_run, start_run, update_run

    current = create_run("text", "current job", {}, engine=engine)
    old = create_run("text", "old job", dict(STALE), engine=engine)
    for run_id in (current, old):
        assert start_run(run_id, engine=engine)
        update_run(run_id, engine=engine, progress=0.5, message="embedding")
    at = AppTest.from_function(jobs_page, default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    texts = [str(p.proto.text) for p in at.get("progress")]
    assert sum(t.startswith(f"#{old} old job ({STALE_LABEL}): running") for t in texts) == 1
    assert sum(t.startswith(f"#{current} current job: running") for t in texts) == 1 and len(texts) == 2
