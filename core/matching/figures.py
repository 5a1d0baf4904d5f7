"""Figures of the Phrase match page (plotly, Pillow), as pure functions of the engine's results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

SCORER_LABELS = {"lxmert": "LXMERT", "clip": "CLIP", "early": "Early fusion", "ion": "ION"}
SCORER_COLORS = {"lxmert": "#7c3aed", "clip": "#0ea5e9", "early": "#f97316", "ion": "#16a34a"}


def score_heatmap(result: dict, labels: Sequence[str] | None = None):
    """Heatmap: one row per (scorer, phrase), one column per creative, colour = probability of relevance."""
    import plotly.graph_objects as go

    rows, z = [], []
    for name, matrix in result["scores"].items():
        for phrase, row in zip(result["phrases"], matrix, strict=True):
            rows.append(f"{SCORER_LABELS.get(name, name)} · {phrase}")
            z.append(row)
    cols = list(labels or result["creatives"])
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=rows, zmin=0, zmax=1, colorscale="Viridis", colorbar={"title": "P(relevant)"},
                               hovertemplate="%{y}<br>%{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(height=120 + 28 * len(rows), margin={"l": 10, "r": 10, "t": 30, "b": 10}, yaxis={"autorange": "reversed"},
                      xaxis={"type": "category"})
    return fig


def roc_figure(evaluation: dict):
    """ROC curves of one stored evaluation, the legend giving AUC [95% interval]."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#9ca3af"}, name="chance", hoverinfo="skip"))
    for name, r in evaluation["scorers"].items():
        fig.add_trace(go.Scatter(x=r["roc"]["fpr"], y=r["roc"]["tpr"], mode="lines", line={"color": SCORER_COLORS.get(name)},
                                 name=f"{SCORER_LABELS.get(name, name)}: AUC {r['auc']:.3f} [{r['auc_low']:.3f}, {r['auc_high']:.3f}]"))
    fig.update_layout(xaxis_title="false positive rate", yaxis_title="true positive rate", height=420,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"x": 0.35, "y": 0.05})
    return fig


def reliability_figure(evaluation: dict):
    """Reliability curves (mean predicted probability vs observed frequency per bin) of every scorer."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "#9ca3af"}, name="perfect", hoverinfo="skip"))
    for name, r in evaluation["scorers"].items():
        curve = r["calibration"]["curve"]
        fig.add_trace(go.Scatter(x=[b["confidence"] for b in curve], y=[b["frequency"] for b in curve], mode="lines+markers",
                                 line={"color": SCORER_COLORS.get(name)}, text=[f"{b['count']} pairs" for b in curve],
                                 name=f"{SCORER_LABELS.get(name, name)}: ECE {r['calibration']['ece']:.3f}"))
    fig.update_layout(xaxis_title="predicted probability", yaxis_title="observed frequency of relevant", height=380,
                      margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def evaluation_rows(evaluation: dict) -> list[dict]:
    """Table rows: scorer, AUC, 95% interval, MAP@10, NDCG@10, ECE, variant."""
    return [{"scorer": SCORER_LABELS.get(n, n), "AUC": r["auc"], "95% interval": f"[{r['auc_low']:.3f}, {r['auc_high']:.3f}]",
             "MAP@10": r.get("map@10"), "NDCG@10": r.get("ndcg@10"), "ECE": round(r["calibration"]["ece"], 4), "variant": r["variant"]}
            for n, r in evaluation["scorers"].items()]


def attention_overlay(image: Image.Image, boxes_px: Sequence[Sequence[float]], weights: Sequence[float],
                      color: tuple[int, int, int] = (124, 58, 237)) -> Image.Image:
    """The creative with each region tinted and outlined in proportion to its attention weight (max weight = strongest)."""
    base = image.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    w = np.asarray(weights, np.float64)
    top = float(w.max()) if len(w) and w.max() > 0 else 1.0
    line = max(2, round(min(base.size) / 150))
    for box, weight in sorted(zip(boxes_px, w, strict=False), key=lambda x: x[1]):
        strength = float(weight) / top
        x1, y1, x2, y2 = (float(v) for v in box)
        if x2 <= x1 or y2 <= y1:
            continue
        draw.rectangle([x1, y1, x2, y2], fill=(*color, int(110 * strength)), outline=(*color, int(80 + 175 * strength)), width=line)
    return Image.alpha_composite(base, layer).convert("RGB")


GROUPS = ("all", "absent", "visible", "seen", "held-out", "en", "zh")


def group_rows(ceiling: dict | None, scorers: dict[str, dict], labels: dict[str, str] = SCORER_LABELS) -> list[dict]:
    """One row per scorer (the visible-category ceiling first, when the set has ground truth): AUC per group of
    :data:`GROUPS` that some row has. ``scorers``: {name: {"groups": ...}}, as evaluate_matching stores them."""
    sources = ([("ceiling", ceiling)] if ceiling else []) + [
        (labels.get(name, name), r.get("groups")) for name, r in scorers.items() if r.get("groups")]
    present = [g for g in GROUPS if any(g in groups for _, groups in sources)]
    return [{"scorer": label, **{g: (groups.get(g) or {}).get("auc") for g in present}} for label, groups in sources]
