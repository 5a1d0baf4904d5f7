"""Attention: what ION looked at for one ad — keyword probabilities, KSG gates, SCA scores and the DFA matrix."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only the script's folder on the path

import pandas as pd
import plotly.express as px
import streamlit as st

from core.catalog import get_ad
from core.errors import RetrievalError
from core.explain import attention
from core.images import ImageError, decode_image
from core.runs import RunNotFound
from ui.adpicker import pick_ad
from ui.common import page_end, page_frame
from ui.images import load_creative
from ui.runs import DROPPED_COLOR, KEPT_COLOR, OUTSIDE_COLOR, regions_figure, run_picker

ERRORS = (RetrievalError, RunNotFound, ImageError, ValueError, OSError)


def pick_creative():
    """(kwargs for core.explain.attention, the creative image) from a catalog ad or an upload."""
    source = st.radio("Creative", ["Catalog ad", "Upload"], horizontal=True, key="att_source")
    if source == "Upload":
        upload = st.file_uploader("Image", type=["png", "jpg", "jpeg", "gif", "webp", "bmp"], key="att_upload")
        text = st.text_input("Ad text", key="att_text", placeholder="e.g. Crunchy green apples")
        if upload is None:
            st.info("Upload a creative image and type its text.")
            return None
        image = decode_image(upload.getvalue(), name=upload.name).image
        return {"image": image, "text": text}, image
    ad_id = pick_ad("att_ad")
    if ad_id is None:
        return None
    return {"ad_id": ad_id}, load_creative(get_ad(ad_id)["image_path"])


def words_table(att: dict) -> None:
    df = pd.DataFrame(att["words"])
    df["keyword_label"] = df["keyword_label"].map({1: "noun/verb/adj", 0: "other"})
    st.dataframe(df, hide_index=True, width="stretch", column_config={
        "keyword_prob": st.column_config.ProgressColumn("keyword probability", min_value=0.0, max_value=1.0, format="%.2f"),
        "gate": st.column_config.ProgressColumn("KSG gate (mean)", min_value=0.0, max_value=1.0, format="%.2f"),
        "in_vocab": st.column_config.CheckboxColumn("in vocabulary"),
    })
    if att["words"] and att["words"][0]["gate"] is None:
        st.caption("This run was trained without KSG: no keyword head and no gate.")


def main() -> None:
    stats = page_frame("Attention", "Attention: what ION looked at")
    st.caption("For one ad: each word's keyword probability and KSG gate, each region's detector confidence and SCA score "
               "(which of the top k1 boxes were kept as the k2), and the DFA affinity of every word with every kept region.")
    run = run_picker("ION run", kinds=["ion"], key="att_run")
    if run is None:
        page_end(stats)
        return
    try:
        picked = pick_creative()
        if picked is None:
            page_end(stats)
            return
        query, image = picked
        att = attention(run["id"], **query)
    except ERRORS as exc:
        st.error(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc))
        page_end(stats)
        return
    st.markdown(f"**Run #{run['id']}** · k1 = {att['k1']}, k2 = {att['k2']}"
                + (f" · ablated: {', '.join(att['ablate'])}" if att["ablate"] else ""))
    left, right = st.columns([3, 2])
    kept = att["kept"]
    with left:
        choice = st.selectbox("Highlight region", ["none", *(f"R{i}" for i in kept)], key="att_highlight")
        highlight = None if choice == "none" else int(choice[1:])
        if image is not None:
            st.plotly_chart(regions_figure(image, att["regions"], highlight=highlight, value="alpha"), width="stretch", key="att_fig")
        st.markdown(f":green-badge[kept (k2)] :orange-badge[in k1, dropped by SCA] :gray-badge[below the top k1]  \n"
                    f"<span style='color:{KEPT_COLOR}'>solid</span> / <span style='color:{DROPPED_COLOR}'>dashed</span> / "
                    f"<span style='color:{OUTSIDE_COLOR}'>dotted</span> boxes; label = R&lt;index&gt; and the SCA score α.",
                    unsafe_allow_html=True)
    with right:
        st.subheader("Words")
        words_table(att)
    st.subheader("Regions")
    columns = ("index", "label", "confidence", "alpha", "in_k1", "kept", "kept_rank")
    regions = pd.DataFrame([{k: r[k] for k in columns} for r in att["regions"]])
    if regions.empty:
        st.info("The detector found no region on this creative: the ad vector comes from its text alone.")
    else:
        st.dataframe(regions, hide_index=True, width="stretch")
    if att["beta"] is not None and kept and att["words"]:
        st.subheader("Dual-path fusion attention (words × kept regions)")
        fig = px.imshow(att["beta"], x=[f"R{i}" for i in kept], y=[f"{j}: {w['word']}" for j, w in enumerate(att["words"])],
                        color_continuous_scale="Viridis", aspect="auto", labels={"color": "β"})
        fig.update_layout(height=max(260, 26 * len(att["words"])), margin={"t": 10, "b": 10})
        if highlight is not None and highlight in kept:
            col = kept.index(highlight)
            fig.add_shape(type="rect", x0=col - 0.5, x1=col + 0.5, y0=-0.5, y1=len(att["words"]) - 0.5, line={"color": "red", "width": 3})
        st.plotly_chart(fig, width="stretch", key="att_heatmap")
        st.caption("Columns are the kept regions, labelled as their boxes; highlight a region to outline its box and its column.")
    elif att["beta"] is None:
        st.caption("This run was trained without DFA (global concatenation fusion): there is no word × region matrix.")
    page_end(stats)


main()
