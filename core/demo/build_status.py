"""The state of a demo model build, in ``home/demo-models.json``: what the pages read while models build.

Written by core.demo.models (the pipeline, atomically, under one lock per process); read by the pages
(ui.waiting) and by ``core demo`` itself (is a build already running?).
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

from core.config import get_settings

STATUS_FILE = "demo-models.json"
STATUS_LOCK = threading.Lock()


def status_path() -> Path:
    return get_settings().home / STATUS_FILE


def read_status() -> dict[str, Any]:
    """The pipeline's last written state ({} when it never ran in this home)."""
    path = status_path()
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def write_status(status: dict[str, Any]) -> None:
    path = status_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status, indent=1), encoding="utf-8")
    tmp.replace(path)


def is_building(status: dict[str, Any] | None = None) -> bool:
    """True while a pipeline process (its pid in the status file) is alive on this machine."""
    status = read_status() if status is None else status
    pid = status.get("pid")
    if not pid or status.get("finished"):
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(int(pid), os.WNOHANG)
        return done == 0
    return True


