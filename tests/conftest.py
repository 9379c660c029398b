"""Shared fixtures.

Every test session gets its own database: a fresh PostgreSQL database on 127.0.0.1:5432 when
reachable (always under CI=true, which fails loudly otherwise), else an SQLite file. It is
migrated with Alembic once, and every table is emptied after each test. Jobs run eagerly
(synchronously) unless a test says otherwise. Redis, when reachable, gets a database number of
its own for the session (``redis_url`` fixture). ``METERPAY_TEST_DB=sqlite`` forces SQLite and no
Redis (the demo's default path), CI or not.
"""
from __future__ import annotations

import os
import random
import socket
import uuid

import pytest

CI = os.environ.get("CI", "").lower() == "true"
PG_ADMIN_URL = os.environ.get("METERPAY_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_BASE = os.environ.get("METERPAY_TEST_REDIS_URL", "redis://127.0.0.1:6379")

# Settings the app reads must be in place before anything imports core.config's cache.
os.environ.setdefault("METERPAY_SECRET_KEY", "test-secret-key-of-48-characters-for-serve-01234")
os.environ["METERPAY_ENV_FILE"] = os.devnull
os.environ.pop("METERPAY_REDIS_URL", None)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _pg_available() -> bool:
    if not _port_open("127.0.0.1", 5432):
        return False
    try:
        import sqlalchemy as sa
        eng = sa.create_engine(PG_ADMIN_URL)
        with eng.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        eng.dispose()
        return True
    except Exception:  # noqa: BLE001
        return False


# METERPAY_TEST_DB=sqlite: the default path of `make run` (SQLite, in-process jobs, no Redis), even
# where PostgreSQL and Redis answer (and under CI=true: .ci/run runs the fast tests once this way).
SQLITE_ONLY = os.environ.get("METERPAY_TEST_DB", "").lower() == "sqlite"
PG = not SQLITE_ONLY and _pg_available()
REDIS = not SQLITE_ONLY and _port_open("127.0.0.1", 6379)
if CI and not SQLITE_ONLY and not (PG and REDIS):
    raise pytest.UsageError(
        f"CI=true but PostgreSQL reachable={PG} and Redis reachable={REDIS} on 127.0.0.1: "
        "the suite must run against both under CI; start them (see .ci/run)")


def pytest_collection_modifyitems(config, items):
    """Browser tests run last: a browser driver may leave an event loop behind on the main thread."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


def pytest_report_header(config):
    forced = " (METERPAY_TEST_DB=sqlite)" if SQLITE_ONLY else ""
    return [f"meterpay: database={'postgresql' if PG else 'sqlite'}{forced}, redis={'yes' if REDIS else 'no'}, "
            f"CI={CI}"]


@pytest.fixture(scope="session", autouse=True)
def database_url(tmp_path_factory):
    import sqlalchemy as sa

    from core.config import reset_settings
    from core.db import reset_engine
    from core.migrate import upgrade

    if PG:
        name = f"mp_test_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
    os.environ["METERPAY_DATABASE_URL"] = url
    reset_settings()
    reset_engine()
    upgrade(url)
    from core.signals import load_listeners
    load_listeners()
    yield url
    reset_engine()
    if PG:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _empty_all_tables() -> None:
    from sqlalchemy import text

    import core.models  # noqa: F401
    from core.db import Base, get_engine
    engine = get_engine()
    tables = [t.name for t in Base.metadata.sorted_tables]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
        else:
            for t in reversed(tables):
                conn.execute(text(f'DELETE FROM "{t}"'))


@pytest.fixture(autouse=True)
def _clean_db(database_url):
    yield
    _empty_all_tables()


@pytest.fixture(autouse=True)
def eager_jobs():
    from core import jobs
    jobs.set_eager(True)
    yield
    jobs.set_eager(False)


@pytest.fixture
def settings_env(monkeypatch):
    """Set METERPAY_* variables for one test: ``settings_env(METERPAY_MAX_AMOUNT="100")``."""
    from core.config import reset_settings

    def apply(**values):
        for k, v in values.items():
            if v is None:
                monkeypatch.delenv(k, raising=False)
            else:
                monkeypatch.setenv(k, str(v))
        reset_settings()
    yield apply
    monkeypatch.undo()
    reset_settings()


@pytest.fixture
def session():
    from core.db import new_session
    s = new_session()
    yield s
    s.rollback()
    s.close()


@pytest.fixture
def app():
    from meterpay.app import create_app
    return create_app({"TESTING": True})


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def pg_only():
    if not PG:
        pytest.skip("needs PostgreSQL")


@pytest.fixture
def redis_url(monkeypatch):
    """A Redis database of this test's own, set as METERPAY_REDIS_URL; flushed before and after."""
    if not REDIS:
        pytest.skip("needs Redis")
    from redis import Redis

    from core.config import reset_settings
    url = f"{REDIS_BASE}/{random.randint(1, 15)}"
    Redis.from_url(url).flushdb()
    monkeypatch.setenv("METERPAY_REDIS_URL", url)
    reset_settings()
    yield url
    Redis.from_url(url).flushdb()
    monkeypatch.delenv("METERPAY_REDIS_URL", raising=False)
    reset_settings()


@pytest.fixture
def factory(session):
    from tests.factories import Factory
    return Factory(session)
