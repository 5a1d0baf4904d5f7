"""The app served by ``streamlit run app.py`` on a free loopback port, for the browser tests and ``bench --only load``.

:func:`serve` starts the server in its own process group with its output in a log file, waits for its health
endpoint, yields the base URL and always stops the server and anything it started. A server that exits or does not
answer in time raises :class:`ServerError` quoting the end of its log. Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from core.config import REPO_ROOT


class ServerError(RuntimeError):
    """The app could not be served; the message quotes the end of the server's log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, limit: int = 6000) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return text[-limit:] or "(the server log is empty)"


def stop(server: subprocess.Popen) -> None:
    """Stop the server and anything it started (its own process group): TERM, then KILL after 15 s."""
    if server.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)


@contextlib.contextmanager
def serve(env: dict[str, str], log_path: Path, timeout: float = 120.0) -> Iterator[str]:
    """``streamlit run app.py`` with ``env`` on a free loopback port; yields its base URL.

    The file watcher is off: other work may touch the sources meanwhile, and a "source changed" prompt (or a rerun)
    in the middle of a test or a benchmark would only add noise.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
           "--server.runOnSave", "false"]
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise ServerError(f"`streamlit run app.py` exited with code {server.returncode} before answering; "
                                  f"its log ({log_path}):\n{log_tail(log_path)}")
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise ServerError(f"`streamlit run app.py` did not answer on {base} within {timeout:.0f} s; "
                                      f"its log ({log_path}):\n{log_tail(log_path)}") from None
                time.sleep(0.3)
        yield base
    finally:
        stop(server)
