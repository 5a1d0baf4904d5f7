"""Every test runs offline, on CPU, against its own data directory and SQLite file."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["YOLO_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ADLENS_OFFLINE"] = "true"
os.environ.setdefault("ADLENS_DEVICE", "cpu")

import pytest  # noqa: E402


def _reset_caches() -> None:
    from core.config import get_settings
    from core.offline import network_status

    get_settings.cache_clear()
    network_status.cache_clear()


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh, empty AdLens home (data dir + SQLite database) for one test."""
    path = tmp_path / "adlens-home"
    monkeypatch.setenv("ADLENS_HOME", str(path))
    monkeypatch.delenv("ADLENS_DATABASE_URL", raising=False)
    _reset_caches()
    yield path
    _reset_caches()


@pytest.fixture
def engine(home):
    from core.store import get_engine

    return get_engine()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread (and the build machine's cores are shared); restores the count after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
