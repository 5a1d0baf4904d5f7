"""Model-run pickers and the region-box figure shared by the Similar ads, Evaluation and Attention pages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from core.regions.figure import image_trace
from core.runs import full_models_first, is_variant, list_runs
from core.stale import stale_note

KEPT_COLOR = "#16a34a"  # kept by SCA (k2)
DROPPED_COLOR = "#f97316"  # in the top k1 but dropped
OUTSIDE_COLOR = "#9ca3af"  # below the top k1 by detector confidence
KIND_LABELS = {"ion": "ION", "totyemb": "ToTYEmb", "text": "text-only", "image": "image-only"}


def run_label(run: dict[str, Any]) -> str:
    m = run.get("metrics") or {}
    p1 = (m.get("seen") or [None])[0]
    score = f" · seen P@1 {100 * p1:.1f}%" if p1 is not None else ""
    return f"#{run['id']} {run['name']} ({run['kind']}){score}{stale_note(run)}"


def run_picker(label: str = "Model run", *, kinds: Sequence[str] | None = None, key: str = "run", sidebar: bool = True) -> dict | None:
    """A select box of the finished runs (newest first); None (with a hint) when there is none."""
    runs = full_models_first([r for r in list_runs(status="done", fresh=True) if r["index_path"] and (not kinds or r["kind"] in kinds)])
    runs = sorted(runs, key=lambda r: (is_variant(r), r["kind"] != "ion"))  # ION (the product's model) first, then the others
    where = st.sidebar if sidebar else st
    if not runs:
        from ui.waiting import wait_for

        wanted = " or ".join(kinds) if kinds else "any"
        waiting = list(kinds or ("ion", "totyemb"))
        if wait_for(waiting, "the " + " or ".join(KIND_LABELS.get(k, k) for k in waiting) + " model"):
            return None
        # in the main area even when the picker lives in the sidebar: without a run the page has nothing else
        st.info(f"No finished model run ({wanted}) yet: train one here, on the **Evaluation** page or with "
                "`python -m core train --model ion`.", icon=":material/model_training:")
        train_here(waiting[0], key=key)
        return None
    by_id = {r["id"]: r for r in runs}
    chosen = where.selectbox(label, list(by_id), format_func=lambda i: run_label(by_id[i]), key=key)
    return by_id[chosen]


def train_here(kind: str, *, key: str) -> None:
    """A button that trains ``kind`` with its demo recipe in the background, and that run's live progress."""
    from core import jobs
    from core.demo.models import stage_for_kind
    from ui.waiting import active_runs, job_progress

    stage = stage_for_kind(kind)
    options = {"epochs": int(stage.args[stage.args.index("--epochs") + 1])} if stage and "--epochs" in (stage.args or ()) else {}
    if not active_runs([kind]) and st.button(f"Train {KIND_LABELS.get(kind, kind)} now, in the background"
                                             + (f" (about {stage.budget_s // 60} min on 2 CPU cores)" if stage else ""),
                                             icon=":material/play_arrow:", key=f"{key}_train"):
        jobs.start_training(kind, (), options)
        st.rerun()
    job_progress([kind], key=f"{key}_jobs")


def regions_figure(image: Image.Image, regions: Sequence[dict[str, Any]], *, title: str = "", highlight: int | None = None,
                   value: str = "alpha", height: int = 420) -> go.Figure:
    """The creative with each region's box: green = kept (k2), orange = in k1 but dropped, grey = outside k1.

    Each box is labelled ``R<index>`` (the same label as the heatmap columns) and its ``value`` (alpha / weight).
    """
    fig = go.Figure(image_trace(image))
    for r in regions:
        x1, y1, x2, y2 = r["box"]
        color = KEPT_COLOR if r.get("kept") else DROPPED_COLOR if r.get("in_k1", True) else OUTSIDE_COLOR
        width = 5 if highlight == r["index"] else 2.5 if r.get("kept") else 1.5
        dash = "solid" if r.get("kept") else "dash" if r.get("in_k1", True) else "dot"
        fig.add_shape(type="rect", x0=x1, y0=y1, x1=x2, y1=y2, line={"color": color, "width": width, "dash": dash})
        v = r.get(value)
        text = f"R{r['index']}" + (f" {value[0]}={v:.2f}" if isinstance(v, float) else "")
        fig.add_annotation(x=x1, y=y1, text=text, showarrow=False, xanchor="left", yanchor="bottom", font={"color": "white", "size": 11},
                           bgcolor=color, opacity=0.9)
    fig.update_layout(title=title, height=height, margin={"l": 0, "r": 0, "t": 30 if title else 0, "b": 0})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig
