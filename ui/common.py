"""Page frame shared by every page: config, logo, navigation, status block, demo banner, attribution."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import streamlit as st
from sqlalchemy import Engine

from core.config import REPO_ROOT, Settings, get_settings

ASSETS = REPO_ROOT / "assets"
LOGO = ASSETS / "logo.svg"
ICON = ASSETS / "icon.png"
PAGES_DIR = REPO_ROOT / "app_pages"

DEMO_BANNER = "Generated demo data — synthetic creatives, users and clicks"
OPENMOJI_TEXT = "Emoji artwork: OpenMoji – the open-source emoji and icon project, CC BY-SA 4.0"
OPENMOJI_LICENSE_URL = "https://creativecommons.org/licenses/by-sa/4.0/"
OPENMOJI_URL = "https://openmoji.org/"
POS_TAGGER_TEXT = ("English keyword labels: part-of-speech tagger denckring-en-pos (Dennis Senzel), "
                   "trained on UD English-EWT, model CC BY-SA 4.0")

# icons for the page list, by a word in the page's file name (others get a generic icon)
PAGE_ICONS = {
    "catalog": ":material/photo_library:",
    "region": ":material/center_focus_weak:",
    "similar": ":material/join_inner:",
    "phrase": ":material/manage_search:",
    "audience": ":material/groups:",
    "attention": ":material/visibility:",
    "model": ":material/model_training:",
    "train": ":material/model_training:",
    "package": ":material/inventory_2:",
    "expansion": ":material/trending_up:",
    "papers": ":material/compare:",
}


def settings() -> Settings:
    return get_settings()


@st.cache_resource(show_spinner="Opening the database…")
def _engine_for(url: str) -> Engine:
    from core.store import get_engine

    return get_engine(url)


def engine() -> Engine:
    """The (migrated) engine of the configured database, shared by every session of this server."""
    cfg = get_settings()
    cfg.ensure_dirs()
    return _engine_for(cfg.resolved_database_url)


@st.cache_data(ttl=30, show_spinner=False)
def _stats_for(url: str) -> dict[str, Any]:  # noqa: ARG001 - the URL keys the cache
    from core.catalog import stats

    return stats(engine())


def catalog_stats() -> dict[str, Any]:
    """core.catalog.stats() of the configured database, cached for 30 s (cleared after imports)."""
    return _stats_for(get_settings().resolved_database_url)


def data_changed() -> None:
    """Forget cached counts after an import or a demo build."""
    _stats_for.clear()


def has_demo_data(stats: dict[str, Any]) -> bool:
    return bool(stats.get("ads_by_source", {}).get("demo"))


def page_label(path: Path) -> str:
    """'3_Similar_ads.py' -> 'Similar ads'."""
    stem = re.sub(r"^\d+[_\- ]*", "", path.stem).replace("_", " ").strip()
    return (stem[:1].upper() + stem[1:]) if stem else path.stem  # 'Papers vs AdLens' keeps its capitals


def page_icon(path: Path) -> str:
    name = path.stem.lower()
    return next((icon for word, icon in PAGE_ICONS.items() if word in name), ":material/article:")


def page_files() -> list[Path]:  # the router in app.py lists these
    """The pages in ``app_pages/``, in Streamlit's order (numeric prefix, then name)."""

    def order(p: Path) -> tuple[int, str]:
        match = re.match(r"^(\d+)", p.stem)
        return (int(match.group(1)) if match else 10**6, p.stem.lower())

    return sorted((p for p in PAGES_DIR.glob("*.py") if not p.name.startswith("_")), key=order)


def page_setup(title: str) -> None:
    """First call of every page: browser tab title, wide layout and the logo."""
    st.set_page_config(page_title=f"{title} · AdLens", page_icon=str(ICON), layout="wide")
    st.logo(str(LOGO), size="large", icon_image=str(ICON))


def page_slug(path: Path) -> str:
    """URL path of a page: '3_Similar_ads.py' -> 'similar-ads'.

    Deliberately unlike Streamlit's own names for page files ('Similar_ads'): a deep link then always
    goes through the router in app.py (with its navigation), never straight to the page file.
    """
    return (re.sub(r"^\d+[_\- ]*", "", path.stem) or path.stem).replace(" ", "-").replace("_", "-").lower()


def sidebar_status(stats: dict[str, Any]) -> None:
    """Compact 'what is running' block at the bottom of the sidebar."""
    from core.device import resolve_device
    from core.offline import network_status

    with st.sidebar:
        with st.container(border=True):
            st.markdown("**Status**")
            try:
                dev = resolve_device()
                st.caption(f":material/memory: Device: **{dev.name}** ({dev.detail})")
            except RuntimeError as exc:
                st.caption(f":material/error: Device: {exc}")
            offline, _reason = network_status()
            st.caption(":material/cloud_off: Offline: offline default models" if offline else ":material/cloud_done: Online")
            st.caption(f":material/database: {stats.get('ads', 0):,} ads · {stats.get('users', 0):,} users")
        if has_demo_data(stats):
            openmoji_attribution(sidebar=True)


def demo_banner(stats: dict[str, Any]) -> None:
    """A clear label on every page while the catalog holds generated demo ads."""
    if has_demo_data(stats):
        st.info(f"**{DEMO_BANNER}.** Nothing here is a real ad, user or click.", icon=":material/science:")


def openmoji_attribution(sidebar: bool = False) -> None:
    text = f"{OPENMOJI_TEXT} — [license]({OPENMOJI_LICENSE_URL}) · [openmoji.org]({OPENMOJI_URL})"
    (st.sidebar if sidebar else st).caption(text + f"  \n{POS_TAGGER_TEXT} — [license]({OPENMOJI_LICENSE_URL})")


def page_frame(title: str, heading: str | None = None) -> dict[str, Any]:
    """First call of a page: page_setup, the heading and the demo banner; returns the catalog stats.

    End the page with :func:`page_end` (status block under the sidebar knobs, attribution footer).
    """
    page_setup(title)
    st.title(heading or title)
    stats = catalog_stats()
    demo_banner(stats)
    models_building()
    return stats


def models_building() -> None:
    """While ``core demo --models background`` runs: its stages, live (ui.waiting.build_panel)."""
    from core.demo.models import is_building

    if is_building():
        from ui.waiting import build_panel

        build_panel()


def page_end(stats: dict[str, Any]) -> None:
    """Last call of a page: the status block at the bottom of the sidebar and, for demo data, the
    OpenMoji attribution under the page."""
    sidebar_status(stats)
    if has_demo_data(stats):
        st.divider()
        openmoji_attribution()


def md_escape(text: str) -> str:
    """Escape Markdown/badge syntax in user data (ad texts, category names)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+|!:~$-])", r"\\\1", text)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size:,.1f} GB"
