"""The metadata store: settings, migrations, transactions, file store."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from core.config import get_settings
from core.store import Ad, Category, get_engine, session_scope
from core.store.db import current_revision, table_names


def test_home_holds_database_and_migrations_reach_head(home):
    engine = get_engine()
    assert get_settings().resolved_database_url.endswith(str(home / "adlens.sqlite"))
    assert (home / "adlens.sqlite").exists()
    assert current_revision(engine) == "0001"
    for table in ("ads", "categories", "regions", "region_sets", "users", "impressions", "packages",
                  "package_ads", "model_runs", "expansion_runs"):
        assert table in table_names(engine)


def test_database_url_overrides_home(tmp_path, monkeypatch, home):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    monkeypatch.setenv("ADLENS_DATABASE_URL", url)
    get_settings.cache_clear()
    assert get_settings().resolved_database_url == url
    get_engine()
    assert (tmp_path / "elsewhere.sqlite").exists()


def test_failed_transaction_changes_nothing(engine):
    with pytest.raises(RuntimeError):
        with session_scope(engine) as s:
            s.add(Category(name="shoes"))
            s.flush()
            raise RuntimeError("boom")
    with session_scope(engine) as s:
        assert s.scalars(select(Category)).all() == []


def test_foreign_keys_are_enforced(engine):
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            s.add(Ad(id="a1", text="x", image_path="p", image_hash="h", content_hash="c", width=1, height=1,
                     category_id=999))


def test_array_store_is_content_addressed(home):
    from core.filestore import get_array, put_array

    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    rel = put_array(arr, "abc123", kind="embeddings")
    assert rel == "embeddings/ab/abc123.npy"
    np.testing.assert_array_equal(get_array(rel), arr)
    assert put_array(arr * 0, "abc123", kind="embeddings") == rel  # same key: not rewritten
    np.testing.assert_array_equal(get_array(rel), arr)


def test_empty_home_means_the_default_not_the_current_directory(monkeypatch):
    from core.config import DEFAULT_HOME, DEFAULT_SQLITE

    monkeypatch.setenv("ADLENS_HOME", "")
    monkeypatch.delenv("ADLENS_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        assert get_settings().home == DEFAULT_HOME
        assert get_settings().resolved_database_url == f"sqlite:///{DEFAULT_SQLITE}"
    finally:
        get_settings.cache_clear()
