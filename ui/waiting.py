"""While ``core demo --models background`` builds the default models: what each page waits for, live.

:func:`build_panel` (every page, under the heading) lists the stages of a running build; :func:`wait_for` (a page
with no model of its kind yet) shows that model's stage with its run's progress and ETA. Both are fragments that
re-read ``home/demo-models.json`` every few seconds and re-run the whole page once the model has landed, so the
page fills in by itself; nothing blocks the rest of the app.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import streamlit as st

from core.demo import models as demo_models

REFRESH_S = 4
FINISHED = ("done", "up to date")
ICONS = {"pending": ":material/schedule:", "running": ":material/progress_activity:", "done": ":material/check_circle:",
         "up to date": ":material/check_circle:", "failed": ":material/error:", "skipped": ":material/block:"}


def minutes(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = max(0, int(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def active_run(kinds: Sequence[str]) -> dict[str, Any] | None:
    """The newest active ModelRun of the first of ``kinds`` that has one (its progress and message), if any."""
    runs = active_runs(kinds)
    return runs[0] if runs else None


def run_eta(run: dict[str, Any]) -> str:
    """'epoch 12/30 · 41% · about 2 min 10 s left' from a run's progress and start time."""
    p = float(run.get("progress") or 0.0)
    created = run.get("created_at")
    elapsed = (datetime.now(UTC).replace(tzinfo=None) - created).total_seconds() if created else None
    eta = f" · about {minutes(elapsed * (1 - p) / p)} left" if elapsed and p > 0.02 else ""
    return f"{run.get('message') or 'starting'} · {100 * p:.0f}%{eta}"


def stage_line(name: str, entry: dict[str, Any]) -> str:
    state = entry.get("state", "pending")
    if state == "running" and entry.get("started"):
        timing = f"running for {minutes(time.time() - entry['started'])} (budget {minutes(entry.get('budget_s'))})"
    elif entry.get("seconds") is not None:
        timing = f"{state} in {minutes(entry['seconds'])}"
    else:
        timing = f"{state} (budget {minutes(entry.get('budget_s'))})"
    error = f" — {entry['error']}" if entry.get("error") else ""
    return f"{ICONS.get(state, '')} **{entry.get('title', name)}**: {timing}{error}"


@st.fragment(run_every=REFRESH_S)
def build_panel() -> None:
    """A running background build: one line per stage, and the page re-runs when a stage lands."""
    status = demo_models.read_status()
    building = demo_models.is_building(status)
    seen = st.session_state.get("_demo_build_landed")
    landed = sorted(n for n, v in status.get("stages", {}).items() if v.get("state") in FINISHED)
    if seen is not None and landed != seen:
        st.session_state["_demo_build_landed"] = landed
        st.rerun(scope="app")  # a model landed: the page can show it now
    st.session_state["_demo_build_landed"] = landed
    if not building:
        return
    stages = status.get("stages", {})
    finished = sum(v.get("state") in (*FINISHED, "failed", "skipped") for v in stages.values())
    elapsed = time.time() - float(status.get("started") or time.time())
    with st.expander(f":material/model_training: Building the default models in the background: {finished} of {len(stages)} "
                     f"done, {minutes(elapsed)} so far (budget {minutes(status.get('budget_s'))}); pages fill in as each lands",
                     expanded=False):
        st.progress(finished / max(1, len(stages)))
        for name, entry in stages.items():
            line = stage_line(name, entry)
            if entry.get("state") == "running":
                run = active_run(entry.get("kinds", ()))
                if run is not None:
                    line += f" — {run_eta(run)}"
            st.markdown(line)


def wait_for(kinds: Sequence[str], what: str) -> bool:
    """When a background build will produce ``what`` (a run of one of ``kinds``): say so with its progress, refresh
    until it lands, and return True; False when no build is going to produce it (the page shows its own hint)."""
    view = next((v for v in (demo_models.stage_view(k) for k in kinds) if v is not None), None)
    if view is None or view.get("state") in ("failed", "skipped", *FINISHED):  # finished: the page's own hint says what is missing
        return False
    _wait_fragment(view["stage"], tuple(kinds), what)
    return True


@st.fragment(run_every=REFRESH_S)
def _wait_fragment(stage: str, kinds: tuple[str, ...], what: str) -> None:
    status = demo_models.read_status()
    entry = status.get("stages", {}).get(stage, {})
    if entry.get("state") in FINISHED or not demo_models.is_building(status):
        st.rerun(scope="app")
    with st.container(border=True):
        st.markdown(f":material/hourglass_top: **Waiting for {what}** — the demo build is making it now; this page "
                    "fills in by itself when it lands.")
        st.markdown(stage_line(stage, entry))
        run = active_run(kinds)
        if run is not None:
            st.progress(min(1.0, float(run.get("progress") or 0.0)), text=run_eta(run))
        elif entry.get("state") == "pending":
            waiting_on = [n for n in next((s.needs for s in demo_models.STAGES if s.name == stage), ())
                          if status.get("stages", {}).get(n, {}).get("state") not in FINISHED]
            if waiting_on:
                st.caption("It starts after: " + ", ".join(status["stages"][n].get("title", n) for n in waiting_on))


def active_runs(kinds: Sequence[str]) -> list[dict[str, Any]]:
    from core.runs import ACTIVE, list_runs

    return [r for kind in kinds for r in list_runs(kind) if r["status"] in ACTIVE]


def job_progress(kinds: Sequence[str], *, key: str, live: bool = True, failed: bool = True) -> None:
    """Background runs of ``kinds``: progress with ETA and a Cancel button, refreshed live (``live``: every REFRESH_S s,
    in a fragment); the page re-runs when one ends. With ``failed``, failed runs of the last hour show their message and
    the tail of their log. The one implementation of job progress: every page with background jobs calls this."""
    if active_runs(kinds):
        if live:
            _job_fragment(tuple(kinds), key)
        else:
            _job_list(tuple(kinds), key, in_fragment=False)
    if failed:
        failed_runs(kinds)


def _job_list(kinds: tuple[str, ...], key: str, *, in_fragment: bool) -> None:
    from core import jobs
    from core.stale import stale_note

    jobs.reap_stale(kinds=kinds)
    runs = active_runs(kinds)
    ids = sorted(r["id"] for r in runs)
    before = st.session_state.get(f"{key}_active")
    st.session_state[f"{key}_active"] = ids
    if before is not None and set(before) - set(ids):
        st.rerun(scope="app")  # a run ended: the page shows its model now
    for run in runs:
        cols = st.columns([6, 1], vertical_alignment="center")
        cols[0].progress(min(1.0, float(run["progress"])),
                         text=f"#{run['id']} {run['name']}{stale_note(run)}: {run['status']} — {run_eta(run)}")
        if run["status"] != "cancelling" and cols[1].button("Cancel", key=f"{key}-cancel-{run['id']}", icon=":material/stop:"):
            jobs.cancel(run["id"])
            st.rerun(scope="fragment" if in_fragment else "app")
        live_curve(run, key=f"{key}-curve-{run['id']}")


@st.fragment(run_every=REFRESH_S)
def _job_fragment(kinds: tuple[str, ...], key: str) -> None:
    _job_list(kinds, key, in_fragment=True)


def failed_runs(kinds: Sequence[str], *, within_s: float = 3600) -> None:
    from core import jobs
    from core.runs import list_runs
    from core.stale import stale_note

    now = datetime.now(UTC).replace(tzinfo=None)
    for kind in kinds:
        for run in list_runs(kind, "failed")[:1]:
            if run["finished_at"] and (now - run["finished_at"]).total_seconds() > within_s:
                continue
            with st.expander(f":material/error: #{run['id']} {run['name']}{stale_note(run)} failed: {run['message'][:120]}"):
                tail = jobs.run_log_tail(run)
                if tail is not None:
                    st.code(tail, language="text")
                else:
                    st.caption("No log was kept for this run.")


def curve_frame(run: dict[str, Any]):
    """The run's loss per epoch so far (ION/ToTYEmb: train and validation loss; scorers: training loss), or None."""
    import pandas as pd

    m = run.get("metrics") or {}
    if m.get("history"):
        frame = pd.DataFrame(m["history"]).set_index("epoch")[["train_loss", "val_loss"]]
        return frame.dropna(axis=1, how="all")
    losses = (m.get("fit") or {}).get("epoch_loss")
    if losses:
        return pd.DataFrame({"train_loss": losses}, index=pd.RangeIndex(1, len(losses) + 1, name="epoch"))
    return None


def live_curve(run: dict[str, Any], *, key: str) -> None:  # noqa: ARG001 - one chart per run
    frame = curve_frame(run)
    if frame is not None and len(frame) >= 2:  # a line needs two epochs
        st.line_chart(frame, height=160, x_label="epoch", y_label="loss")


def run_warnings(run: dict[str, Any]) -> None:
    """The run's health warnings (core.health), one box each."""
    for text in (run.get("metrics") or {}).get("warnings") or []:
        st.warning(f"Run #{run['id']} ({run['name']}): {text}", icon=":material/warning:")
