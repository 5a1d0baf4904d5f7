"""Engine, sessions and migrations of the metadata store."""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, inspect, make_url
from sqlalchemy.orm import Session, sessionmaker

from core.config import REPO_ROOT, get_settings

MIGRATIONS_DIR = REPO_ROOT / "db" / "migrations"
# values per ``column.in_(...)`` list: SQLite allows at least 999 bound parameters per statement in every build we may
# meet, so a catalogue-sized list (100k ads) is sent in parts of this size
IN_CHUNK = 900


def chunks(items: Sequence, size: int = IN_CHUNK) -> Iterator[Sequence]:
    """``items`` in consecutive slices of at most ``size`` (for IN lists over many values)."""
    for start in range(0, len(items), size):
        yield items[start: start + size]


def in_parts(session: Session, query, column, values: Iterable, size: int = IN_CHUNK) -> list:
    """The rows of ``query`` whose ``column`` is one of ``values``: one statement per ``size`` values (a catalogue's ids
    exceed SQLite's bound parameters), rows in the order the parts come back."""
    return [row for part in chunks(list(values), size) for row in session.execute(query.where(column.in_(part)))]


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # pragma: no cover - driver hook
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def json_dumps(value: Any) -> str:
    """The JSON columns' serializer: strict JSON, NaN and +-infinity written as null.

    Python's default writes ``NaN``/``Infinity``, which are not JSON: PostgreSQL refuses the whole row
    (a metric that is undefined, e.g. precision on an empty split, would fail a finished training run);
    SQLite would keep a value no other JSON reader accepts. Both backends store the same text.
    """
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError as exc:
        if "not JSON compliant" not in str(exc):  # e.g. a circular reference
            raise
        return json.dumps(_finite(value), allow_nan=False)


_ENGINES: OrderedDict[str, Engine] = OrderedDict()  # the most recently used engines, by URL
_MAX_ENGINES = 8
_lock = threading.Lock()


def _engine_for(url: str) -> Engine:
    with _lock:
        engine = _ENGINES.get(url)
        if engine is not None:
            _ENGINES.move_to_end(url)
            return engine
        engine = create_engine(url, json_serializer=json_dumps)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        _ENGINES[url] = engine
        while len(_ENGINES) > _MAX_ENGINES:
            _ENGINES.popitem(last=False)
        return engine


def _key(url: str | URL) -> str:
    """How the migration marks name a database (the whole URL, password included, so two roles stay apart)."""
    return make_url(url).render_as_string(hide_password=False)


def dispose_engine(url: str) -> None:
    """Close the pooled connections of the engine kept for ``url`` and forget it, and that it was migrated.

    For a database that is about to be dropped or re-created (the PostgreSQL test databases): the next
    :func:`get_engine` of that URL opens new connections and runs the migrations check again.
    """
    with _lock:
        engine = _ENGINES.pop(url, None)
    if engine is not None:
        engine.dispose()
    key = _key(url)
    for mark in [m for m in _migrated if m[0] == key]:
        _migrated.discard(mark)


def get_engine(url: str | None = None, *, migrate: bool = True) -> Engine:
    """The engine for ``url`` (default: the settings' database), migrated to the newest schema."""
    settings = get_settings()
    if url is None:
        settings.ensure_dirs()
        url = settings.resolved_database_url
    engine = _engine_for(url)
    if migrate:
        upgrade(engine)
    return engine


def _alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    # the config is a ConfigParser: a '%' (URL-encoded characters of a password) must be doubled
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    cfg.attributes["engine"] = engine
    return cfg


_migrated: set[tuple[str, str]] = set()  # (database, revision) already brought up to date by this process


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` through the Alembic migrations (once per process and database)."""
    key = (_key(engine.url), revision)
    if key in _migrated:
        return
    from alembic import command

    command.upgrade(_alembic_config(engine), revision)
    _migrated.add(key)


def head_revision() -> str | None:
    """The newest migration's revision (what :func:`upgrade` brings a database to)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def table_names(engine: Engine) -> list[str]:
    return sorted(inspect(engine).get_table_names())


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A transaction: committed when the block ends, rolled back (nothing kept) on any error."""
    factory = sessionmaker(bind=engine or get_engine(), expire_on_commit=False, future=True)
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def sqlite_path(engine: Engine) -> Path | None:
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    return Path(engine.url.database)
