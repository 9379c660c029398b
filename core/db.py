"""Engine, sessions and the declarative base.

``session_scope()`` is the one way services get a transaction: it commits on success and
rolls back on error. Callbacks registered with ``after_commit(session, fn)`` run only once the
transaction has committed (follow-up work is published after commit, never before).
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from sqlalchemy import BigInteger, DateTime, Integer, MetaData, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from core.config import get_settings

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY, so big ids are INTEGER there.
BigId = BigInteger().with_variant(Integer, "sqlite")


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes stored as UTC; SQLite gets them back aware too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        return value.astimezone(UTC)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


_M = TypeVar("_M")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


CONNECT_TIMEOUT = 5  # seconds to reach PostgreSQL
_lock = threading.Lock()
_engine: Engine | None = None
_sessionmaker: sessionmaker | None = None


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _sqlite_savepoint_in_a_transaction(conn, _name):
            # pysqlite opens a transaction only before DML, so a SAVEPOINT issued first (a ledger post's
            # begin_nested) would be the outermost one and its RELEASE would commit everything so far:
            # a post inside a larger unit could be committed alone. A deferred BEGIN first keeps the
            # savepoint inside the unit, which commits or rolls back whole, as on PostgreSQL. (BEGIN
            # DEFERRED takes no lock until the first statement.)
            raw = conn.connection.dbapi_connection
            if raw is not None and not raw.in_transaction:
                raw.execute("BEGIN")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    # An unreachable server is an error in seconds (a 503, a job that waits), never a hang;
    # a connect_timeout in the URL wins.
    args = {} if "connect_timeout=" in url else {"connect_timeout": CONNECT_TIMEOUT}
    return create_engine(url, pool_size=10, max_overflow=30, pool_pre_ping=True, pool_timeout=10, connect_args=args)


def get_engine() -> Engine:
    global _engine, _sessionmaker
    with _lock:
        if _engine is None:
            _engine = _make_engine(get_settings().database_url)
            _sessionmaker = sessionmaker(bind=_engine, expire_on_commit=False)
        return _engine


def reset_engine() -> None:
    """Forget the engine (tests switch databases; forked workers must not share sockets)."""
    global _engine, _sessionmaker
    with _lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
        _sessionmaker = None


def new_session() -> Session:
    get_engine()
    assert _sessionmaker is not None
    return _sessionmaker()


@contextmanager
def session_scope() -> Iterator[Session]:
    session = new_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def each_in_own_transaction(ids, fn: Callable[[Session, int], object], what: str, log) -> None:
    """Run ``fn(session, id)`` for every id, each in a transaction of its own; one id's failure is
    logged (``what`` names the work) and does not stop the others."""
    for item in ids:
        try:
            with session_scope() as session:
                fn(session, item)
        except Exception:
            log.exception("%s of account %s failed", what, item)


def is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


# --- after-commit callbacks -------------------------------------------------------------

_PENDING_KEY = "meterpay_after_commit"


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run ``fn`` once ``session``'s outermost transaction commits; drop it if the transaction
    (or the savepoint it was registered in) rolls back."""
    txn = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_PENDING_KEY, []).append((txn, fn))


@event.listens_for(Session, "after_commit")
def _run_after_commit(session: Session) -> None:
    # SQLAlchemy fires after_commit when a SAVEPOINT is released too; only the real commit counts.
    if session.in_nested_transaction():
        return
    pending = session.info.pop(_PENDING_KEY, [])
    for _txn, fn in pending:
        fn()


def _within(txn, ancestor) -> bool:
    while txn is not None:
        if txn is ancestor:
            return True
        txn = txn.parent
    return False


@event.listens_for(Session, "after_soft_rollback")
def _drop_after_commit(session: Session, previous_transaction) -> None:
    pending = session.info.get(_PENDING_KEY)
    if pending:
        session.info[_PENDING_KEY] = [(t, fn) for t, fn in pending if not _within(t, previous_transaction)]


# --- insert unless present (was core/upsert.py) ---------------------------------------------------
# Savepoints are avoided on purpose: SQLAlchemy fires the session's ``after_commit`` event when a
# SAVEPOINT is released, which would run after-commit work (jobs, signals) before the real commit.
def insert_if_absent(session: Session, model, **values) -> int | None:
    """Insert ``model(**values)``; returns the new id, or None when a unique key was taken."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        stmt = pg_insert(model).values(**values).on_conflict_do_nothing().returning(model.id)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert
        stmt = sqlite_insert(model).values(**values).on_conflict_do_nothing().returning(model.id)
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        raise RuntimeError(f"unsupported database {dialect}")
    return session.execute(stmt).scalar()


def hold_write_lock(session: Session) -> None:
    """On SQLite, what ``SELECT .. FOR UPDATE`` does on PostgreSQL: SQLAlchemy leaves FOR UPDATE out
    there, so two sessions could read the same row, both decide on the old state, and the later write
    would win. Taking the database's write lock now (``BEGIN IMMEDIATE``, waiting up to busy_timeout)
    makes the rows read next current and keeps them so until commit or rollback. Call it before the
    locking read, at the start of a unit; within a transaction that is already open it does nothing (a
    unit that has written holds the lock already). No-op on PostgreSQL, whose FOR UPDATE locks the row.
    """
    conn = session.connection()
    if conn.dialect.name != "sqlite":
        return
    raw = conn.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        raw.execute("BEGIN IMMEDIATE")


def locked_row(session: Session, model, *, key: dict, defaults: dict):
    """The row of ``model`` matching ``key`` (one unique key), created from ``key`` and ``defaults``
    if missing (no SAVEPOINT, see ``insert_if_absent``), then locked FOR UPDATE and returned fresh.

    FOR UPDATE is written unconditionally: SQLAlchemy leaves it out on SQLite, whose writers are
    serialised by the database lock anyway.
    """
    query = select(model).filter_by(**key).with_for_update()
    row = session.scalar(query)
    if row is None:
        insert_if_absent(session, model, **key, **defaults)
        row = session.scalar(query.execution_options(populate_existing=True))
    return row


def get_existing(session: Session, model: type[_M], ident: object) -> _M:
    """``session.get`` for a row that must exist (a foreign key points at it); LookupError if not."""
    row = session.get(model, ident)
    if row is None:
        raise LookupError(f"no {model.__name__} {ident!r}")
    return row
