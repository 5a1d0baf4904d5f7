"""Ad cards: thumbnail, id, category, split badge, unseen marker and a text snippet."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

from ui.common import md_escape
from ui.images import placeholder, thumbnail

SPLIT_COLORS = {"train": "blue", "val": "orange", "test": "green"}
CATALOG_PAGE = "app_pages/1_Catalog.py"


def snippet(text: str, limit: int = 90) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def badges(record: dict[str, Any]) -> str:
    """Markdown badges: split (colour per split), unseen-category marker, source when not a manifest."""
    split = record.get("split") or "?"
    parts = [f":{SPLIT_COLORS.get(split, 'gray')}-badge[{md_escape(split)}]"]
    if record.get("unseen_category"):
        parts.append(":violet-badge[:material/visibility_off: unseen category]")
    if record.get("source") == "demo":
        parts.append(":gray-badge[demo]")
    return " ".join(parts)


def ad_card(record: dict[str, Any], *, on_open: Callable[[str], None] | None = None, caption: str | None = None,
            key_prefix: str = "card") -> None:
    """One creative in a bordered card. ``on_open(ad_id)`` runs when its Details button is pressed;
    without it the button is a link to the ad on the Catalog page."""
    with st.container(border=True):
        thumb = thumbnail(record["image_path"]) if record.get("image_path") else None
        st.image(thumb if thumb is not None else placeholder(), width="stretch")
        category = md_escape(record.get("category") or "no category")
        st.markdown(f"**{md_escape(record['id'])}** · {category}  \n{badges(record)}")
        st.caption(md_escape(snippet(record.get("text", ""))) or "—")
        if caption:
            st.caption(caption)
        if on_open is not None:
            st.button("Details", key=f"{key_prefix}-{record['id']}", icon=":material/open_in_full:",
                      on_click=on_open, args=(record["id"],), width="stretch")
        else:
            try:
                st.page_link(CATALOG_PAGE, label="Details", icon=":material/open_in_full:", query_params={"ad": record["id"]})
            except Exception:  # noqa: BLE001 - page list unknown (page run on its own)
                pass


def ad_grid(records: Sequence[dict[str, Any]], *, columns: int = 4, on_open: Callable[[str], None] | None = None,
            captions: Sequence[str | None] | None = None, key_prefix: str = "card") -> None:
    """Cards in rows of ``columns``."""
    for start in range(0, len(records), columns):
        cols = st.columns(columns)
        for offset, record in enumerate(records[start:start + columns]):
            with cols[offset]:
                i = start + offset
                ad_card(record, on_open=on_open, caption=captions[i] if captions else None, key_prefix=key_prefix)
