"""Catalog: browse the creatives (filters, pages, detail view) and import ads, clicks and users."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `streamlit run` puts only the script's folder on the path

import streamlit as st

from core.catalog import AdFilter, ad_clicks, category_names, count_ads, get_ad, list_ads, source_names
from core.store.models import SPLITS
from ui.cards import SPLIT_COLORS, ad_grid
from ui.common import engine, md_escape, page_end, page_frame
from ui.drawing import DISTRACTOR_COLOR, PRODUCT_COLOR, draw_boxes, truth_boxes
from ui.images import load_creative, placeholder
from ui.imports import importer, last_report, run_import

PAGE_SIZES = (24, 48, 96)


def main() -> None:
    stats = page_frame("Catalog")
    browse, importer = st.tabs([":material/photo_library: Browse", ":material/upload: Import"])
    with browse:
        if not stats["ads"]:
            st.info("The catalog is empty. Import a manifest of ads in the **Import** tab, or build the demo world "
                    "from the Overview page (`python -m core demo`).", icon=":material/inbox:")
        else:
            flt, page_size = sidebar_filters()  # always drawn, so the filters survive a visit to one ad
            ad_id = (st.query_params.get("ad") or "").strip()  # `?ad=%20` is no id: the grid
            if ad_id:
                detail_view(ad_id)
            else:
                browse_view(flt, page_size)
    with importer:
        import_tab()
    page_end(stats)


# ---------------------------------------------------------------- browsing


def sidebar_filters() -> tuple[AdFilter, int]:
    """The filter knobs in the sidebar (changing one goes back to the grid); returns the filter and the page size."""
    eng = engine()
    with st.sidebar:
        st.header("Filters")
        text = st.text_input("Search", placeholder="text, ad id or category", key="f_text", on_change=close_ad)
        categories = st.multiselect("Category", category_names(eng), key="f_categories", placeholder="all categories",
                                    on_change=close_ad)
        splits = st.pills("Split", list(SPLITS), selection_mode="multi", key="f_splits", on_change=close_ad)
        sources = st.multiselect("Source", source_names(eng), key="f_sources", placeholder="all sources", on_change=close_ad)
        unseen = st.toggle("Unseen categories only", key="f_unseen", on_change=close_ad,
                           help="categories held out of training: their ads appear only in the test split")
        page_size = st.selectbox("Ads per page", PAGE_SIZES, index=1, key="f_page_size", on_change=close_ad)
    flt = AdFilter(categories=categories or None, splits=list(splits) or None, sources=sources or None,
                   text=text or None, unseen_only=unseen)
    return flt, page_size


def browse_view(flt: AdFilter, page_size: int) -> None:
    eng = engine()
    total = count_ads(flt, engine=eng)
    if total == 0:
        st.warning("No ad matches these filters. Clear some filters in the sidebar.", icon=":material/filter_alt_off:")
        return
    head, grid, foot = st.container(), st.container(), st.container()
    pages = (total + page_size - 1) // page_size
    with foot:
        # a new filter or page size is a new widget key, so the page goes back to 1; the page survives a visit to one ad
        key = f"page-{hash((repr(flt), page_size))}"
        saved_key, saved_page = st.session_state.get("catalog_page", (None, 1))
        default = min(saved_page, pages) if saved_key == key else 1
        page = st.pagination(pages, default=default, key=key) if pages > 1 else 1
        st.session_state["catalog_page"] = (key, page)
    records, _ = list_ads(flt, limit=page_size, offset=(page - 1) * page_size, engine=eng, count=False)  # counted above
    first, last = (page - 1) * page_size + 1, (page - 1) * page_size + len(records)
    head.caption(f"Showing {first:,}–{last:,} of {total:,} ads")
    with grid:
        ad_grid(records, columns=4, on_open=open_ad, key_prefix="open")


def open_ad(ad_id: str) -> None:
    st.query_params["ad"] = ad_id


def close_ad() -> None:
    st.query_params.pop("ad", None)


# ---------------------------------------------------------------- one ad


def detail_view(ad_id: str) -> None:
    st.button("Back to all ads", icon=":material/arrow_back:", on_click=close_ad, key="back")
    try:
        record = get_ad(ad_id, engine=engine())
    except KeyError:
        st.error(f"There is no ad with id **{md_escape(ad_id)}** in this catalog. It may have been removed, "
                 "or the link has a typo.", icon=":material/search_off:")
        return
    st.subheader(md_escape(record["id"]))
    left, right = st.columns([3, 2], gap="large")
    with left:
        creative_with_boxes(record)
    with right:
        ad_facts(record)


def creative_with_boxes(record: dict) -> None:
    image = load_creative(record["image_path"])
    if image is None:
        st.image(placeholder(512), width="stretch")
        st.warning("The image file of this ad is missing or unreadable.", icon=":material/broken_image:")
        return
    boxes = truth_boxes(record.get("truth"))
    show = bool(boxes) and st.toggle("Show ground-truth boxes", value=True, key="show_boxes")
    st.image(draw_boxes(image, boxes) if show else image, width="stretch")
    if show:
        n_distractors = sum(1 for _, role in boxes if role == "distractor")
        st.markdown(
            f"{_swatch(PRODUCT_COLOR)} product (ground truth) &nbsp;&nbsp; "
            f"{_swatch(DISTRACTOR_COLOR)} distractor objects ({n_distractors})",
            unsafe_allow_html=True,
        )


def _swatch(rgb: tuple[int, int, int]) -> str:
    return (f"<span style='display:inline-block;width:0.9em;height:0.9em;border:3px solid rgb{rgb};"
            "vertical-align:middle;border-radius:2px'></span>")


def ad_facts(record: dict) -> None:
    st.markdown("**Text**")
    st.markdown(f"> {md_escape(record['text'])}")
    split = record["split"]
    category = md_escape(record["category"] or "none")
    unseen = " :violet-badge[unseen category]" if record["unseen_category"] else ""
    facts = {
        "Category": f"{category}{unseen}",
        "Split": f":{SPLIT_COLORS.get(split, 'gray')}-badge[{md_escape(split)}]",
        "Source": md_escape(record["source"]),
        "Language": md_escape(record["lang"]),
        "Size": f"{record['width']} × {record['height']} px",
        "Image hash": f"`{record['image_hash'][:16]}…`",
    }
    with st.container(border=True):
        for label, value in facts.items():
            name, val = st.columns([1, 2])
            name.caption(label)
            val.markdown(value)
    counts = ad_clicks(record["id"], engine=engine())
    imps, clicks = counts["impressions"], counts["clicks"]
    c1, c2, c3 = st.columns(3)
    c1.metric("Impressions", f"{imps:,}")
    c2.metric("Clicks", f"{clicks:,}")
    c3.metric("CTR", f"{clicks / imps:.2%}" if imps else "—")
    printed = (record.get("truth") or {}).get("printed_text")
    if printed:
        st.caption(f"Printed on the creative: “{md_escape(str(printed))}”")
    st.caption(f"Link to this ad: add `?ad={record['id']}` to this page's address.")


# ---------------------------------------------------------------- import


def import_tab() -> None:
    st.markdown("Imports are **all-or-nothing**: if any row is wrong, nothing is imported and every bad row is listed. "
                "Re-importing the same file is safe (identical rows are skipped). The same imports run from the "
                "command line: `python -m core ingest ads|clicks|users --help`.")
    import_ads_form()
    col_clicks, col_users = st.columns(2)
    with col_clicks:
        import_clicks_form()
    with col_users:
        import_users_form()


def import_ads_form() -> None:
    with st.container(border=True):
        st.subheader(":material/photo_library: Ads")
        st.caption("A manifest (CSV or Parquet) with columns **ad_id, text, image, category** and optionally "
                   "**split** (train/val/test) and **lang**, plus a .zip holding the image files named in `image`.")
        c1, c2 = st.columns(2)
        manifest = c1.file_uploader("Manifest", type=["csv", "parquet"], key="up_manifest")
        images = c2.file_uploader("Images (.zip)", type=["zip"], key="up_images")
        if st.button("Import ads", type="primary", disabled=not (manifest and images), key="do_import_ads"):
            import_manifest = importer("core.ingest.manifest", "import_manifest")
            if import_manifest is not None:
                run_import("ads", {"manifest": manifest, "images": images},
                           lambda p, progress: import_manifest(p["manifest"], p["images"], engine=engine(), progress=progress))
        last_report("ads")


def import_clicks_form() -> None:
    with st.container(border=True):
        st.subheader(":material/ads_click: Click log")
        st.caption("CSV with **user_id, ad_id, clicked, timestamp** (ISO 8601). Users and ads must exist already.")
        upload = st.file_uploader("Click log (CSV)", type=["csv"], key="up_clicks")
        if st.button("Import clicks", type="primary", disabled=upload is None, key="do_import_clicks"):
            import_clicks = importer("core.ingest.clicks", "import_clicks")
            if import_clicks is not None:
                run_import("clicks", {"clicks": upload},
                           lambda p, progress: import_clicks(p["clicks"], engine=engine(), progress=progress))
        last_report("clicks")


def import_users_form() -> None:
    with st.container(border=True):
        st.subheader(":material/groups: Users")
        st.caption("CSV with **user_id** and one column per feature (age band, region, device, …).")
        upload = st.file_uploader("User features (CSV)", type=["csv"], key="up_users")
        if st.button("Import users", type="primary", disabled=upload is None, key="do_import_users"):
            import_users = importer("core.ingest.users", "import_users")
            if import_users is not None:
                run_import("users", {"users": upload},
                           lambda p, progress: import_users(p["users"], engine=engine(), progress=progress))
        last_report("users")


main()
