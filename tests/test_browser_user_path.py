"""The whole user path in headless Chromium, on SQLite and on PostgreSQL: upload a creative and see its boxes, search
similar ads for an upload, score phrases, run an audience expansion and download its CSV.

Each backend gets its own small demo world and the models the path needs, built by the project's own commands
(`core demo --models none`, then `core demo-models --quick --only ...`), and its own `streamlit run app.py`.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.browser_app import (
    BROWSER_MARKS,
    RENDER_TIMEOUT_S,
    REPO,
    VIEWPORT,
    ConsoleWatch,
    app_env,
    build_demo_world,
    main_text,
    page_problems,
    require_chromium,
    screenshot,
    serve_app,
    wait_until_rendered,
)
from tests.conftest import fresh_postgres_database
from ui.common import OPENMOJI_TEXT

pytestmark = BROWSER_MARKS
TIMEOUT_MS = RENDER_TIMEOUT_S * 1000
STAGES = ("detector", "regions", "ion", "matcher-ion")  # what the path needs: boxes, ION retrieval, one phrase scorer


def _build_models(env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "core", "demo-models", "--quick", "--json"]
    for stage in STAGES:
        cmd += ["--only", stage]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    status = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    if done.returncode != 0:
        pytest.fail(f"demo-models failed (exit {done.returncode}): {json.dumps(status)[:3000]}\n{done.stderr[-3000:]}", pytrace=False)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, tmp_path_factory):
    """(base URL, home, environment) of an app serving a small demo world with the path's models, on each backend in turn."""
    require_chromium()
    backend = request.param
    home = tmp_path_factory.mktemp(f"path-{backend}")
    env = app_env(home)

    def serve():
        build_demo_world(env, ads=120, users=600, seed=4)
        _build_models(env)
        with serve_app(env, log_path=home / "server.log") as base:
            yield base, home, env

    if backend == "postgresql":
        with fresh_postgres_database(request.getfixturevalue("postgres_admin")) as url:
            env["ADLENS_DATABASE_URL"] = url
            yield from serve()
    else:
        yield from serve()


@pytest.fixture
def visit(served, browser):
    """Open a page of the served app in a fresh browser context; yields (open(path) -> page, console, home)."""
    base, home, _ = served
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    page = context.new_page()
    console = ConsoleWatch(origin=base).attach(page)

    def open_page(path: str):
        page.goto(base + path, wait_until="domcontentloaded")
        page.locator('[data-testid="stMain"]').get_by_text(OPENMOJI_TEXT).first.wait_for(timeout=TIMEOUT_MS)
        wait_until_rendered(page)
        return page

    yield open_page, console, home
    context.close()


def _a_creative(home: Path) -> Path:
    """A creative of the world (a file of the home's image store) to upload as if it were new."""
    return sorted(p for p in (home / "images").rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[0]


def _upload_on(open_page, path: str, choice: str, home: Path):
    """Open ``path``, pick its upload option (the radio ``choice``) and upload a creative of the world; the page."""
    page = open_page(path)
    page.get_by_text(choice, exact=True).first.click()
    wait_until_rendered(page)
    page.locator('[data-testid="stMain"] input[type="file"]').first.set_input_files(str(_a_creative(home)))
    page.wait_for_timeout(500)
    wait_until_rendered(page)
    return page


def _shot(page, request, name: str) -> None:
    screenshot(page, f"path-{request.node.callspec.id}-{name}")


def test_upload_a_creative_and_see_its_boxes(visit, request):
    open_page, console, home = visit
    page = _upload_on(open_page, "/regions", "Upload", home)
    page.locator('[data-testid="stMain"] textarea').first.fill("Fresh fruit for the whole family")
    page.keyboard.press("Control+Enter")
    wait_until_rendered(page)
    body = main_text(page)
    _shot(page, request, "regions-upload")
    assert not page_problems(page, console)
    assert "Detection took" in body, body[:3000]
    boxes = re.search(r"(\d+) boxes", body)
    assert boxes and int(boxes.group(1)) >= 1, body[:3000]
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 2  # the creative with its boxes, before and after
    assert "after re-weighting by the text" in body


def test_search_similar_ads_for_an_uploaded_creative(visit, request):
    open_page, console, home = visit
    page = _upload_on(open_page, "/similar-ads", "Uploaded creative", home)
    text = page.locator('[data-testid="stMain"] input[type="text"]').first
    text.fill("Fresh fruit for the whole family")
    text.press("Enter")
    wait_until_rendered(page)
    body = main_text(page)
    _shot(page, request, "similar-upload")
    assert not page_problems(page, console)
    assert "nearest ads" in body, body[:3000]
    assert page.locator('[data-testid="stMain"] img').count() >= 5  # the query and its neighbours


def test_score_phrases(visit, request):
    open_page, console, _ = visit
    page = open_page("/phrase-match")
    page.locator('[data-testid="stMain"] button').filter(has_text=re.compile(r"^Score \d+ creative")).first.click()
    page.get_by_role("tab", name="ION").first.wait_for(timeout=TIMEOUT_MS)
    wait_until_rendered(page)
    _shot(page, request, "phrase-match-scored")
    assert not page_problems(page, console)
    body = main_text(page)
    assert "fruit" in body and "running shoes" in body, body[:3000]


def test_run_an_expansion_and_download_the_audience(visit, request):
    open_page, console, _ = visit
    page = open_page("/audience")
    page.get_by_role("button", name="Run expansion").click()
    download_button = page.get_by_role("button", name=re.compile(r"^Download [\d,]+ users \(CSV\)"))
    download_button.wait_for(timeout=TIMEOUT_MS)
    wait_until_rendered(page)
    _shot(page, request, "audience-run")
    assert not page_problems(page, console)
    promised = int(re.search(r"Download ([\d,]+) users", download_button.inner_text()).group(1).replace(",", ""))
    with page.expect_download(timeout=60_000) as info:
        download_button.click()
    download = info.value
    assert re.fullmatch(r"audience-run\d+-5%\.csv", download.suggested_filename)
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert len(rows) == promised > 0
    assert list(rows[0]) == ["user_id", "score"]
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)  # ranked by the expanded model
    assert len({r["user_id"] for r in rows}) == len(rows)


def _load_bench():
    spec = importlib.util.spec_from_file_location("adlens_bench_load", REPO / "bench" / "bench_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_concurrent_sessions_lose_no_writes_and_share_no_state(served, tmp_path):
    """Four sessions at once (the scenario of `python -m core bench --only load`): browsing, searching, uploading and
    importing ads of their own. Nothing goes wrong on any page, each session sees only its own search, and every ad
    each session imported is in the database. Runs last: it adds ads to the served world."""
    base, home, env = served
    load = _load_bench()
    ids = load.catalogue_ids(env, "")[:4]
    creative = _a_creative(home)
    with ThreadPoolExecutor(1) as pool:  # Playwright's async API, away from the sync API's loop of this thread
        out = pool.submit(load.run_sessions, base, sessions=4, rounds=2, ad_ids=ids, creative=creative, workdir=tmp_path).result()
    assert out["errors"] == 0, "\n".join(out["error_list"])
    assert out["requests"] == 4 * 2 * 8 and out["timed_requests"] == 4 * 8
    assert len(out["imported"]) == 4 * 2 * 2
    assert load.catalogue_ids(env, "load") == sorted(out["imported"])
