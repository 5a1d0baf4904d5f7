"""Papers vs AdLens: each paper's headline claim beside what this catalogue's stored runs measure, in plain words."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only the script's folder on the path

import streamlit as st

from core.papers import AGREES, DISAGREES, compare
from ui.common import engine, md_escape, page_end, page_frame

BADGES = {AGREES: ":green-badge[:material/check: agrees]", DISAGREES: ":red-badge[:material/close: does not agree]"}
NOT_YET = ":gray-badge[:material/hourglass_empty: not measured yet]"


def summary(rows: list[dict]) -> None:
    counts = {v: sum(r["verdict"] == v for r in rows) for v in (AGREES, DISAGREES)}
    cols = st.columns(3)
    cols[0].metric("Claims", len(rows))
    cols[1].metric("Reproduced here", counts[AGREES])
    cols[2].metric("Not reproduced here", counts[DISAGREES])


def claim_card(row: dict) -> None:
    with st.container(border=True):
        st.markdown(f"**{md_escape(row['paper'])}** · {md_escape(row['claim'])}  \n{BADGES.get(row['verdict'], NOT_YET)}")
        left, right = st.columns(2)
        left.markdown(f"**The paper:** {md_escape(row['paper_figure'])}")
        right.markdown(f"**AdLens, this catalogue:** {md_escape(row['adlens_figure'])}")
        st.markdown(md_escape(row["words"]))
        runs = ", ".join(f"#{r}" for r in row["runs"]) or "none yet"
        st.caption(f"Measured by `{row['command']}` · stored runs: {runs}")


def main() -> None:
    stats = page_frame("Papers vs AdLens", heading="Papers vs AdLens")
    st.caption("Each paper's headline claim beside what this catalogue's stored runs measure. The papers used real ads "
               "(and app screenshots); the demo world is generated, so absolute figures differ: the question each card "
               "answers is whether the claim's direction holds here.")
    rows = compare(engine())
    summary(rows)
    for row in rows:
        claim_card(row)
    page_end(stats)


main()
