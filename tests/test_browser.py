"""Browser tests: the real app served by `streamlit run`, opened in headless Chromium through Playwright.

On a small demo world, every page of app.py's router must render in a browser: opened cold from its URL in a
fresh browser context (a deep link), and reached by clicking through the navigation in one session. A page
fails on a Streamlit exception box, on Streamlit's "Page not found" dialog and on an error in the console that
comes from the app. Each page's full-page screenshot is kept under $ADLENS_TEST_ARTIFACTS (test-artifacts/).

Chromium is Debian's (no Playwright browser download); without it these tests skip, and fail under CI=true.
Deselect them with ``-m "not browser"``.
"""

from __future__ import annotations

import re

import pytest

from tests.browser_app import (
    BROWSER_MARKS,
    PAGE_NOT_FOUND,
    RENDER_TIMEOUT_S,
    VIEWPORT,
    AppPage,
    ConsoleWatch,
    app_pages,
    demo_home,
    main_text,
    nav_text,
    page_problems,
    screenshot,
    serve_app,
    wait_until_rendered,
)
from ui.common import OPENMOJI_TEXT

pytestmark = BROWSER_MARKS

PAGES = app_pages()
TIMEOUT_MS = RENDER_TIMEOUT_S * 1000


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    home, env = demo_home(tmp_path_factory, "browser-home")
    with serve_app(env, log_path=home / "streamlit.log") as base:
        yield base


@pytest.fixture
def browser_context_args(browser_context_args, app_url):
    return {**browser_context_args, "base_url": app_url, "viewport": VIEWPORT}


@pytest.fixture
def console(page, app_url):
    return ConsoleWatch(origin=app_url).attach(page)


def open_page(page, path: str) -> str:
    """Open ``path`` of the app and wait for Streamlit to finish it; returns the main area's text."""
    page.goto(path, wait_until="domcontentloaded")
    return finish(page)


def finish(page) -> str:
    # every page draws the OpenMoji credit last under demo data; then wait for the run to be over
    page.locator('[data-testid="stMain"]').get_by_text(OPENMOJI_TEXT).first.wait_for(timeout=TIMEOUT_MS)
    wait_until_rendered(page)
    return main_text(page)


def heading(page) -> str:
    h1 = page.locator('[data-testid="stMain"] h1').first
    h1.wait_for(state="visible", timeout=10_000)
    return h1.inner_text()


def assert_page_rendered(page, console: ConsoleWatch, app_page: AppPage, body: str) -> None:
    problems = page_problems(page, console)
    assert not problems, f"{app_page.path}:\n" + "\n\n".join(problems)
    assert "Traceback" not in body, body[:3000]
    assert page.title() == f"{app_page.label} · AdLens", page.title()
    title = heading(page)
    assert app_page.heading_matches(title), f"{app_page.path}: unexpected heading {title!r}"
    assert "Generated demo data" in body
    # the navigation is the router's (a deep link to a pages/ file without it would list 'app')
    nav = nav_text(page)
    assert "Overview" in nav and app_page.label in nav, nav


def test_overview_shows_the_demo_world(page, console):
    body = open_page(page, "/")
    assert "Generated demo data" in body
    assert "120" in body  # the ads count
    assert "OpenMoji" in body
    assert page.locator('[data-testid="stMetric"]').filter(has_text="Ads").first.inner_text().split()[-1] == "120"
    assert not page_problems(page, console)


def test_catalog_grid_shows_creatives(page, console):
    body = open_page(page, "/catalog")
    assert "Showing 1–48 of 120 ads" in body
    images = page.locator('[data-testid="stMain"] [data-testid="stImage"] img')
    assert images.count() > 0
    assert images.first.evaluate("img => img.complete && img.naturalWidth > 0"), "the first creative did not load"
    assert not page_problems(page, console)


@pytest.mark.parametrize("app_page", PAGES, ids=[p.name for p in PAGES])
def test_deep_link_renders_the_page(page, console, app_page):
    """Cold: the page's URL opened in a fresh browser context, as a bookmark or a shared link would."""
    body = open_page(page, app_page.path)
    screenshot(page, app_page.name)  # kept whatever the outcome
    assert_page_rendered(page, console, app_page, body)


def test_walking_the_navigation_renders_every_page(page, console, app_url):
    """One session: start at the Overview and click through the sidebar navigation to every page."""
    open_page(page, "/")
    links = page.locator('[data-testid="stSidebarNav"] a')
    hrefs = {re.sub(r"^https?://[^/]+", "", links.nth(i).get_attribute("href") or "").rstrip("/") or "/"
             for i in range(links.count())}
    assert hrefs == {p.path for p in PAGES}, f"the navigation links {sorted(hrefs)}, the router's pages {[p.path for p in PAGES]}"
    for app_page in [*PAGES[1:], PAGES[0]]:  # every page, then back to the Overview
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=app_page.label, exact=True).click()
        page.wait_for_url(re.compile(re.escape(app_url + app_page.path) + r"/?(\?.*)?$"), timeout=30_000)
        new_heading = re.compile("^" + re.escape(app_page.heading_prefix), re.I)
        page.locator('[data-testid="stMain"] h1').filter(has_text=new_heading).first.wait_for(timeout=TIMEOUT_MS)
        body = finish(page)
        assert_page_rendered(page, console, app_page, body)


def test_an_unknown_url_shows_page_not_found(page, console):
    """The 'Page not found' check itself works: an unknown URL does show Streamlit's dialog."""
    page.goto("/no-such-page", wait_until="domcontentloaded")
    page.get_by_text(PAGE_NOT_FOUND).first.wait_for(timeout=TIMEOUT_MS)
    wait_until_rendered(page)
    assert any(PAGE_NOT_FOUND in p for p in page_problems(page, console))


def test_the_checks_see_an_exception_box_and_an_uncaught_error(page, console):
    """The exception and console checks themselves work (on a synthetic page: the app has no broken page to show)."""
    page.set_content('<div data-testid="stException">ValueError: boom</div><script>throw new Error("kaput")</script>')
    problems = page_problems(page, console)
    assert any(p.startswith("exception box") and "boom" in p for p in problems), problems
    assert any("kaput" in p for p in problems), problems
