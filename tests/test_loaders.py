"""Models are loaded once per process, however many sessions (threads) ask for them at the same moment."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from core.loaders import LOADS, load_once


def test_concurrent_first_calls_load_once_and_share_the_result():
    started = threading.Event()

    @load_once(maxsize=4)
    def slow_model(path: str) -> object:
        started.set()
        time.sleep(0.2)  # a load that takes a while: every other caller arrives meanwhile
        return object()

    name = slow_model.loader_name
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda _: slow_model("a.pt"), range(8)))
        others = list(pool.map(lambda i: slow_model(f"m{i % 2}.pt"), range(8)))
    assert LOADS[name] == 3  # 'a.pt' once, then 'm0.pt' and 'm1.pt' once each
    assert all(g is got[0] for g in got)
    assert len({id(o) for o in others}) == 2
    slow_model.cache_clear()
    slow_model("a.pt")
    assert LOADS[name] == 4


def test_a_failed_load_is_not_cached_and_does_not_block_the_others():
    calls = []

    @load_once(maxsize=2)
    def flaky(path: str) -> str:
        calls.append(path)
        if len(calls) == 1:
            raise OSError("disk hiccup")
        return path.upper()

    with pytest.raises(OSError):
        flaky("x")
    assert flaky("x") == "X" and flaky("x") == "X"
    assert calls == ["x", "x"]


@pytest.mark.parametrize("module, name", [
    ("core.retrieval.models", "_checkpoint"), ("core.matching.service", "_load_cached"), ("core.regions.registry", "_build"),
    ("core.search.index", "_load_cached"), ("core.regions.clues", "minilm"), ("core.regions.ocr", "_engine"),
    ("core.embed.word_vectors", "_minilm_table"),
])
def test_the_app_model_loaders_load_once(module, name):
    import importlib

    loader = getattr(importlib.import_module(module), name)
    assert getattr(loader, "loader_name", None) == f"{module}.{name}", f"{module}.{name} is not wrapped in core.loaders.load_once"
