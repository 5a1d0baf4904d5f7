"""Are model hubs reachable? Decided once per process, quickly, and never by hanging.

``ADLENS_OFFLINE=true|false`` decides outright; ``auto`` treats HF_HUB_OFFLINE / YOLO_OFFLINE
as offline, else tries one TCP connection to the Hugging Face hub with a short timeout.
When offline, HF_HUB_OFFLINE and YOLO_OFFLINE are set so libraries fail fast instead of waiting.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache

from core.config import get_settings

HUB_HOST = ("huggingface.co", 443)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=1)
def network_status() -> tuple[bool, str]:
    """(offline, reason)."""
    mode = get_settings().offline
    if mode == "true":
        offline, reason = True, "ADLENS_OFFLINE=true"
    elif mode == "false":
        offline, reason = False, "ADLENS_OFFLINE=false"
    elif _env_true("HF_HUB_OFFLINE") or _env_true("YOLO_OFFLINE"):
        offline, reason = True, "HF_HUB_OFFLINE / YOLO_OFFLINE is set"
    else:
        try:
            with socket.create_connection(HUB_HOST, timeout=1.5):
                offline, reason = False, "the model hub answered"
        except OSError as exc:
            offline, reason = True, f"the model hub is unreachable ({exc.__class__.__name__})"
    if offline:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    return offline, reason


def is_offline() -> bool:
    return network_status()[0]
