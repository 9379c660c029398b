"""Insert a row unless its unique key exists, without a SAVEPOINT (INSERT .. ON CONFLICT DO NOTHING).

Savepoints are avoided on purpose: SQLAlchemy fires the session's ``after_commit`` event when a
SAVEPOINT is released, which would run after-commit work (jobs, signals) before the real commit.
"""
from __future__ import annotations

from sqlalchemy.orm import Session


def insert_if_absent(session: Session, model, **values) -> int | None:
    """Insert ``model(**values)``; returns the new id, or None when a unique key was taken."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only PostgreSQL and SQLite are supported
        raise RuntimeError(f"unsupported database {dialect}")
    stmt = insert(model).values(**values).on_conflict_do_nothing().returning(model.id)
    return session.execute(stmt).scalar()
