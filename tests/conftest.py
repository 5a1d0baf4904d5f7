"""Every test runs offline, on CPU, against its own data directory and database.

The database is a SQLite file in the test's home unless a test asks for both backends: the mark
``@pytest.mark.both_backends`` (or requesting ``db_home`` / ``db_engine``) runs it twice, as
``test[sqlite]`` and ``test[postgresql]``. The PostgreSQL variant gets a fresh, empty database of its
own (created from the server named by ``--postgres-url`` / ``ADLENS_TEST_POSTGRES_URL``, migrated
from empty by the code under test, dropped afterwards). Without a server it is skipped, except
with ``CI=true``, where a missing PostgreSQL is an error (``.ci/run`` starts one).
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["YOLO_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["ADLENS_OFFLINE"] = "true"
os.environ.setdefault("ADLENS_DEVICE", "cpu")

import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402

import pytest  # noqa: E402

BACKENDS = ("sqlite", "postgresql")
POSTGRES_ENV = "ADLENS_TEST_POSTGRES_URL"
NO_POSTGRES = f"no PostgreSQL: set {POSTGRES_ENV} or run .ci/postgres"
DB_PREFIX = "adlens_t_"


def pytest_addoption(parser):
    parser.addoption(
        "--postgres-url", default=os.environ.get(POSTGRES_ENV, ""),
        help=f"SQLAlchemy URL of a PostgreSQL database whose role may CREATE DATABASE; the tests marked both_backends "
             f"also run there, each in a fresh database (default: ${POSTGRES_ENV})",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "both_backends: run the test on SQLite and on PostgreSQL (see --postgres-url)")


def _parametrized_here(metafunc, name: str) -> bool:
    return any(name in (m.args[0] if isinstance(m.args[0], list | tuple) else m.args[0].replace(" ", "").split(","))
               for m in metafunc.definition.iter_markers("parametrize"))


def pytest_generate_tests(metafunc):
    wants_both = metafunc.definition.get_closest_marker("both_backends") is not None or bool(
        {"db_home", "db_engine"} & set(metafunc.fixturenames))
    if wants_both and "db_backend" in metafunc.fixturenames and not _parametrized_here(metafunc, "db_backend"):
        metafunc.parametrize("db_backend", BACKENDS, indirect=True)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def postgres_unavailable(reason: str):
    """Skip the PostgreSQL variant here; fail it in CI, where the server must be there."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the PostgreSQL tests may not be skipped)", pytrace=False)
    pytest.skip(reason)


def _reset_caches() -> None:
    from core.config import get_settings
    from core.offline import network_status

    get_settings.cache_clear()
    network_status.cache_clear()


@pytest.fixture(scope="session")
def postgres_admin(request):
    """An AUTOCOMMIT engine on the server of --postgres-url (checked once per session), for CREATE/DROP DATABASE."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError
    from sqlalchemy.pool import NullPool

    url = (request.config.getoption("--postgres-url") or "").strip()
    if not url:
        postgres_unavailable(NO_POSTGRES)
    lines = url.splitlines()
    try:
        parsed = make_url(url)
    except ArgumentError:
        what = f"{len(lines)} lines, not one URL (did a script print more than the URL?)" if len(lines) > 1 else "not a SQLAlchemy URL"
        pytest.fail(f"--postgres-url / {POSTGRES_ENV} is {what}", pytrace=False)
    if parsed.get_backend_name() != "postgresql":
        pytest.fail(f"--postgres-url / {POSTGRES_ENV} must be a postgresql URL, not {parsed.get_backend_name()}", pytrace=False)
    admin = create_engine(parsed, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except (SQLAlchemyError, ImportError) as exc:
        admin.dispose()
        postgres_unavailable(f"PostgreSQL at {parsed.render_as_string(hide_password=True)} cannot be used: "
                             f"{str(exc).splitlines()[0]}")
    yield admin
    admin.dispose()


@contextmanager
def fresh_postgres_database(admin) -> Iterator[str]:
    """A new, empty database on ``admin``'s server; yields its URL and drops it afterwards (closing every connection)."""
    from core.store.db import dispose_engine

    name = f"{DB_PREFIX}{uuid.uuid4().hex[:16]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engine(url)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_admin) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database of this test's own (no tables, not migrated)."""
    with fresh_postgres_database(postgres_admin) as url:
        yield url


@pytest.fixture
def db_backend(request) -> str:
    """'sqlite' (the default) or 'postgresql' when the test is parametrized over both backends."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def home(tmp_path, monkeypatch, db_backend, request):
    """A fresh, empty AdLens home (data dir + database) for one test: SQLite in the home, or a new PostgreSQL database."""
    path = tmp_path / "adlens-home"
    monkeypatch.setenv("ADLENS_HOME", str(path))
    monkeypatch.delenv("ADLENS_DATABASE_URL", raising=False)
    if db_backend == "postgresql":
        admin = request.getfixturevalue("postgres_admin")
        with fresh_postgres_database(admin) as url:
            monkeypatch.setenv("ADLENS_DATABASE_URL", url)
            _reset_caches()
            yield path
            _reset_caches()
        return
    _reset_caches()
    yield path
    _reset_caches()


@pytest.fixture
def engine(home):
    from core.store import get_engine

    return get_engine()


@pytest.fixture
def db_home(home):
    """``home`` on each backend in turn (requesting it parametrizes the test over sqlite and postgresql)."""
    return home


@pytest.fixture
def db_engine(engine):
    """``engine`` on each backend in turn (requesting it parametrizes the test over sqlite and postgresql)."""
    return engine


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread (and the build machine's cores are shared); restores the count after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# pytest-playwright's fixtures (browser, context, page) drive Debian's Chromium with these launch options
@pytest.fixture(scope="session")
def browser_type_launch_args():
    from tests.browser_app import launch_args, require_chromium

    return launch_args(require_chromium())


@pytest.fixture(autouse=True)
def _fresh_streamlit_caches():
    """Page tests (AppTest) run in this process: a model one page test cached with st.cache_resource (a real
    detector, say) must not leak into the next test, which may install a stand-in of its own."""
    yield
    import sys

    if "streamlit" in sys.modules:
        import streamlit as st

        st.cache_resource.clear()
        st.cache_data.clear()
