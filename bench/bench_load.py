"""Many users at once: concurrent browser sessions (Playwright contexts in one headless Chromium) against one running app.

Each session, in each round: the Overview; the Catalog searched for an ad of its own (the grid must show that ad and
no other session's: no state shared across sessions); Similar ads for a catalogue ad and for an uploaded creative; the
Regions page on an upload; and an import of two ads of its own through the Catalog's Import tab. Meanwhile one
training job runs (`python -m core train`). The first round warms each page and is not timed; the later rounds give
``p95_page_s`` (navigation or action to the page fully rendered, measured in the browser).

An error is anything a user would see go wrong: an exception box, an error alert, "database is locked" anywhere, a
console error from the app, a page that does not finish rendering, or an import that did not land in the database
(checked afterwards: every session's ads must be there). One session alone runs first, on the same server, for the
page times without concurrency. The browsers run on the same machine as the server (8 Chromium renderers on the
bench's cores), so the page times include their rendering too.

The world: ``ADLENS_BENCH_HOME`` when it names a home with a built world and an ION run, else a fresh temporary one
(``core demo --models none`` + ``core demo-models --quick`` for detector, regions and ION).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OPENMOJI = "OpenMoji"  # every page's footer credits OpenMoji: the page has drawn to its end
PROBLEM_TEXT = ("database is locked", "Traceback (most recent call last)")
RENDERED_JS = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  if (!app || app.dataset.testScriptState !== 'notRunning' || app.dataset.testConnectionState !== 'CONNECTED') return false;
  if (document.querySelector('[data-testid="stStatusWidget"], [data-testid="stSpinner"], [data-testid="stSkeleton"]')) return false;
  return Array.from(document.images).every(img => img.complete);
}"""
RENDER_TIMEOUT_MS = 180_000


# --- the served app --------------------------------------------------------------------------------------------------

def app_env(home: Path, database_url: str | None = None) -> dict[str, str]:
    env = {**os.environ, "ADLENS_HOME": str(home), "ADLENS_OFFLINE": "true", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop("ADLENS_DATABASE_URL", None)
    if database_url:
        env["ADLENS_DATABASE_URL"] = database_url
    return env


def _core(env: dict[str, str], *args: str, timeout: float = 1800) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "core", *args, "--json"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0:
        raise RuntimeError(f"`python -m core {' '.join(args)}` failed (exit {done.returncode}): "
                           f"{done.stdout[-1500:]} {done.stderr[-1500:]}")
    return json.loads(lines[-1]) if lines else {}


def build_world(env: dict[str, str], ads: int, users: int, *, models: bool) -> dict[str, Any]:
    """A small demo world (and, with ``models``, the quick detector, regions and ION); returns the stage seconds."""
    t = time.perf_counter()
    _core(env, "demo", "--ads", str(ads), "--users", str(users), "--seed", "5", "--models", "none")
    seconds = {"world_s": round(time.perf_counter() - t, 1)}
    if models:
        t = time.perf_counter()
        _core(env, "demo-models", "--quick", "--only", "detector", "--only", "regions", "--only", "ion")
        seconds["models_s"] = round(time.perf_counter() - t, 1)
    return seconds


def serve(env: dict[str, str], log_path: Path, timeout: float = 180.0):
    """``streamlit run app.py`` on a free loopback port (core.appserver.serve); yields the base URL."""
    from core.appserver import serve as serve_app

    return serve_app(env, log_path, timeout=timeout)


# --- what the sessions upload ------------------------------------------------------------------------------------------

def import_files(folder: Path, prefix: str, n: int = 2, seed: int = 0) -> tuple[Path, Path]:
    """A manifest (ad_id,text,image,category,split) and a zip of ``n`` small creatives with ids ``<prefix>-<i>``."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["ad_id", "text", "image", "category", "split"])
    archive = folder / f"{prefix}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(n):
            img = Image.new("RGB", (256, 256), (250 - 20 * i, 240, 200 + seed % 50))
            ImageDraw.Draw(img).ellipse((60 + 10 * i, 60, 200, 190 - 5 * i), fill=(200, 40 + 30 * (seed % 5), 40))
            data = io.BytesIO()
            img.save(data, format="PNG")
            zf.writestr(f"{prefix}-{i}.png", data.getvalue())
            writer.writerow([f"{prefix}-{i}", f"Load test creative {i} of session {prefix}", f"{prefix}-{i}.png", "load test", "test"])
    manifest = folder / f"{prefix}.csv"
    manifest.write_text(buf.getvalue())
    return manifest, archive


def a_creative(home: Path) -> Path:
    """A creative of the world (a file of the home's image store) to upload as if it were new."""
    return sorted(p for p in (home / "images").rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))[0]


# --- one session -------------------------------------------------------------------------------------------------------

class Session:
    """One browser context walking the app; records page times and everything that went wrong."""

    def __init__(self, browser, base: str, index: int, ad_id: str, creative: Path, files: Path):
        self.browser, self.base, self.index, self.ad_id, self.creative, self.files = browser, base, index, ad_id, creative, files
        self.times: list[tuple[str, float, bool]] = []  # (step, seconds, timed)
        self.errors: list[str] = []
        self.attempts = 0
        self.others: list[str] = []  # the ads other sessions search for
        self.imported: list[str] = []

    async def _rendered(self, page) -> None:
        await page.wait_for_function(RENDERED_JS, timeout=RENDER_TIMEOUT_MS, polling=100)
        await page.wait_for_timeout(250)
        await page.wait_for_function(RENDERED_JS, timeout=RENDER_TIMEOUT_MS, polling=100)

    async def _check(self, page, step: str) -> None:
        for box in await page.locator('[data-testid="stException"]').all():
            self.errors.append(f"{step}: exception box: {(await box.inner_text())[:300]}")
        for box in await page.locator('[data-testid="stAlertContentError"]').all():
            self.errors.append(f"{step}: error alert: {(await box.inner_text())[:300]}")
        body = await page.locator("body").inner_text()
        self.errors += [f"{step}: '{t}' on the page" for t in PROBLEM_TEXT if t in body]

    async def upload(self, page, choice: str) -> None:
        """Pick the page's upload option (a radio labelled ``choice``) and upload this session's creative."""
        main = page.locator('[data-testid="stMain"]')
        await page.get_by_text(choice, exact=True).first.click()
        await main.locator('input[type="file"]').first.wait_for(state="attached", timeout=RENDER_TIMEOUT_MS)
        await main.locator('input[type="file"]').first.set_input_files(str(self.creative))

    def strangers(self, text: str) -> list[str]:
        return [a for a in self.others if a not in self.ad_id and a in text]

    async def until(self, page, done, why, timeout_s: float = RENDER_TIMEOUT_MS / 1000) -> None:
        """Poll the page's main text until ``done(text)`` (the outcome of an action, which a busy server shows after a
        rerun); past ``timeout_s`` raise with ``why(text)``."""
        main = page.locator('[data-testid="stMain"]')
        deadline = time.monotonic() + timeout_s
        while True:
            text = await main.inner_text()
            if done(text):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(why(text) if callable(why) else why)
            await page.wait_for_timeout(250)

    async def step(self, page, name: str, action, timed: bool) -> None:
        started = time.perf_counter()
        self.attempts += 1
        try:
            await action()
            await self._rendered(page)
        except Exception as exc:  # noqa: BLE001 - a step that does not finish is one error, the session goes on
            self.errors.append(f"{name}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}")
            return
        self.times.append((name, time.perf_counter() - started, timed))
        await self._check(page, name)

    async def run(self, rounds: int) -> None:
        context = await self.browser.new_context(viewport={"width": 1300, "height": 900})
        context.set_default_timeout(RENDER_TIMEOUT_MS)  # a click on a busy server's page waits as long as a render may
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        try:
            for r in range(rounds):
                await self.one_round(page, r, timed=r > 0)
        finally:
            await context.close()

    async def one_round(self, page, r: int, timed: bool) -> None:
        main = page.locator('[data-testid="stMain"]')

        async def goto(path: str):
            await page.goto(self.base + path, wait_until="domcontentloaded")
            await main.get_by_text(OPENMOJI).first.wait_for(timeout=RENDER_TIMEOUT_MS)

        await self.step(page, "overview", lambda: goto("/"), timed)
        await self.step(page, "catalog", lambda: goto("/catalog"), timed)

        async def search():
            box = page.get_by_label("Search")
            await box.fill(self.ad_id)
            await box.press("Enter")
            # its own ad, alone: another session's search leaking into this one would keep theirs on the page
            await self.until(page, lambda text: self.ad_id in text and not self.strangers(text),
                             lambda text: f"searched {self.ad_id!r}, saw other sessions' ads {self.strangers(text)}"
                             if self.strangers(text) else f"searched {self.ad_id!r} and did not see it")

        await self.step(page, "catalog search", search, timed)
        await self.step(page, "similar ads", lambda: goto("/similar-ads"), timed)

        async def upload_similar():
            await self.upload(page, "Uploaded creative")
            await page.wait_for_timeout(300)
            await self._rendered(page)
            text = main.locator('input[type="text"]').first
            await text.fill(f"Fresh fruit basket {self.index}")
            await text.press("Enter")
            await self.until(page, lambda body: "nearest ads" in body, "no nearest ads shown")

        await self.step(page, "similar ads upload", upload_similar, timed)
        await self.step(page, "regions", lambda: goto("/regions"), timed)

        async def upload_regions():
            await self.upload(page, "Upload")
            await self.until(page, lambda body: "Detection took" in body, "no detection shown")

        await self.step(page, "regions upload", upload_regions, timed)
        await self.step(page, "catalog import", lambda: self.do_import(page, r), timed)

    async def do_import(self, page, r: int) -> None:
        prefix = f"load{self.index}r{r}"
        manifest, archive = import_files(self.files, prefix, seed=self.index)
        await page.goto(self.base + "/catalog", wait_until="domcontentloaded")
        await self._rendered(page)
        await page.get_by_role("tab", name=re.compile("Import")).click()
        inputs = page.locator('[data-testid="stMain"] input[type="file"]')
        await inputs.nth(0).set_input_files(str(manifest))
        await inputs.nth(1).set_input_files(str(archive))
        await page.wait_for_timeout(300)
        await self._rendered(page)
        await page.get_by_role("button", name="Import ads").click()
        await page.get_by_text("ads: imported").first.wait_for(timeout=RENDER_TIMEOUT_MS)
        self.imported += [f"{prefix}-0", f"{prefix}-1"]


async def _run_sessions(base: str, sessions: int, rounds: int, ad_ids: list[str], creative: Path, workdir: Path,
                        executable: str) -> list[Session]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, headless=True,
                                           args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        try:
            group = [Session(browser, base, i, ad_ids[i % len(ad_ids)], creative, workdir / f"s{i}") for i in range(sessions)]
            for sess in group:
                sess.others = [o.ad_id for o in group if o.ad_id != sess.ad_id]
            await asyncio.gather(*(s.run(rounds) for s in group))
        finally:
            await browser.close()
    return group


def run_sessions(base: str, *, sessions: int, rounds: int, ad_ids: list[str], creative: Path, workdir: Path,
                 executable: str | None = None) -> dict[str, Any]:
    """Run ``sessions`` browser sessions at once for ``rounds`` rounds; the figures and every error seen."""
    executable = executable or shutil.which("chromium") or "/usr/bin/chromium"
    started = time.perf_counter()
    group = asyncio.run(_run_sessions(base, sessions, rounds, ad_ids, creative, workdir, executable))
    timed = [s for sess in group for (_, s, t) in sess.times if t]
    steps = sorted({name for sess in group for (name, _, _) in sess.times})
    per_step = {name: round(statistics.median([s for sess in group for (n, s, t) in sess.times if n == name and t] or [0.0]), 2)
                for name in steps}
    return {
        "sessions": sessions, "rounds": rounds,
        "requests": sum(sess.attempts for sess in group),
        "timed_requests": len(timed),
        "errors": sum(len(sess.errors) for sess in group),
        "error_list": [f"session {sess.index}: {e}" for sess in group for e in sess.errors][:50],
        "p50_page_s": round(statistics.median(timed), 2) if timed else None,
        "p95_page_s": round(_percentile(timed, 95), 2) if timed else None,
        "median_by_step_s": per_step,
        "imported": [a for sess in group for a in sess.imported],
        "wall_s": round(time.perf_counter() - started, 1),
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


class Training:
    """One training job kept running for as long as the sessions run (restarted when it ends): what a team's server
    does while people use it. ``summary()``: how many ran, finished and failed."""

    COMMAND = ("train", "--model", "totyemb", "--epochs", "60", "--json")

    def __init__(self, env: dict[str, str], log: Path):
        import threading

        self.env, self.log, self.stop = env, log, threading.Event()
        self.started = self.finished = self.failed = 0
        self.proc: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        with open(self.log, "ab") as log:
            while not self.stop.is_set():
                self.proc = subprocess.Popen([sys.executable, "-m", "core", *self.COMMAND], cwd=REPO, env=self.env, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
                self.started += 1
                while self.proc.poll() is None and not self.stop.is_set():
                    time.sleep(0.5)
                if self.proc.poll() is None:
                    return
                if self.proc.returncode == 0:
                    self.finished += 1
                else:
                    self.failed += 1
                    time.sleep(2)

    def __enter__(self) -> Training:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def summary(self) -> dict[str, int]:
        return {"started": self.started, "finished": self.finished, "failed": self.failed}


def catalogue_ids(env: dict[str, str], like: str) -> list[str]:
    """Ids of the ads whose id starts with ``like`` in the served database (read by a separate process)."""
    code = ("import json,sys; from sqlalchemy import select; from core.store import get_engine; from core.store.models import Ad; "
            "from sqlalchemy.orm import Session; s=Session(get_engine()); "
            "print(json.dumps(sorted(s.scalars(select(Ad.id).where(Ad.id.like(sys.argv[1] + '%'))))))")
    done = subprocess.run([sys.executable, "-c", code, like], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> dict[str, Any]:
    sessions, rounds = 8, (2 if quick else 3)
    own = os.environ.get("ADLENS_BENCH_HOME")
    with tempfile.TemporaryDirectory(prefix="adlens-load-") as tmp:
        tmp_path = Path(tmp)
        home = Path(own) if own else tmp_path / "home"
        env = app_env(home)
        build = {} if own else build_world(env, ads=120 if quick else 300, users=600 if quick else 2000, models=True)
        ids = [a for a in catalogue_ids(env, "") if not a.startswith("load")][:sessions]
        creative = a_creative(home)
        with Training(env, tmp_path / "training.log") as training:
            with serve(env, tmp_path / "server.log") as base:
                # one user alone first (also warms the server): what concurrency costs each page
                alone = run_sessions(base, sessions=1, rounds=2, ad_ids=ids, creative=creative, workdir=tmp_path / "alone")
                out = run_sessions(base, sessions=sessions, rounds=rounds, ad_ids=ids, creative=creative, workdir=tmp_path / "files")
        out["one_session"] = {k: alone[k] for k in ("errors", "p50_page_s", "p95_page_s", "median_by_step_s")}
        out["errors"] += alone["errors"]
        out["error_list"] += [f"alone: {e}" for e in alone["error_list"]]
        out["imported"] += alone["imported"]
        landed = set(catalogue_ids(env, "load"))
        lost = [a for a in out["imported"] if a not in landed]
        out["errors"] += len(lost)
        out["error_list"] += [f"import lost: {a}" for a in lost[:20]]
        out.update({"imports_landed": len(landed), "imports_lost": len(lost), "trainings": training.summary(),
                    "world": "ADLENS_BENCH_HOME" if own else f"{120 if quick else 300} demo ads, quick models", **build})
        out["server_log_database_locked"] = (tmp_path / "server.log").read_text(errors="replace").count("database is locked")
        out["errors"] += out["server_log_database_locked"]
        del out["imported"]
    return out


def summary(result: dict[str, Any]) -> list[tuple[str, str]]:
    """Rows of the README's table."""
    return [(f"{result['sessions']} browser sessions at once, {result['rounds']} rounds (first untimed), one training running",
             f"{result['requests']} requests, {result['errors']} errors, "
             f"p50 {result['p50_page_s']} s, p95 {result['p95_page_s']} s a page"),
            ("one session alone, same server (warm)", f"p50 {result['one_session']['p50_page_s']} s, "
             f"p95 {result['one_session']['p95_page_s']} s a page, {result['one_session']['errors']} errors"),
            ("imports made by the sessions", f"{result['imports_landed']} landed, {result['imports_lost']} lost"),
            ("training meanwhile (`train --model totyemb --epochs 60`, restarted when done)",
             f"{result['trainings']['finished']} finished, {result['trainings']['failed']} failed"),
            ("median seconds by step", ", ".join(f"{k} {v}" for k, v in result["median_by_step_s"].items()))]


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
