"""Browser tests of the first minutes: a cold deep link as the server's very first request, and pages that wait for
a model of the background build (core.demo.models) refreshing by themselves, in headless Chromium.

The build is simulated: the status file says a stage is running, under the pid of a live process of this test, so
the pages show their waiting state without 20 minutes of training; marking the stage done must make the page re-run
by itself.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.browser_app import (
    BROWSER_MARKS,
    PAGE_NOT_FOUND,
    RENDER_TIMEOUT_S,
    REPO,
    VIEWPORT,
    ConsoleWatch,
    demo_home,
    page_problems,
    screenshot,
    serve_app,
    wait_until_rendered,
)
from ui.common import OPENMOJI_TEXT

pytestmark = BROWSER_MARKS
TIMEOUT_MS = RENDER_TIMEOUT_S * 1000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return demo_home(tmp_path_factory, "ready-home")


def _open(page, url: str) -> str:
    page.goto(url, wait_until="domcontentloaded")
    page.locator('[data-testid="stMain"]').get_by_text(OPENMOJI_TEXT).first.wait_for(timeout=TIMEOUT_MS)
    wait_until_rendered(page)
    return page.locator('[data-testid="stMain"]').inner_text()


@pytest.mark.parametrize("path", ["/similar-ads", "/phrase-match"])
def test_a_cold_deep_link_is_the_first_request_of_a_fresh_server(world, browser, path):
    """The page's URL is the very first thing the new server serves (no 'Page not found' on the first load)."""
    home, env = world
    with serve_app(env, log_path=home / f"cold{path.replace('/', '-')}.log") as base:
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        console = ConsoleWatch(origin=base).attach(page)
        try:
            body = _open(page, base + path)
            time.sleep(2.0)  # a late dialog would come after the first render
            screenshot(page, f"cold{path.replace('/', '-')}")
            problems = page_problems(page, console)
            assert not problems, "\n".join(problems)
            assert PAGE_NOT_FOUND not in body
        finally:
            context.close()


def _status(home, state: str, pid: int) -> None:
    now = time.time()
    stages = {"ion": {"title": "ION", "state": state, "budget_s": 300, "kinds": ["ion"], "seconds": None, "error": None,
                      "started": now - 42},
              "totyemb": {"title": "ToTYEmb", "state": "pending", "budget_s": 300, "kinds": ["totyemb"], "seconds": None,
                          "error": None}}
    (home / "demo-models.json").write_text(json.dumps({"pid": pid, "started": now - 60, "finished": None, "budget_s": 1130,
                                                       "stages": stages}))


def test_a_page_waits_for_its_model_and_refreshes_by_itself(world, browser):
    home, env = world
    stand_in = subprocess.Popen(["sleep", "300"])  # the "build" process: alive while the test runs
    try:
        _status(home, "running", stand_in.pid)
        with serve_app(env, log_path=home / "waiting.log") as base:
            context = browser.new_context(viewport=VIEWPORT)
            page = context.new_page()
            console = ConsoleWatch(origin=base).attach(page)
            try:
                body = _open(page, base + "/similar-ads")
                assert "Waiting for the ION or ToTYEmb model" in body, body[:2000]
                assert "Building the default models in the background" in body
                time.sleep(10)  # two or three automatic refreshes of the waiting fragments
                screenshot(page, "similar-ads-waiting")
                problems = page_problems(page, console)
                assert not problems, "\n".join(problems)
                _status(home, "done", stand_in.pid)  # the model "landed": the page re-runs on its own
                page.get_by_text("Waiting for the ION or ToTYEmb model").wait_for(state="detached", timeout=30_000)
                wait_until_rendered(page)
                assert "No finished model run" in page.locator('[data-testid="stMain"]').inner_text()
                assert not page_problems(page, console)
            finally:
                context.close()
    finally:
        stand_in.kill()
        stand_in.wait()


# -- the whole ready path: world + every default model (quick recipes), then every page shows its results ----------------

@pytest.fixture(scope="module")
def ready(tmp_path_factory):
    """A small demo world and `core demo-models --quick` (the pipeline of `core demo`, few epochs), served."""
    home, env = demo_home(tmp_path_factory, "ready-models")
    done = subprocess.run([sys.executable, "-m", "core", "demo-models", "--quick", "--json"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=1500)
    status = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    if done.returncode != 0:
        pytest.fail(f"demo-models --quick failed (exit {done.returncode}): {json.dumps(status)[:3000]}\n{done.stderr[-3000:]}",
                    pytrace=False)
    assert {v["state"] for v in status["stages"].values()} == {"done"}, status
    with serve_app(env, log_path=home / "ready.log") as base:
        yield base


def _page(browser, base: str, path: str):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    console = ConsoleWatch(origin=base).attach(page)
    body = _open(page, base + path)
    return context, page, console, body


@pytest.mark.parametrize(("path", "expected"), [
    ("/", ["Default models: 12 of 12 built"]),
    ("/regions", ["Clue scorer: ION run #"]),
    ("/similar-ads", ["nearest ads", "Embedding map"]),
    ("/evaluation", ["Hit P@k side by side"]),
    ("/attention", ["Dual-path fusion"]),
    ("/audience", ["Averaged over all packages", "packages · 40 trees"]),
    ("/phrase-match", ["Stored evaluations"]),
    ("/papers-vs-adlens", ["Reproduced here"]),
])
def test_every_page_shows_results_without_any_other_action(ready, browser, path, expected):
    context, page, console, body = _page(browser, ready, path)
    try:
        screenshot(page, "ready" + (path.replace("/", "-") if path != "/" else "-overview"))
        problems = page_problems(page, console)
        assert not problems, "\n".join(problems)
        for text in expected:
            assert text in body, f"{path}: {text!r} not on the page:\n{body[:3000]}"
        assert "Waiting for" not in body and "No finished model run" not in body and "not trained" not in body
    finally:
        context.close()


def test_phrase_match_scores_with_all_four_scorers(ready, browser):
    """Score the default phrases over the first creatives: every scorer answers (its tab of what it looked at)."""
    context, page, console, body = _page(browser, ready, "/phrase-match")
    try:
        page.get_by_text("Scorers: which variant runs").first.click()  # trained: the panel offers a re-train
        page.get_by_role("button", name=re.compile("^Re-train ")).first.wait_for(timeout=10_000)
        page.locator('[data-testid="stMain"] button').filter(has_text=re.compile(r"^Score \d+ creative")).first.click()
        page.get_by_role("tab", name="LXMERT").first.wait_for(timeout=TIMEOUT_MS)
        wait_until_rendered(page)
        tabs = [t.inner_text() for t in page.get_by_role("tab").all()]
        for scorer in ("LXMERT", "CLIP", "Early fusion", "ION"):
            assert any(scorer == t.strip() for t in tabs), tabs
        screenshot(page, "ready-phrase-match-scored")
        assert not page_problems(page, console)
    finally:
        context.close()
