"""AdLens entry point: the page router and the Overview page.

Run with ``streamlit run app.py``. Every ``app_pages/*.py`` file is listed in the navigation with a
readable name ('3_Similar_ads.py' -> 'Similar ads'), so a new page only needs its file. The
Overview shows what is loaded, which models would run, on which device, and how to get data in.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
import streamlit as st

from ui.common import data_changed, human_bytes, page_end, page_files, page_frame, page_icon, page_label, page_setup, page_slug

DEMO_SIZES = {  # label -> build_world sizes
    "Small — 400 ads, 4,000 users (under a minute)": {"n_ads": 400, "n_users": 4000},
    "Full — 2,000 ads, 20,000 users (a few minutes)": {"n_ads": 2000, "n_users": 20000},
}


def main() -> None:
    """The router: Overview (this file) plus every page file, each with a readable title."""
    page_setup("Overview")
    pages = [st.Page(overview, title="Overview", icon=":material/dashboard:", default=True)]
    pages += [st.Page(f"app_pages/{path.name}", title=page_label(path), icon=page_icon(path), url_path=page_slug(path))
              for path in page_files()]
    st.navigation(pages).run()


def overview() -> None:
    stats = page_frame("Overview", heading="AdLens")
    st.markdown("Review ad creatives and their audiences: **similar-ad search** (ION / ToTYEmb), "
                "**regions** that matter to the text, **phrase–creative relevance** and **audience expansion**.")
    if not stats["ads"]:
        empty_catalog()
    else:
        catalog_summary(stats)
        default_models()
    models_panel()
    left, right = st.columns(2, gap="large")
    with left:
        device_panel()
    with right:
        database_panel(stats)
    how_to_import()
    page_end(stats)


def empty_catalog() -> None:
    """The call to action when nothing is loaded yet."""
    with st.container(border=True):
        st.subheader(":material/rocket_launch: The catalog is empty — start with the demo world")
        st.markdown("The demo world is **generated**: synthetic creatives drawn from OpenMoji artwork on busy "
                    "backgrounds, simulated users and clicks. It is deterministic for a seed. From a terminal:")
        st.code("python -m core demo", language="bash")
        st.markdown("or build one here:")
        build_world = demo_builder()
        if build_world is None:
            st.warning("The demo generator (`core.demo`) is not part of this installation yet; "
                       "use the command above once it is, or import your own ads.", icon=":material/construction:")
            return
        c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
        size = c1.selectbox("Size", list(DEMO_SIZES), key="demo_size")
        seed = c2.number_input("Seed", min_value=0, value=0, step=1, key="demo_seed")
        with_models = st.checkbox("Then build its default models in the background (about 20 minutes on 2 CPU cores; "
                                  "the pages fill in as each lands)", value=True, key="demo_models")
        if st.button("Build the demo world", type="primary", icon=":material/science:", key="build_demo"):
            run_demo_build(build_world, DEMO_SIZES[size], int(seed), with_models)
        st.page_link("app_pages/1_Catalog.py", label="…or import your own ads on the Catalog page", icon=":material/upload:")


def demo_builder():
    """core.demo.build_world, or None while the demo package is not installed."""
    try:
        from core.demo import build_world
    except ImportError:
        return None
    return build_world


def run_demo_build(build_world, sizes: dict[str, int], seed: int, with_models: bool = False) -> None:
    from ui.imports import st_progress

    progress, bar = st_progress("demo: starting")
    try:
        summary = build_world(seed=seed, progress=progress, **sizes)
    except (ValueError, RuntimeError, OSError) as exc:
        bar.empty()
        st.error(f"The demo world could not be built: {exc}", icon=":material/error:")
        return
    bar.progress(1.0, text="demo: done")
    data_changed()
    if with_models:
        from core.demo.models import start_background

        start_background()
    st.success(f"Demo world built: {summary.get('ads', sizes['n_ads']):,} ads, {summary.get('users', sizes['n_users']):,} users.",
               icon=":material/check_circle:")
    st.button("Show it", type="primary", key="demo_refresh")  # a rerun shows the loaded catalog


def catalog_summary(stats: dict) -> None:
    """Headline counts, then ads by split and by source."""
    ctr = stats["clicks"] / stats["impressions"] if stats["impressions"] else None
    cols = st.columns(6)
    cols[0].metric("Ads", f"{stats['ads']:,}")
    cols[1].metric("Categories", f"{stats['categories']:,}", help=f"{stats['unseen_categories']:,} unseen (held out of training)")
    cols[2].metric("Users", f"{stats['users']:,}")
    cols[3].metric("Impressions", f"{stats['impressions']:,}")
    cols[4].metric("Clicks", f"{stats['clicks']:,}", help=f"CTR {ctr:.2%}" if ctr is not None else None)
    cols[5].metric("Packages", f"{stats['packages']:,}", help=f"{stats['model_runs']:,} model runs")
    c1, c2, c3 = st.columns(3)
    with c1:
        st.markdown("**Ads by split**")
        st.dataframe(_counts(stats["ads_by_split"], "split"), hide_index=True, width="stretch")
    with c2:
        st.markdown("**Ads by source**")
        st.dataframe(_counts(stats["ads_by_source"], "source"), hide_index=True, width="stretch")
    with c3:
        st.markdown("**More**")
        st.markdown(f"- **{stats['unseen_categories']:,}** unseen categories (test split only)\n"
                    f"- **{stats['model_runs']:,}** model runs\n"
                    f"- CTR overall: **{f'{ctr:.2%}' if ctr is not None else '—'}**")
        st.page_link("app_pages/1_Catalog.py", label="Browse the catalog", icon=":material/photo_library:")


def _counts(counts: dict[str, int], name: str) -> pd.DataFrame:
    order = {"train": 0, "val": 1, "test": 2}
    rows = sorted(counts.items(), key=lambda kv: (order.get(kv[0], 9), kv[0]))
    return pd.DataFrame(rows, columns=[name, "ads"])


@st.cache_data(ttl=60, show_spinner=False)
def _variants() -> tuple[list[dict], list[dict], bool, str]:
    from dataclasses import asdict

    from core.inventory import model_variants, offline_packages
    from core.offline import network_status

    offline, reason = network_status()
    return [asdict(m) for m in model_variants()], [asdict(p) for p in offline_packages()], offline, reason


@st.cache_data(ttl=20, show_spinner="Checking the default models…")
def _built(url: str, landed: tuple) -> dict[str, bool]:  # noqa: ARG001 - the URL and the landed stages key the cache
    from core.demo.models import built
    from ui.common import engine

    return built(engine())


def default_models() -> None:
    """The models every page uses (core.demo.models): which are built, and one button to build the rest in the background."""
    from core.config import get_settings
    from core.demo.models import STAGES, is_building, read_status, start_background

    status = read_status()
    building = is_building(status)
    landed = tuple(sorted(n for n, v in status.get("stages", {}).items() if v.get("state") in ("done", "up to date")))
    done = _built(get_settings().resolved_database_url, landed)
    missing = [s for s in STAGES if not done.get(s.name)]
    with st.expander(f":material/model_training: Default models: {len(STAGES) - len(missing)} of {len(STAGES)} built"
                     + (" — building now" if building else ""), expanded=bool(missing) and not building):
        st.dataframe(pd.DataFrame([{"model": s.title, "built": "yes" if done.get(s.name) else "no",
                                    "budget (2 CPU cores)": f"{s.budget_s // 60} min {s.budget_s % 60:02d} s"} for s in STAGES]),
                     hide_index=True, width="stretch")
        if missing and not building:
            st.caption("`python -m core demo` builds them all; from here they build in the background while you use the app.")
            if st.button(f"Build the {len(missing)} missing model(s) in the background", icon=":material/play_arrow:",
                         key="build_models"):
                pid = start_background()
                st.toast("Building in the background" if pid else "A build is already running")
                st.rerun()


def models_panel() -> None:
    st.subheader(":material/neurology: Models and weights")
    models, packages, offline, reason = _variants()
    if offline:
        st.caption(f":material/cloud_off: **Offline** ({reason}): hub weights (YOLO, CLIP, LXMERT) are not downloaded; "
                   "the offline defaults built from weights inside installed packages run instead.")
    else:
        st.caption(f":material/cloud_done: **Online** ({reason}): standard weights are used when they can be fetched.")
    table = pd.DataFrame([{"model": m["model"], "runs now": m["runs"],
                           "why": m["reason"], "standard weights": m["standard"], "offline default": m["offline_default"]}
                          for m in models])
    st.dataframe(table, hide_index=True, width="stretch")
    with st.expander("Offline weight packages"):
        st.dataframe(pd.DataFrame([{"package": p["package"], "installed": p["installed"], "provides": p["provides"]}
                                   for p in packages]), hide_index=True, width="stretch")


def device_panel() -> None:
    from core.device import resolve_device

    st.subheader(":material/memory: Device")
    try:
        dev = resolve_device()
    except RuntimeError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    st.markdown(f"**{dev.name.upper()}** — {dev.detail}  \n{dev.reason}" + ("  \nhalf precision on" if dev.half else ""))


def database_panel(stats: dict) -> None:
    st.subheader(":material/database: Database")
    st.code(stats["database"], language=None, wrap_lines=True)
    st.caption(f"Size on disk: {human_bytes(stats['database_bytes'])}. Set `ADLENS_DATABASE_URL` for PostgreSQL, "
               "`ADLENS_HOME` for the data folder.")


def how_to_import() -> None:
    with st.expander(":material/upload: How to import data", expanded=False):
        st.markdown("In the app: the **Import** tab of the Catalog page (manifest + zip of images, click logs, users). "
                    "From a terminal:")
        st.code(
            "python -m core demo                     # the generated demo world\n"
            "python -m core ingest ads manifest.csv --images images.zip\n"
            "python -m core ingest coco --instances instances.json --captions captions.json --images val2017/\n"
            "python -m core ingest users users.csv\n"
            "python -m core ingest clicks clicks.csv\n"
            "python -m core stats --json",
            language="bash",
        )


main()
