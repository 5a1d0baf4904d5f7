"""Evaluation: Hit P@k curves and ablation tables of stored model runs; train a new run in the background."""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only the script's folder on the path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from core import jobs
from core.retrieval import evaluate_runs
from core.runs import RUN_KINDS, delete_run, full_models_first, list_runs
from core.stale import is_stale, stale_note
from ui.common import engine, page_end, page_frame
from ui.waiting import REFRESH_S, job_progress, run_warnings, wait_for

ABLATIONS = {"ion": ["ksg", "sca", "dfa"], "totyemb": ["pointer", "image"]}


def curves(runs: list[dict]) -> go.Figure:
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Seen categories", "Unseen (held-out) categories"), shared_yaxes=True)
    palette = qualitative.D3 + qualitative.Set2
    for i, run in enumerate(runs):
        m = run["metrics"]
        color = palette[i % len(palette)]  # one colour per run on both panels
        for col, part in ((1, "seen"), (2, "unseen")):
            values = m.get(part) or []
            fig.add_trace(go.Scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines+markers", name=f"#{run['id']} {run['name']}",
                                     legendgroup=str(run["id"]), showlegend=col == 1, line={"color": color}, marker={"color": color}),
                          row=1, col=col)
    chance = next((r["metrics"]["chance"] for r in runs if r["metrics"].get("chance")), None)
    for col, part in ((1, "seen"), (2, "unseen")):
        if chance and chance.get(part) is not None:
            fig.add_hline(y=chance[part], line_dash="dot", line_color="gray", annotation_text="chance", row=1, col=col)
    fig.update_xaxes(title_text="k", dtick=1)
    fig.update_yaxes(title_text="Hit P@k", tickformat=".0%", row=1, col=1)
    fig.update_layout(height=420, margin={"t": 40, "b": 10})
    return fig


def table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["ablate"] = df["ablate"].map(lambda a: "w/o " + "+".join(a) if a else "full")
    return df[["run_id", "name", "kind", "ablate", "seen_p1", "seen_p5", "seen_p10", "unseen_p1", "unseen_p5", "unseen_p10",
               "n_seen", "n_unseen"]]


PCT = {c: st.column_config.NumberColumn(c.replace("_p", " P@"), format="percent") for c in
       ("seen_p1", "seen_p5", "seen_p10", "unseen_p1", "unseen_p5", "unseen_p10")}


def default_runs(runs: list[dict], limit: int = 6) -> list[int]:
    """The newest run of each name, full models (ION, ToTYEmb, baselines) before ablations and variants."""
    names: set[str] = set()
    chosen = []
    for run in full_models_first(runs):
        if run["name"] not in names and not is_stale(run):  # a run built on a previous demo world is listed, not chosen
            names.add(run["name"])
            chosen.append(run["id"])
    return chosen[:limit]


def results_section() -> None:
    runs = [r for r in list_runs(status="done") if r["metrics"].get("seen")]
    if not runs:
        if wait_for(["ion", "totyemb", "text", "image"], "the first evaluated models (ION, ToTYEmb, baselines)"):
            return
        st.info("No evaluated run yet: train one below, or run `python -m core experiments`.", icon=":material/query_stats:")
        return
    by_id = {r["id"]: r for r in runs}
    chosen = st.multiselect("Runs to compare", list(by_id), default=default_runs(runs), key="ev_runs",
                            format_func=lambda i: f"#{i} {by_id[i]['name']}{stale_note(by_id[i])}")
    picked = [by_id[i] for i in chosen]
    if picked:
        st.plotly_chart(curves(picked), width="stretch", key="ev_curves")
        for run in picked:
            run_warnings(run)
    rows = evaluate_runs()
    df = table([r for r in rows if r["run_id"] in chosen] or rows)
    st.subheader("Hit P@k side by side")
    st.dataframe(df, hide_index=True, width="stretch", column_config=PCT)
    ablation = df[df["kind"] == "ion"] if not df.empty else df
    if not ablation.empty and (ablation["ablate"] != "full").any():
        st.subheader("ION ablations (section 4.5)")
        st.dataframe(ablation, hide_index=True, width="stretch", column_config=PCT)
    st.caption("Every test ad queries all other test ads (Euclidean distance); Hit P@k = share of the k nearest in the query's "
               "category, for categories seen in training and held-out ones (ION section 4.2). Dotted line: a random ranking "
               "(few test ads per category make it low for seen categories and cap P@k for large k).")


def auto_epochs() -> int:
    """What "auto" epochs means on this catalogue (core.embed.train.default_epochs_for its training split)."""
    from sqlalchemy import func, select

    from core.embed.train import default_epochs_for
    from core.store import Ad, session_scope

    with session_scope(engine()) as s:
        n_train = s.scalar(select(func.count()).select_from(Ad).where(Ad.split == "train")) or 0
    return default_epochs_for(int(n_train))


def train_section() -> None:
    st.subheader("Train a new run")
    with st.form("ev_train"):
        kind = st.selectbox("Model", RUN_KINDS, key="ev_kind",
                            help="ion / totyemb are trained; text, image and concat are the offline baselines (embedded only)")
        ablate = st.multiselect("Ablate (ION: ksg, sca, dfa; ToTYEmb: pointer, image)", sorted({a for v in ABLATIONS.values() for a in v}),
                                key="ev_ablate")
        c1, c2, c3, c4, c5 = st.columns(5)
        auto = auto_epochs()
        epochs = c1.selectbox("Epochs", [0, 10, 20, 30, 50, 100], key="ev_epochs",
                              format_func=lambda e: f"auto ({auto} epochs)" if e == 0 else f"{e} epochs",
                              help="auto: the paper's 30, more on small catalogs (at least 4,000 optimiser steps, at most 100)")
        k1 = c2.number_input("k1", 1, 50, 20, key="ev_k1")
        k2 = c3.number_input("k2", 1, 50, 10, key="ev_k2")
        margin = c4.number_input("margin γ", 0.0, 2.0, 0.2, 0.05, key="ev_margin")
        rho = c5.number_input("keyword weight ρ", 0.0, 1.0, 0.05, 0.01, key="ev_rho")
        submitted = st.form_submit_button("Start training", icon=":material/play_arrow:")
    if submitted:
        bad = [a for a in ablate if a not in ABLATIONS.get(kind, [])]
        if bad:
            st.error(f"{kind} has no module {', '.join(bad)} to ablate")
        elif k2 > k1:
            st.error("k2 cannot exceed k1")
        else:
            options = {"epochs": int(epochs), "k1": int(k1), "k2": int(k2), "margin": float(margin), "keyword_weight": float(rho)} \
                if kind in ("ion", "totyemb") else {}
            if kind == "totyemb":
                options = {"epochs": int(epochs), "k1": int(k1)}
            if not epochs:
                options.pop("epochs", None)
            run_id = jobs.start_training(kind, ablate, options)
            st.toast(f"Run #{run_id} started in the background; the rest of the app stays usable.")
            time.sleep(0.5)
            st.rerun()  # the jobs section above shows its progress at once


def jobs_section() -> None:
    """Active jobs (ui.waiting.job_progress: live progress, Cancel) and the recently failed / cancelled ones."""
    jobs.reap_stale()  # a job whose process died is listed as failed, with its log
    active = jobs.active_jobs()
    finished = [r for r in list_runs() if r["status"] in ("failed", "cancelled")][:5]
    if not active and not finished:
        return
    st.subheader("Background jobs")
    if active:
        live = st.toggle(f"Refresh every {REFRESH_S} s while a job runs", value=True, key="ev_refresh",
                         help="only this section refreshes; the rest of the page and the other pages stay usable")
        job_progress(RUN_KINDS, key="ev_jobs", live=live, failed=False)
    for run in finished:
        cols = st.columns([5, 1])
        cols[0].caption(f"#{run['id']} {run['name']}{stale_note(run)}: **{run['status']}** — {run['message'][:300]}")
        tail = jobs.run_log_tail(run) if run["status"] == "failed" else None
        if tail is not None:  # the job's stdout / stderr (home/logs): the traceback of a crash
            with cols[0].expander(f"Log of run #{run['id']} (last lines)"):
                st.code(tail, language="text")
        if cols[1].button("Delete", key=f"delete-{run['id']}", icon=":material/delete:"):
            delete_run(run["id"])
            st.rerun()


def main() -> None:
    stats = page_frame("Evaluation")
    results_section()
    jobs_section()
    train_section()
    page_end(stats)


main()
