"""Many rows at once on PostgreSQL: COPY in text or row form, ids taken from a sequence, big IN lists.

Shared by the bulk ledger path (``core.ledger.bulk``) and the billing writer (``core.billing.store``).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.db import is_postgres


def ids_in(session: Session, column, ids, *, strings: bool = False):
    """``column IN ids`` that stays one bound array on PostgreSQL (thousands of ids, one parameter)."""
    ids = list(ids)
    if is_postgres(session):
        from sqlalchemy import BigInteger, String, any_, bindparam
        from sqlalchemy.dialects.postgresql import ARRAY
        return column == any_(bindparam(None, ids, type_=ARRAY(String if strings else BigInteger)))
    return column.in_(ids)


def _driver(session: Session) -> Any:
    """The psycopg connection under the session's transaction (PostgreSQL only)."""
    conn = session.connection().connection.driver_connection
    assert conn is not None
    return conn


def copy_rows(session: Session, sql: str, rows) -> None:
    """COPY ``rows`` (tuples of Python values, adapted by psycopg) into the session's transaction."""
    with _driver(session).cursor() as cur:
        with cur.copy(sql) as copy:
            for r in rows:
                copy.write_row(r)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value) -> str:
    """One value as a field of COPY's text format (None is NULL; text escaped)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        # most values need no escape: four substring tests are ~10x cheaper than translate's per-char map
        if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
            return value.translate(_COPY_ESCAPES)
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)  # int, Decimal: digits, sign, point, exponent


def copy_lines(session: Session, sql: str, lines) -> None:
    """COPY already formatted text lines (each ending in a newline), in blocks."""
    with _driver(session).cursor() as cur:
        with cur.copy(sql) as copy:
            buf = []
            for line in lines:
                buf.append(line)
                if len(buf) >= 10000:
                    copy.write("".join(buf))
                    buf.clear()
            if buf:
                copy.write("".join(buf))


def next_ids(session: Session, table: str, n: int) -> list[int]:
    """Take ``n`` ids from the table's sequence (PostgreSQL), as one text value (one row back, not n)."""
    with _driver(session).cursor() as cur:
        return _take_ids(cur, table, n)


def _take_ids(cur, table: str, n: int) -> list[int]:
    # The sequence is named first: as an argument of nextval, pg_get_serial_sequence would be
    # looked up again for every row (0.5 s for 200,000 ids).
    cur.execute(f"SELECT pg_get_serial_sequence('{table}', 'id')")
    sequence = cur.fetchone()[0]
    cur.execute("SELECT string_agg(nextval(CAST(%s AS regclass))::text, ',') FROM generate_series(1, %s)",
                (sequence, n))
    return [int(x) for x in cur.fetchone()[0].split(",")]
