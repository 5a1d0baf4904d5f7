"""Page times in Chromium on a served app (issue 15: "every page under 2 s at 100k ads, warm, no training running").

The app is served on the given home (core.appserver.serve); one Chromium tab opens every page of the app by URL:
once to fill the process's caches (``first_s``: model, index and sample loads), then ``repeats`` more times (``url_s``:
their median; each is a new tab's load: Streamlit's scripts, a new session, the page). Then the tab goes round the app
from the sidebar ``repeats`` times (``warm_s``: the median of a page's switches, ``warm_max_s`` the largest): what a
user's click costs once the app is open, the figure the "under 2 s" target reads. A time runs until the page has drawn to
its end (the OpenMoji credit at its foot, no script running, no spinner, every picture loaded: bench_load's test). Pages
that take an ad open it from the URL (``?ad=``), so Similar ads searches, draws its sampled embedding map and the
results; from the sidebar they show the ad their picker holds.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_load import OPENMOJI, RENDERED_JS  # noqa: E402 - a sibling benchmark module

PAGES = (("Overview", "/"), ("Catalog", "/catalog"), ("Regions", "/regions?ad={ad}"), ("Similar ads", "/similar-ads?ad={ad}"),
         ("Attention", "/attention?ad={ad}"), ("Phrase match", "/phrase-match"), ("Evaluation", "/evaluation"),
         ("Audience", "/audience"), ("Papers vs AdLens", "/papers-vs-adlens"))
TIMEOUT_MS = 300_000
ERROR_BOXES = '[data-testid="stException"], [data-testid="stAlertContentError"]'


# set before a sidebar click: the flag turns true once the app's script has run (its state went through "running"), so
# the wait below does not end on the page that was there before the click
WATCH_JS = """() => {
  window.__adlensRan = false;
  const app = document.querySelector('[data-testid="stApp"]');
  new MutationObserver(records => {
    if (records.some(r => r.oldValue === 'running') || app.dataset.testScriptState === 'running') window.__adlensRan = true;
  }).observe(app, {attributes: true, attributeOldValue: true, attributeFilter: ['data-test-script-state']});
}"""


def _switch(page, name: str) -> float:
    """Seconds from a click on the page's sidebar link until it has drawn (same session: what a user's click costs)."""
    page.evaluate(WATCH_JS)
    link = page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name, exact=True)
    started = time.perf_counter()
    link.click()
    page.wait_for_function(f"() => window.__adlensRan && ({RENDERED_JS})()", timeout=TIMEOUT_MS, polling=50)
    page.locator('[data-testid="stMain"]').get_by_text(OPENMOJI).first.wait_for(timeout=TIMEOUT_MS)
    return time.perf_counter() - started


def _open(page, url: str) -> float:
    started = time.perf_counter()
    page.goto(url, wait_until="domcontentloaded")
    page.locator('[data-testid="stMain"]').get_by_text(OPENMOJI).first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function(RENDERED_JS, timeout=TIMEOUT_MS, polling=50)
    return time.perf_counter() - started


def measure(env: dict[str, str], ad_id: str, log_path: Path, repeats: int = 3, executable: str | None = None) -> dict[str, Any]:
    """{page: {first_s, warm_s, warm_max_s, errors}} plus ``slowest_warm_s``: every page of the app served with ``env``."""
    import shutil

    from playwright.sync_api import sync_playwright

    from core.appserver import serve

    executable = executable or shutil.which("chromium") or "/usr/bin/chromium"
    pages: dict[str, Any] = {}
    with serve(env, log_path, timeout=300) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            for name, path in PAGES:
                url = base + path.format(ad=ad_id)
                first = _open(page, url)
                warm = [_open(page, url) for _ in range(repeats)]
                errors = [box.inner_text()[:300] for box in page.locator(ERROR_BOXES).all()]
                pages[name] = {"first_s": round(first, 2), "url_s": round(statistics.median(warm), 2),
                               "url_max_s": round(max(warm), 2), "errors": errors}
            switches: dict[str, list[float]] = {name: [] for name, _path in PAGES}
            for _round in range(repeats):  # page after page from the sidebar, as a user goes round the app
                for name, _path in PAGES:
                    switches[name].append(_switch(page, name))
                    pages[name]["errors"] += [box.inner_text()[:300] for box in page.locator(ERROR_BOXES).all()]
            for name, times in switches.items():
                pages[name].update(warm_s=round(statistics.median(times), 2), warm_max_s=round(max(times), 2))
        finally:
            browser.close()
    return {"ad": ad_id, "repeats": repeats, "pages": pages, "slowest_warm_s": max(p["warm_s"] for p in pages.values()),
            "slowest_url_s": max(p["url_s"] for p in pages.values()), "errors": sum(len(p["errors"]) for p in pages.values())}
