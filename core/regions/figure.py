"""Plotly views of ranked regions (image + numbered boxes with hover text) and the rank table."""

from __future__ import annotations

from typing import Any

from PIL import Image

from core.regions.clues import RankedRegion, ScaResult

PALETTE = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990", "#800000"]


def arrow(change: int) -> str:
    return f"▲ {change}" if change > 0 else f"▼ {-change}" if change < 0 else "="


def rank_table(sca: ScaResult) -> list[dict[str, Any]]:
    """One row per scored region, in re-ranked order: ranks before/after, the change with an arrow, scores."""
    return [
        {"box #": r.rank_before + 1, "label": r.label, "rank before": r.rank_before + 1, "rank after": r.rank_after + 1,
         "change": arrow(r.change), "confidence": round(r.confidence, 3), "clue score": round(r.clue or 0.0, 3),
         "kept": "yes" if r.kept else "no", "box": [round(v) for v in r.box]}
        for r in sca.after()
    ]


def image_trace(image: Image.Image, quality: int = 90):
    """The creative as a Plotly image trace drawn from an embedded JPEG (pixel coordinates, as ``go.Image(z=...)``).

    Not ``z=pixels``: a 512 px creative as a pixel matrix is 1.1 MB of figure JSON that takes 1.6 s to serialise on a
    busy core and as long again for the browser to paint; the JPEG is 0.15 MB and 0.02 s.
    """
    import base64
    import io

    import plotly.graph_objects as go

    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return go.Image(source="data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), hoverinfo="skip")


def regions_figure(image: Image.Image, regions: list[RankedRegion], *, title: str, rank: str = "before",
                   truth_box: list[float] | None = None, max_side: int = 900):
    """Image with numbered boxes (number = rank in ``rank`` order, 1-based) and hover text; ``truth_box`` dashed."""
    import plotly.graph_objects as go

    scale = min(1.0, max_side / max(image.size))
    shown = image if scale == 1.0 else image.resize((round(image.width * scale), round(image.height * scale)))
    fig = go.Figure(image_trace(shown))
    for i, r in enumerate(regions):
        x1, y1, x2, y2 = (v * scale for v in r.box)
        number = (r.rank_before if rank == "before" else r.rank_after or 0) + 1
        color = PALETTE[i % len(PALETTE)]
        hover = (f"#{number} {r.label}<br>confidence {r.confidence:.3f}<br>clue {0.0 if r.clue is None else r.clue:.3f}"
                 f"<br>rank {r.rank_before + 1} → {'-' if r.rank_after is None else r.rank_after + 1} ({arrow(r.change)})")
        fig.add_trace(go.Scatter(x=[x1, x2, x2, x1, x1], y=[y1, y1, y2, y2, y1], mode="lines", fill="toself",
                                 fillcolor="rgba(0,0,0,0.02)", line={"color": color, "width": 3 if number == 1 else 2},
                                 hoveron="fills+points", hoverinfo="text", text=hover, name=f"#{number} {r.label}"))
        fig.add_annotation(x=x1, y=y1, text=f"<b>{number}</b>", showarrow=False, xanchor="left", yanchor="top",
                           font={"color": "white", "size": 13}, bgcolor=color)
    if truth_box is not None:
        x1, y1, x2, y2 = (v * scale for v in truth_box)
        fig.add_trace(go.Scatter(x=[x1, x2, x2, x1, x1], y=[y1, y1, y2, y2, y1], mode="lines", name="ground-truth product",
                                 line={"color": "white", "width": 3, "dash": "dash"}, hoverinfo="name"))
    fig.update_layout(title=title, margin={"l": 0, "r": 0, "t": 40, "b": 0}, showlegend=False,
                      xaxis={"visible": False}, yaxis={"visible": False}, height=min(700, shown.height + 60))
    return fig
