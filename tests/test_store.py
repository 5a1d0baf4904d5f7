"""The metadata store: settings, migrations, transactions, file store."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from core.config import get_settings
from core.store import Ad, Base, Category, get_engine, session_scope
from core.store.db import current_revision, head_revision, table_names


def test_home_holds_database_and_migrations_reach_head(home):
    engine = get_engine()
    assert get_settings().resolved_database_url.endswith(str(home / "adlens.sqlite"))
    assert (home / "adlens.sqlite").exists()
    assert current_revision(engine) == "0001"
    for table in ("ads", "categories", "regions", "region_sets", "users", "impressions", "packages",
                  "package_ads", "model_runs", "expansion_runs"):
        assert table in table_names(engine)


def _schema_differences(engine) -> list:
    """What Alembic's autogenerate sees between the migrated database and the models (types included)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return compare_metadata(context, Base.metadata)


@pytest.mark.both_backends
def test_migrations_from_empty_give_exactly_the_models_schema(home, db_backend):
    """An empty database (a new SQLite file, a new PostgreSQL database) migrated to head holds what the models declare."""
    engine = get_engine()
    assert engine.dialect.name == db_backend
    assert current_revision(engine) == head_revision()
    assert set(table_names(engine)) == set(Base.metadata.tables) | {"alembic_version"}
    assert _schema_differences(engine) == []


@pytest.mark.both_backends
def test_migrations_downgrade_to_empty_and_back(home):
    from alembic import command

    from core.store.db import _alembic_config

    engine = get_engine()
    command.downgrade(_alembic_config(engine), "base")
    assert table_names(engine) == ["alembic_version"] and current_revision(engine) is None
    command.upgrade(_alembic_config(engine), "head")
    assert current_revision(engine) == head_revision() and _schema_differences(engine) == []


def test_a_percent_sign_in_the_url_reaches_the_migrations(tmp_path):
    """Alembic's config is a ConfigParser: URL-encoded characters (a password with '%40') must not break it."""
    from core.store.db import dispose_engine

    url = f"sqlite:///{tmp_path / 'at%40home.sqlite'}"
    try:
        assert current_revision(get_engine(url)) == head_revision()
    finally:
        dispose_engine(url)


def test_database_url_overrides_home(tmp_path, monkeypatch, home):
    url = f"sqlite:///{tmp_path / 'elsewhere.sqlite'}"
    monkeypatch.setenv("ADLENS_DATABASE_URL", url)
    get_settings.cache_clear()
    assert get_settings().resolved_database_url == url
    get_engine()
    assert (tmp_path / "elsewhere.sqlite").exists()


@pytest.mark.both_backends
def test_failed_transaction_changes_nothing(engine):
    with pytest.raises(RuntimeError):
        with session_scope(engine) as s:
            s.add(Category(name="shoes"))
            s.flush()
            raise RuntimeError("boom")
    with session_scope(engine) as s:
        assert s.scalars(select(Category)).all() == []


@pytest.mark.both_backends
def test_foreign_keys_are_enforced(engine):
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            s.add(Ad(id="a1", text="x", image_path="p", image_hash="h", content_hash="c", width=1, height=1,
                     category_id=999))


@pytest.mark.both_backends
def test_json_columns_hold_the_same_values_on_every_backend(engine):
    """Unicode, nesting, ints vs floats survive; NaN / infinity (not JSON: PostgreSQL refuses them) become null."""
    from core.store import ModelRun

    metrics = {"p@k": [0.5, float("nan"), 1], "loss": float("inf"), "best": -float("inf"), "名": {"nested": [True, None, "é"]}}
    with session_scope(engine) as s:
        s.add(ModelRun(kind="ion", name="json", metrics=metrics, config={"lr": 1e-3, "layers": 2}))
    with session_scope(engine) as s:
        run = s.scalars(select(ModelRun)).one()
        assert run.metrics == {"p@k": [0.5, None, 1], "loss": None, "best": None, "名": {"nested": [True, None, "é"]}}
        assert run.config == {"lr": 1e-3, "layers": 2} and isinstance(run.config["layers"], int)


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
