"""A tiny headless-Chromium driver over the DevTools protocol, for the browser tests.

Starts Chromium with a remote-debugging port on localhost, opens a page, and evaluates
JavaScript in it until a condition holds. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


class Browser:
    """``with Browser() as b: b.open(url); b.wait_for_text("Catalog")``."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="adlens-chromium-")
        self.width, self.height = width, height
        self.proc: subprocess.Popen | None = None
        self.ws = None
        self._id = 0

    def __enter__(self) -> Browser:
        binary = chromium_binary()
        if binary is None:
            raise RuntimeError("chromium is not installed")
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             f"--user-data-dir={self.profile}", f"--remote-debugging-port={self.port}",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_http(f"http://127.0.0.1:{self.port}/json/version", timeout=30)
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json"))
        ws_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
        from websockets.sync.client import connect  # a dependency of streamlit

        self._connection = connect(ws_url, max_size=64 * 1024 * 1024, open_timeout=30)
        self.ws = self._connection.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self._connection.__exit__(None, None, None)
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, **params):
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events arrive in between; the answer carries our id
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def body_text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def main_text(self) -> str:
        """The text of the page's main area (not the sidebar)."""
        return self.evaluate("(document.querySelector('[data-testid=\"stMain\"]') || document.body).innerText") or ""

    def wait_for_text(self, text: str, timeout: float = 60.0) -> str:
        """Wait until ``text`` shows in the main area; returns that text."""
        deadline = time.monotonic() + timeout
        body = ""
        while time.monotonic() < deadline:
            body = self.main_text()
            if text in body:
                return body
            time.sleep(0.5)
        raise TimeoutError(f"'{text}' did not appear within {timeout:.0f} s; the page says:\n{body[:2000]}")

    def count(self, selector: str) -> int:
        return int(self.evaluate(f"document.querySelectorAll({json.dumps(selector)}).length") or 0)

    def screenshot(self, path: Path) -> Path:
        shot = self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path
