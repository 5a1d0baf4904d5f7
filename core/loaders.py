"""Models loaded once per process, however many sessions ask for them at once.

``functools.lru_cache`` keeps a loaded model, but two Streamlit sessions (threads) asking for the same model
at the same moment would both load it. :func:`load_once` adds a lock per key around the cache: the first caller
loads, the others wait for it and share the result. :data:`LOADS` counts the loads each loader really ran.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

LOADS: Counter[str] = Counter()  # "module.function" -> loads run in this process


def load_once(maxsize: int) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorator: an LRU cache of ``maxsize`` entries whose entries are computed once even under concurrent calls.
    Arguments must be hashable and positional; ``cache_clear`` empties the cache."""

    def decorate(fn: Callable[..., T]) -> Callable[..., T]:
        name = f"{fn.__module__}.{fn.__qualname__}"

        def counted(*args: Hashable) -> T:
            LOADS[name] += 1
            return fn(*args)

        cached = functools.lru_cache(maxsize=maxsize)(counted)
        guard = threading.Lock()
        locks: dict[tuple, threading.Lock] = {}

        @functools.wraps(fn)
        def get(*args: Hashable) -> T:
            with guard:
                lock = locks.setdefault(args, threading.Lock())
            with lock:
                return cached(*args)

        def cache_clear() -> None:
            with guard:
                cached.cache_clear()
                locks.clear()

        get.cache_clear = cache_clear  # type: ignore[attr-defined]
        get.cache_info = cached.cache_info  # type: ignore[attr-defined]
        get.loader_name = name  # type: ignore[attr-defined]
        return get

    return decorate


def loads(name: str) -> int:
    return LOADS[name]


def _reset() -> None:  # tests
    LOADS.clear()


__all__ = ["LOADS", "load_once", "loads"]
