"""Plotly figures of expansion results (pure: a result/metrics dict in, a figure out).

``m`` is :meth:`ExpansionResult.to_dict` or a stored run's ``metrics`` (the same keys).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

COLORS = {"initial": "#8c8c8c", "expanded": "#1f77b4"}


def _layout(fig: go.Figure, title: str, x: str, y: str) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def roc_figure(m: Mapping[str, Any]) -> go.Figure:
    """ROC curves of M_initial and M_expanded on the same test set T."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#cccccc"}, name="chance"))
    for key in ("initial", "expanded"):
        curve = m["roc"][key]
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines", line={"color": COLORS[key]},
                                 name=f"{key} (AUC {m[f'auc_{key}']:.3f})"))
    return _layout(fig, "ROC on the held-out test set T", "false positive rate", "true positive rate")


def ctr_figure(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> go.Figure:
    """Simulated CTR in P' against audience size; the initial model once, each run's expanded model."""
    fig = go.Figure()
    first = runs[0][1]
    sizes = [100 * r["size"] for r in first["ctr"]]
    fig.add_trace(go.Scatter(x=sizes, y=[100 * r["ctr_initial"] for r in first["ctr"]], mode="lines+markers",
                             line={"color": COLORS["initial"]}, name="initial"))
    for label, m in runs:
        fig.add_trace(go.Scatter(x=[100 * r["size"] for r in m["ctr"]], y=[100 * r["ctr_expanded"] for r in m["ctr"]],
                                 mode="lines+markers", name=f"expanded · {label}"))
    fig.add_hline(y=100 * first["base_ctr"], line_dash="dot", line_color="#cccccc", annotation_text="no targeting")
    return _layout(fig, "Simulated CTR of the targeted users in P'", "audience size (% of the package's P' users)", "CTR (%)")


def positives_figure(rows: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Positives before and after expansion, per package (ToTYEmb's crowd-package view)."""
    labels = [str(r.get("package") or r.get("package_name") or r["package_id"]) for r in rows]
    fig = go.Figure([
        go.Bar(x=labels, y=[r["positives_before"] for r in rows], name="before", marker_color=COLORS["initial"]),
        go.Bar(x=labels, y=[r["positives_after"] for r in rows], name="after", marker_color=COLORS["expanded"]),
    ])
    fig.update_layout(barmode="group")
    return _layout(fig, "Training positives before / after expansion", "package", "positive users")


def importance_figure(m: Mapping[str, Any], top: int = 12) -> go.Figure:
    """Share of total gain of the top features, both models."""
    names: list[str] = []
    for key in ("expanded", "initial"):
        for row in m["importance"][key]:
            if row["feature"] not in names:
                names.append(row["feature"])
    names = names[:top][::-1]
    fig = go.Figure()
    for key in ("initial", "expanded"):
        share = {r["feature"]: r["share"] for r in m["importance"][key]}
        fig.add_trace(go.Bar(y=names, x=[100 * share.get(n, 0.0) for n in names], orientation="h", name=key,
                             marker_color=COLORS[key]))
    fig.update_layout(barmode="group")
    return _layout(fig, "Feature importance (share of total gain)", "% of gain", "")
