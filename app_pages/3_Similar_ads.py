"""Similar ads: query by a catalog ad, an uploaded creative or a phrase; why each result is similar; the embedding map."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only the script's folder on the path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from core.errors import RetrievalError
from core.images import ImageError, decode_image
from core.retrieval import embedding_map, search
from core.retrieval.projection import project_sample
from core.runs import RunNotFound
from ui.adpicker import pick_ad
from ui.cards import ad_grid
from ui.common import md_escape, page_end, page_frame
from ui.images import load_creative
from ui.runs import regions_figure, run_picker

ERRORS = (RetrievalError, RunNotFound, ImageError, ValueError, OSError)


@st.cache_resource(max_entries=8, show_spinner="Projecting a sample of the embeddings…")
def _sample_map(run_id: int, method: str, version: str) -> dict:  # noqa: ARG001 - version keys the cache
    """The sampled projection of a run, once per run and method for every session (read-only: never changed)."""
    return project_sample(run_id, method)


@st.cache_resource(max_entries=8, show_spinner=False)
def _sample_figure(run_id: int, method: str, version: str) -> dict:
    """The sampled map as a Plotly figure dict, one trace per category, built once per run and method: Plotly Express
    takes 0.6 s over 5,000 points and 72 categories, a figure from its dict 0.04 s."""
    base = _sample_map(run_id, method, version)
    frame = pd.DataFrame({"x": [p[0] for p in base["xy"]], "y": [p[1] for p in base["xy"]], "category": base["category"],
                          "ad": base["ids"]})
    fig = px.scatter(frame, x="x", y="y", color="category", hover_name="ad", custom_data=["ad"], labels={"x": "", "y": ""},
                     height=520)
    fig.update_traces(marker={"size": 7, "opacity": 0.8})
    return fig.to_dict()


def query_inputs() -> dict | None:
    """The query the user chose: {"ad_id"} | {"image", "text"} | {"phrase"}."""
    pending = st.session_state.pop("sim_pending", None)  # a point picked on the map (set before the widgets exist)
    if pending:
        st.session_state["sim_mode"] = "Catalog ad"
    mode = st.radio("Query by", ["Catalog ad", "Uploaded creative", "Phrase"], horizontal=True, key="sim_mode")
    if mode == "Catalog ad":
        ad_id = pick_ad("sim_ad", pending=pending, help="or select a point on the embedding map below")
        return None if ad_id is None else {"ad_id": ad_id}
    if mode == "Uploaded creative":
        upload = st.file_uploader("Creative image", type=["png", "jpg", "jpeg", "gif", "webp", "bmp"], key="sim_upload")
        text = st.text_input("Ad text", key="sim_text", placeholder="e.g. Fresh oranges, juicy and sweet")
        if upload is None and not text.strip():
            st.info("Upload an image and/or type the ad's text.")
            return None
        image = decode_image(upload.getvalue(), name=upload.name).image if upload is not None else None
        return {"image": image, "text": text}
    phrase = st.text_input("Phrase", key="sim_phrase", placeholder="e.g. running shoes")
    return {"phrase": phrase} if phrase.strip() else None


def why_similar(run: dict, query_ad: str, results: list[dict]) -> None:
    from core.explain import explain_pair

    st.subheader("Why is it similar?")
    pick = st.selectbox("Result", [r["ad_id"] for r in results], key="sim_why",
                        format_func=lambda a: next(f"#{r['rank']} {a}" for r in results if r["ad_id"] == a))
    ex = explain_pair(run["id"], query_ad, pick)
    st.markdown("**Shared keywords:** " + (", ".join(f"`{md_escape(w)}`" for w in ex["shared_keywords"]) or "_none_")
                + ("  \n:green-badge[same category]" if ex["same_category"] else "  \n:orange-badge[different category]"))
    if ex["regions"] is None:
        st.caption(f"Region matching needs an ION run (this is {run['kind']}).")
        return
    left, right = st.columns(2)
    for col, side, ad_id in ((left, "query", query_ad), (right, "result", pick)):
        image = load_creative(_image_path(ad_id))
        if image is not None:
            col.plotly_chart(regions_figure(image, ex["regions"][side], title=f"{side}: {ad_id}", value="weight", height=320),
                             width="stretch", key=f"why_{side}")
    if ex["pairs"]:
        st.caption("Best-matching kept regions (cosine of detector features): "
                   + "; ".join(f"R{p['query_region']} ↔ R{p['result_region']} ({p['cosine']:.2f})" for p in ex["pairs"]))
    st.caption("Box labels: w = DFA attention of the shared keywords (all words when none is shared) on each kept region.")


def _image_path(ad_id: str) -> str:
    from core.catalog import get_ad

    return get_ad(ad_id)["image_path"]


def map_view(run: dict, focus: list[str]) -> None:
    """The sampled map of the run, with ``focus`` (the query ad and its results) always on it, outlined."""
    st.subheader("Embedding map")
    method = st.radio("Projection", ["pca", "tsne"], horizontal=True, key="sim_map_method",
                      format_func=lambda m: {"pca": "PCA", "tsne": "t-SNE"}[m])
    version = f"{run['id']}-{run['finished_at']}"
    data = embedding_map(run["id"], method, focus=focus, base=_sample_map(run["id"], method, version))
    frame = pd.DataFrame({"x": data["x"], "y": data["y"], "category": data["category"], "ad": data["ids"], "focus": data["focus"]})
    fig = go.Figure(_sample_figure(run["id"], method, version))
    added = frame.iloc[data["sampled"]:]  # focus ads outside the sample, in their category's colour
    if len(added):
        colours = {t.name: t.marker.color for t in fig.data}
        fig.add_scatter(x=added["x"], y=added["y"], mode="markers", showlegend=False, hovertext=added["ad"],
                        customdata=[[a] for a in added["ad"]], hoverinfo="text",
                        marker={"size": 7, "opacity": 0.8, "color": [colours.get(c, "#9ca3af") for c in added["category"]]})
    near = frame[frame["focus"]]
    if len(near):
        fig.add_scatter(x=near["x"], y=near["y"], mode="markers", name="query and results", hovertext=near["ad"],
                        customdata=[[a] for a in near["ad"]], marker={"size": 13, "symbol": "circle-open", "color": "black",
                                                                        "line": {"width": 2}})
    if data["sampled"] < data["total"]:
        st.caption(f"A fixed random sample of {data['sampled']:,} of the {data['total']:,} indexed ads, plus the query and "
                   "its results (outlined).")
    event = st.plotly_chart(fig, width="stretch", on_select="rerun", selection_mode="points", key="sim_map")
    points = event.get("selection", {}).get("points", []) if event else []
    if points:
        custom = points[0].get("customdata") or []
        chosen = custom[0] if custom else points[0].get("hovertext")
        if chosen and chosen != st.session_state.get("sim_ad"):
            st.session_state["sim_pending"] = chosen
            st.rerun()
    st.caption("Select a point to query with that ad.")


def route_note(query: dict) -> None:
    """How a phrase reached the run's embedding space (core.retrieval.phrases)."""
    if query.get("route") == "text-neighbours":
        st.caption("The phrase was matched to the ads whose texts say the same (MiniLM) — "
                   + ", ".join(f"`{a}`" for a in query["seed_ads"]) + " — and the search started from their place in this model's space.")
    elif query.get("route") == "direct" and query.get("why"):
        st.caption(f"The phrase was embedded by the model alone: {query['why']}.")


def nothing_close(result: dict) -> bool:
    """Say so when the nearest ad is farther than almost every catalogue ad is from its own nearest; True when the
    results should stay hidden (the user can still show them)."""
    c = result.get("closeness") or {}
    if not c.get("far"):
        return False
    st.warning(f"**Nothing in the catalogue is close to this query.** Its nearest ad is at distance {c['nearest']:.3f}; "
               f"{100 * c['quantile']:.0f}% of catalogue ads have a neighbour within {c['threshold']:.3f} (median "
               f"{c['typical']:.3f}). The ads below are the least far, not similar ones.", icon=":material/search_off:")
    return not st.toggle("Show them anyway", key="sim_show_far")


def main() -> None:
    stats = page_frame("Similar ads")
    st.caption("Nearest catalog ads in a model run's embedding space (Euclidean distance, FAISS index of the whole catalog).")
    run = run_picker()
    k = st.sidebar.slider("Results (k)", 1, 50, 12, key="sim_k")
    if run is None or not stats.get("ads"):
        if not stats.get("ads"):
            st.info("The catalog is empty: build the demo world (`python -m core demo`) or import ads.", icon=":material/inbox:")
        page_end(stats)
        return
    try:
        query = query_inputs()
        if query is not None:
            result = search(run["id"], k=k, **query)
            st.markdown(f"**{len(result['results'])} nearest ads** · model `{run['kind']}` run #{run['id']}")
            route_note(result["query"])
            if nothing_close(result):
                page_end(stats)
                return
            captions = [f"#{r['rank']} · distance {r['distance']:.3f}"
                        + {True: " · ✅ same category", False: " · ❌ other category", None: ""}[r["same_category"]]
                        for r in result["results"]]
            ad_grid(result["results"], columns=4, captions=captions, key_prefix="sim")
            if "ad_id" in query and result["results"]:
                why_similar(run, query["ad_id"], result["results"])
            focus = [*([query["ad_id"]] if "ad_id" in query else []), *(r["ad_id"] for r in result["results"])]
        else:
            focus = []
        map_view(run, focus)
    except ERRORS as exc:
        st.error(str(exc.args[0]) if isinstance(exc, KeyError) else str(exc))
    page_end(stats)


main()
