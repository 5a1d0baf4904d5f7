"""Browser tests: the real app served by `streamlit run`, opened in headless Chromium.

Every page must render in a browser with no exception box, on a small demo world. A page has
finished when the OpenMoji credit, the last thing every page draws under demo data, shows in its
main area. Skipped only where no Chromium is installed (.ci/run installs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import Browser, chromium_binary, free_port, wait_for_http
from ui.common import OPENMOJI_TEXT

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed")


@pytest.fixture(scope="module")
def served_app(tmp_path_factory):
    home = tmp_path_factory.mktemp("browser-home")
    env = {**os.environ, "ADLENS_HOME": str(home), "ADLENS_OFFLINE": "true", "ADLENS_DEVICE": "cpu"}
    env.pop("ADLENS_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "core", "demo", "--ads", "120", "--users", "600", "--seed", "3", "--json"],
                   cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/_stcore/health", timeout=90)
        with Browser() as browser:
            yield browser, f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()


def _page_urls() -> list[tuple[str, str]]:
    from ui.common import page_files, page_label, page_slug

    return [("", "Overview")] + [(page_slug(p), page_label(p)) for p in page_files()]


def test_overview_shows_the_demo_world(served_app):
    browser, base = served_app
    browser.open(base + "/")
    body = browser.wait_for_text(OPENMOJI_TEXT, timeout=120)
    assert "Generated demo data" in body
    assert "120" in body  # the ads count
    assert "OpenMoji" in body
    assert browser.count('[data-testid="stException"]') == 0


def test_catalog_grid_shows_creatives(served_app):
    browser, base = served_app
    browser.open(base + "/catalog")
    body = browser.wait_for_text(OPENMOJI_TEXT, timeout=120)
    assert "Showing 1–48 of 120 ads" in body
    assert browser.count('[data-testid="stImage"] img, [data-testid="stImage"]') > 0
    assert browser.count('[data-testid="stException"]') == 0


@pytest.mark.parametrize("slug,label", _page_urls())
def test_every_page_renders_without_an_exception(served_app, slug, label):
    browser, base = served_app
    browser.open(f"{base}/{slug}")
    body = browser.wait_for_text(OPENMOJI_TEXT, timeout=120)
    assert "Generated demo data" in body
    # a deep link goes through the router: its navigation names the Overview (Streamlit's own list would say 'app')
    nav = browser.evaluate("(document.querySelector('[data-testid=\"stSidebarNav\"]') || {}).innerText") or ""
    assert "Overview" in nav and label in nav, nav
    assert browser.count('[data-testid="stException"]') == 0, body[:2000]
    assert "Traceback" not in body
