"""Hostile text on every page (escaped, never run as HTML) and unknown or garbage ids in URLs (a clear message)."""

from __future__ import annotations

import hashlib
import io
from datetime import datetime

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.config import REPO_ROOT

PAYLOAD = "<script>alert(1)</script><img src=x onerror=alert(2)>"
RAW_TAGS = ("<script", "<img", "onerror=", "onmouseover=")
EVIL_ID = "evil-1"
PAGES = [str(REPO_ROOT / "app.py")] + sorted(str(p) for p in (REPO_ROOT / "app_pages").glob("[0-9]_*.py"))


@pytest.fixture
def hostile_catalog(engine):
    """Two ads whose text, category and (for one) id carry HTML and script."""
    from core.filestore import put_image
    from core.store import Ad, Category, Impression, User, session_scope

    with session_scope(engine) as s:
        cat = Category(name="<b onmouseover=alert(3)>cat</b>", unseen=False, source="manifest")
        s.add(cat)
        s.flush()
        for i, ad_id in enumerate([EVIL_ID, "<img src=x onerror=alert(4)>"]):
            buf = io.BytesIO()
            Image.new("RGB", (64, 48), (30 * i, 90, 160)).save(buf, format="PNG")
            sha = hashlib.sha256(buf.getvalue()).hexdigest()
            s.add(Ad(id=ad_id, text=f"{PAYLOAD} ad {i}", lang="en", image_path=put_image(buf.getvalue(), sha, ".png"),
                     image_hash=sha, content_hash=sha, width=64, height=48, category_id=cat.id, split="test",
                     source="manifest", truth={"product_box": [2, 2, 30, 30], "printed_text": PAYLOAD}))
        s.add(User(id="=HYPERLINK(\"x\")", features={"note": PAYLOAD}))
        s.flush()
        s.add(Impression(user_id="=HYPERLINK(\"x\")", ad_id=EVIL_ID, ts=datetime(2026, 9, 1), clicked=True))
    return engine


def _nodes(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _nodes(child)


def html_rendered(at: AppTest) -> list[str]:
    """Every text the browser would render as HTML: markdown with allow_html, st.html bodies, iframes' sources."""
    out: list[str] = []
    for node in _nodes(at._tree):
        proto = getattr(node, "proto", None)
        if proto is None:
            continue
        if getattr(proto, "allow_html", False):
            out.append(proto.body)
        if node.type in ("html", "iframe", "custom_component", "components"):
            out.append(str(getattr(proto, "body", "") or getattr(proto, "srcdoc", "") or proto))
    return out


def _run(path: str, **query: str) -> AppTest:
    at = AppTest.from_file(path, default_timeout=90)
    at.query_params.update(query)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _all_text(at: AppTest) -> str:
    return "\n".join(str(getattr(n.proto, "body", "")) for n in _nodes(at._tree) if getattr(n, "proto", None) is not None)


def test_html_rendered_detects_an_unescaped_payload(hostile_catalog):
    """The check itself can fail: a page putting the text into unsafe HTML is caught."""
    def page():
        import streamlit as st

        st.markdown("safe <script>alert(1)</script>")
        st.markdown("<script>alert(1)</script>", unsafe_allow_html=True)

    at = AppTest.from_function(page)
    at.run()
    assert [h for h in html_rendered(at)] == ["<script>alert(1)</script>"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.rsplit("/", 1)[-1])
def test_hostile_ad_text_is_never_rendered_as_html(hostile_catalog, page):
    at = _run(page)
    for body in html_rendered(at):
        assert not any(tag in body for tag in RAW_TAGS), body


@pytest.mark.parametrize("ad", [EVIL_ID, "<img src=x onerror=alert(4)>"])
def test_catalog_detail_of_a_hostile_ad_escapes_it(hostile_catalog, ad):
    at = _run(PAGES[1], ad=ad)
    assert "1_Catalog" in PAGES[1]
    assert any("product (ground truth)" in h for h in html_rendered(at))  # the box legend is HTML: the walk sees it
    for body in html_rendered(at):
        assert not any(tag in body for tag in RAW_TAGS), body
    assert "There is no ad" not in _all_text(at)


@pytest.mark.parametrize("bad", ["999999", "abc", "<script>alert(1)</script>", "", " ", "evil-1' OR '1'='1", "x" * 5000, "%00"])
def test_unknown_or_garbage_ad_ids_in_the_url_give_a_clear_message(hostile_catalog, bad):
    at = _run(PAGES[1], ad=bad)
    errors = [e.value for e in at.error]
    if bad.strip():
        assert len(errors) == 1 and errors[0].startswith("There is no ad with id"), errors
        assert "<script>" not in errors[0]  # markdown-escaped in the message (\\<script\\>), shown as text
        assert ("\\<script\\>" in errors[0]) == ("<script>" in bad)
    else:  # an empty or blank id is no id: the grid
        assert errors == [] and any(b.key and b.key.startswith("open-") for b in at.button)
    for body in html_rendered(at):
        assert not any(tag in body for tag in RAW_TAGS), body


def test_page_import_over_the_upload_limit_is_refused_before_saving(home, monkeypatch):
    """ui.imports.run_import checks every upload against the core limit before writing or importing anything."""
    monkeypatch.setenv("ADLENS_MAX_UPLOAD_MB", "2")

    def page():
        from types import SimpleNamespace

        import streamlit as st

        from core.config import get_settings
        from ui.imports import run_import

        get_settings.cache_clear()
        calls = st.session_state.setdefault("calls", [])
        big = SimpleNamespace(name="../../clicks.csv", size=3 * 1024 * 1024, getvalue=lambda: b"")
        run_import("clicks", {"clicks": big}, lambda paths, _progress: calls.append(paths))

    at = AppTest.from_function(page, default_timeout=30)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    [error] = [e.value for e in at.error]
    assert "Nothing was imported" in error and "clicks.csv is too large" in error and "limit of 2 MB" in error
    assert "../" not in error and at.session_state["calls"] == []
