"""Helpers for the browser tests (tests/test_browser.py): the served app, its pages, and Playwright checks.

* :func:`require_chromium` finds Debian's Chromium; without it the browser tests skip, or fail under CI=true.
* :func:`build_demo_world` + :func:`serve_app` run ``streamlit run app.py`` on a free loopback port against a
  test ADLENS_HOME; the server is always stopped, and a start failure quotes the server's log.
* :func:`app_pages` lists every page of app.py's router (the Overview plus one page per ``app_pages/*.py``).
* :func:`wait_until_rendered` waits for Streamlit to finish a run; :func:`page_problems` lists exception boxes,
  a "Page not found" dialog and console errors coming from the app.

Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from core import appserver

REPO = Path(__file__).resolve().parent.parent

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CHROMIUM_MISSING = "chromium not found; CI must install it (see .ci/run)"
VIEWPORT = {"width": 1400, "height": 1000}
RENDER_TIMEOUT_S = 120  # a cold page on 2 busy cores (first imports of torch & co.) can take a while

EXCEPTION = '[data-testid="stException"]'
PAGE_NOT_FOUND = "Page not found"


# --- Chromium -------------------------------------------------------------------------------------------------------

def chromium_executable() -> str | None:
    """Debian's Chromium (``/usr/bin/chromium``), or whatever ``chromium`` is on the PATH; None when absent."""
    return shutil.which("chromium") or ("/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def require_chromium() -> str:
    """The Chromium executable; skips the calling test without one, but fails it under CI=true."""
    path = chromium_executable()
    if path is None:
        if in_ci():
            pytest.fail(CHROMIUM_MISSING, pytrace=False)
        pytest.skip(CHROMIUM_MISSING)
    return path


def launch_args(executable: str) -> dict:
    """Keyword arguments for Playwright's ``chromium.launch``."""
    return {"executable_path": executable, "headless": True, "args": list(CHROMIUM_ARGS)}


# --- the served app -------------------------------------------------------------------------------------------------

def app_env(home: Path) -> dict[str, str]:
    """The environment of the demo build and the server: the test home, offline, on CPU, SQLite."""
    env = {**os.environ, "ADLENS_HOME": str(home), "ADLENS_OFFLINE": "true", "ADLENS_DEVICE": "cpu",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    env.pop("ADLENS_DATABASE_URL", None)
    return env


def build_demo_world(env: dict[str, str], ads: int = 120, users: int = 600, seed: int = 3) -> None:
    """``python -m core demo`` into the test home; a failure quotes the command's output."""
    cmd = [sys.executable, "-m", "core", "demo", "--ads", str(ads), "--users", str(users), "--seed", str(seed), "--models", "none",
           "--json"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        pytest.fail(f"the demo world could not be built (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}",
                    pytrace=False)


# the marks of every browser test module: the marker, and pytest-base-url (a pytest-playwright dependency) still
# defines its session fixture as a method
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.filterwarnings("ignore:Session-scoped fixtures defined as instance methods:pytest.PytestRemovedIn10Warning"),
]


def demo_home(tmp_path_factory, name: str, ads: int = 120, users: int = 600, seed: int = 3) -> tuple[Path, dict[str, str]]:
    """A fresh home with a small demo world (no models) and the environment to serve it: (home, env)."""
    require_chromium()  # skip (or fail under CI) before building anything
    home = tmp_path_factory.mktemp(name)
    env = app_env(home)
    build_demo_world(env, ads=ads, users=users, seed=seed)
    return home, env


@contextlib.contextmanager
def serve_app(env: dict[str, str], log_path: Path, timeout: float = 120.0) -> Iterator[str]:
    """``streamlit run app.py`` on a free loopback port (core.appserver.serve); yields its base URL and always stops
    the server; a server that cannot start fails the test with the end of its log."""
    try:
        with appserver.serve(env, log_path, timeout=timeout) as base:
            yield base
    except appserver.ServerError as exc:
        pytest.fail(str(exc), pytrace=False)


# --- the pages ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class AppPage:
    name: str  # artefact and test-id name: 'overview', 'catalog', 'similar-ads', ...
    label: str  # its title in the navigation: 'Overview', 'Similar ads', ...
    path: str  # its URL path: '/', '/similar-ads', ...

    @property
    def heading_prefix(self) -> str:
        """Every page's heading starts with its title ('Audience expansion'); the Overview's is 'AdLens'."""
        return "AdLens" if self.name == "overview" else self.label

    def heading_matches(self, heading: str) -> bool:
        return heading.strip().lower().startswith(self.heading_prefix.lower())


def app_pages() -> list[AppPage]:
    """The pages of app.py's router: the Overview (its default page, at '/'), then one per ``app_pages/*.py``,
    with the router's own titles and URL paths (ui.common.page_label / page_slug)."""
    from ui.common import page_files, page_label, page_slug

    pages = [AppPage("overview", "Overview", "/")]
    pages += [AppPage(page_slug(p), page_label(p), "/" + page_slug(p)) for p in page_files()]
    return pages


# --- checks in the browser ------------------------------------------------------------------------------------------

_RENDERED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== 'notRunning' || app.dataset.testConnectionState !== 'CONNECTED') return false;
  if (document.querySelector('[data-testid="stStatusWidget"], [data-testid="stStatusWidgetRunningIcon"]')) return false;
  if (document.querySelector('[data-testid="stSkeleton"], [data-testid="stSpinner"]')) return false;
  return Array.from(document.images).every(img => img.complete);
}"""


def wait_until_rendered(page, timeout_s: float = RENDER_TIMEOUT_S) -> None:
    """Wait until Streamlit has finished running the page: connected, script not running, no running indicator,
    no spinner or skeleton, every image loaded, and still so a moment later (a page may rerun itself)."""
    deadline = time.monotonic() + timeout_s
    while True:
        left_ms = max(1000.0, (deadline - time.monotonic()) * 1000)
        page.wait_for_function(_RENDERED_JS, timeout=left_ms, polling=100)
        page.wait_for_timeout(300)
        if page.evaluate(_RENDERED_JS) or time.monotonic() > deadline:
            return


@dataclass
class ConsoleWatch:
    """Errors in the page's console that come from the app (its origin) and uncaught page errors."""

    origin: str
    errors: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # console errors about other origins (nothing is reachable)

    def attach(self, page) -> ConsoleWatch:
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        return self

    def _on_console(self, msg) -> None:
        if msg.type != "error":
            return
        url = (msg.location or {}).get("url") or ""
        text = f"console.error: {msg.text} ({url or 'no source'})"
        if url and (_origin(url) != self.origin or _base_path_probe(url, msg.text)):
            self.ignored.append(text)
        else:
            self.errors.append(text)


# Streamlit's frontend, opened on a page's URL, first looks for its server under that path ('/catalog/_stcore/health'),
# gets a 404 and falls back to '/': streamlit/streamlit#7074. Nothing of the app's; only these probes are let through.
_PROBE = re.compile(r"^/.+/_stcore/(health|host-config|allowed-message-origins)$")


def _base_path_probe(url: str, text: str) -> bool:
    return "404" in text and bool(_PROBE.match(urlsplit(url).path))


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def main_text(page) -> str:
    main = page.locator('[data-testid="stMain"]')
    return main.inner_text() if main.count() else page.locator("body").inner_text()


def nav_text(page) -> str:
    nav = page.locator('[data-testid="stSidebarNav"]')
    return nav.inner_text() if nav.count() else ""


def page_problems(page, console: ConsoleWatch) -> list[str]:
    """What is wrong with the rendered page: exception boxes, a 'Page not found' dialog, console errors."""
    problems = []
    for box in page.locator(EXCEPTION).all():
        problems.append("exception box:\n" + box.inner_text()[:3000])
    for dialog in page.get_by_role("dialog").all():
        text = dialog.inner_text()
        if PAGE_NOT_FOUND in text:
            problems.append("'Page not found' dialog: " + text[:500])
    if not any(p.startswith("'Page not found'") for p in problems) and page.get_by_text(PAGE_NOT_FOUND, exact=True).count():
        problems.append("'Page not found' shown")
    problems += console.errors
    return problems


def artifacts_dir() -> Path:
    """Where screenshots go: $ADLENS_TEST_ARTIFACTS, else test-artifacts/ at the repository root."""
    path = Path(os.environ.get("ADLENS_TEST_ARTIFACTS") or REPO / "test-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


_SCROLL_HEIGHT_JS = """() => Math.max(document.body.scrollHeight,
  ...Array.from(document.querySelectorAll('[data-testid="stMain"], [data-testid="stAppScrollToBottomContainer"], '
                                          + '[data-testid="stSidebarContent"], [data-testid="stSidebarUserContent"]'))
     .map(el => el.scrollHeight))"""


def screenshot(page, name: str, max_height: int = 12000) -> Path:
    """A full-page PNG ``<artifacts>/<name>.png``. Streamlit scrolls inside its main area and its sidebar rather
    than the document, so the viewport is stretched to the taller of the two for the shot, then restored."""
    path = artifacts_dir() / f"{name}.png"
    viewport = page.viewport_size or VIEWPORT
    height = min(max_height, max(viewport["height"], int(page.evaluate(_SCROLL_HEIGHT_JS) or 0)))
    try:
        if height > viewport["height"]:
            page.set_viewport_size({"width": viewport["width"], "height": height})
            page.wait_for_timeout(300)  # let the layout settle at the new size
        page.screenshot(path=str(path), full_page=True)
    finally:
        if height > viewport["height"]:
            page.set_viewport_size(viewport)
    return path
