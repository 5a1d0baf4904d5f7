"""One ad picker for every page: a search box over id, text and category, and a selectbox of its first matches.

Whatever the catalogue's size, a run of the picker issues a bounded number of bounded queries (core.catalog.search_ads:
a primary-key lookup and one LIMIT query; core.catalog.light_ad for a choice made elsewhere), never a listing of the
catalogue. The selectbox's value lives in ``st.session_state[key]``, so the pages' keys (``r_ad``, ``sim_ad``, ``att_ad``)
and what tests set there keep working.
"""

from __future__ import annotations

import streamlit as st

from core.catalog import light_ad, search_ads
from ui.common import catalog_stats, engine

MATCHES = 50  # options listed under the search box
EXCERPT = 60  # characters of the ad text shown next to its id


def _label(record: dict) -> str:
    text = " ".join(str(record.get("text") or "").split())
    text = text if len(text) <= EXCERPT else text[: EXCERPT - 1] + "…"
    category = f" [{record['category']}]" if record.get("category") else ""
    return f"{record['id']} — {text}{category}" if text else f"{record['id']}{category}"


def _forget_choice(key: str) -> None:
    """A new search selects its first match (the choice made before it may not be among them)."""
    st.session_state.pop(key, None)


def pick_ad(key: str, *, label: str = "Ad", pending: str | None = None, help: str | None = None,  # noqa: A002 - Streamlit's name
            where=st) -> str | None:
    """The chosen ad id, or None when the catalogue is empty or nothing matches the search (the picker says which).

    The default choice, in order: ``pending`` (picked on another widget or page before this one is drawn), the URL's
    ``?ad=`` (when this picker has no choice yet), the current choice, the first match.
    """
    eng = engine()
    if pending and str(pending).strip():
        st.session_state[key] = str(pending).strip()
        st.session_state[f"{key}_find"] = ""  # the search that may hide it is cleared
    elif key not in st.session_state:
        from_url = str(st.query_params.get("ad") or "").strip()
        if from_url:
            st.session_state[key] = from_url
    total = int(catalog_stats().get("ads", 0))
    query = where.text_input("Find an ad", key=f"{key}_find", placeholder="ad id, text or category",
                             on_change=_forget_choice, args=(key,),
                             help=f"lists the first {MATCHES} ads whose id, text or category contains these words")
    matches = search_ads(query, limit=MATCHES, engine=eng)
    by_id = {m["id"]: m for m in matches}
    current = st.session_state.get(key)
    if current and current not in by_id:
        known = light_ad(str(current), engine=eng)
        if known is not None:  # a choice made elsewhere stays selectable, first
            by_id = {known["id"]: known, **by_id}
        else:
            where.warning(f"There is no ad with id “{current}” in this catalog: showing the first match instead.",
                          icon=":material/search_off:")
            st.session_state.pop(key, None)
    if not by_id:
        if query.strip():
            where.warning(f"No ad's id, text or category contains “{query.strip()}”.", icon=":material/search_off:")
        else:
            where.info("The catalog is empty: build the demo world (`python -m core demo`) or import ads.", icon=":material/inbox:")
        return None
    if st.session_state.get(key) not in by_id:
        st.session_state[key] = next(iter(by_id))
    shown = f"{len(matches)} match{'es' if len(matches) != 1 else ''}" + (f", first {MATCHES} listed" if len(matches) >= MATCHES else "")
    return where.selectbox(f"{label} ({total:,} in the catalog; {shown})", list(by_id), key=key,
                           format_func=lambda a: _label(by_id[a]), help=help)
