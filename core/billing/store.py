"""Writing many rows fast: PostgreSQL COPY for large batches, the ORM otherwise.

Callers hold the billing-state row lock of every meter they write readings for, and have checked
duplicates under it, so COPY meets no unique-key conflict.
"""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.db import is_postgres, utcnow
from core.models import BilledUsage, MeterEvent, Reading

COPY_THRESHOLD = 50
READING_COLUMNS = ("meter_id", "taken_at", "total", "sharp", "peak", "flat", "valley", "deep_valley",
                   "source", "status")


def use_copy(session: Session, n: int) -> bool:
    return n >= COPY_THRESHOLD and is_postgres(session)


def insert_readings(session: Session, rows: list[tuple]) -> list[int]:
    """Insert readings given as tuples in READING_COLUMNS order; return their ids in order."""
    if not rows:
        return []
    if not use_copy(session, len(rows)):
        objs = [Reading(**dict(zip(READING_COLUMNS, r))) for r in rows]
        session.add_all(objs)
        session.flush()
        return [o.id for o in objs]
    conn = session.connection()
    ids = conn.execute(text("SELECT nextval(pg_get_serial_sequence('readings', 'id')) FROM generate_series(1, :n)"),
                       {"n": len(rows)}).scalars().all()
    now = utcnow()
    with conn.connection.driver_connection.cursor() as cur:
        with cur.copy("COPY readings (id, " + ", ".join(READING_COLUMNS) + ", created_at) FROM STDIN") as copy:
            for rid, r in zip(ids, rows):
                copy.write_row((rid, *r, now))
    return ids


def insert_usage(session: Session, rows: list[dict]) -> None:
    if not rows:
        return
    if not use_copy(session, len(rows)):
        session.add_all([BilledUsage(**r) for r in rows])
        session.flush()
        return
    cols = ("meter_id", "account_id", "billing_mode", "from_reading_id", "to_reading_id", "started_at", "ended_at",
            "quantity", "amount", "amount_fen", "lines", "entry_id", "created_at")
    now = utcnow()
    conn = session.connection()
    with conn.connection.driver_connection.cursor() as cur:
        with cur.copy("COPY billed_usage (" + ", ".join(cols) + ") FROM STDIN") as copy:
            for r in rows:
                copy.write_row((r["meter_id"], r["account_id"], r["billing_mode"], r["from_reading_id"],
                                r["to_reading_id"], r["started_at"], r["ended_at"], r["quantity"], r["amount"],
                                r["amount_fen"], json.dumps(r["lines"]), r["entry_id"], now))


def insert_events(session: Session, rows: list[dict]) -> None:
    if rows:
        session.add_all([MeterEvent(**r) for r in rows])
        session.flush()


def update_states(session: Session, rows: list[dict]) -> None:
    """Write back billing states: dicts with meter_id and the columns to set."""
    if not rows:
        return
    cols = ("last_reading_id", "last_taken_at", "last_total", "last_periods", "cycle", "cycle_used",
            "charged_month", "exact_amount", "billed_fen")
    now = utcnow()
    if use_copy(session, len(rows)):
        conn = session.connection()
        conn.execute(text("CREATE TEMP TABLE IF NOT EXISTS _billing_state_upd (meter_id bigint, last_reading_id bigint,"
                          " last_taken_at timestamptz, last_total numeric, last_periods text, cycle text,"
                          " cycle_used numeric, charged_month text, exact_amount numeric, billed_fen bigint)"
                          " ON COMMIT DELETE ROWS"))
        conn.execute(text("DELETE FROM _billing_state_upd"))
        with conn.connection.driver_connection.cursor() as cur:
            with cur.copy("COPY _billing_state_upd (meter_id, " + ", ".join(cols) + ") FROM STDIN") as copy:
                for r in rows:
                    copy.write_row((r["meter_id"], *[_copy_value(c, r[c]) for c in cols]))
        conn.execute(text(
            "UPDATE meter_billing_states AS s SET " + ", ".join(
                f"{c} = u.{c}" + ("::json" if c == "last_periods" else "") for c in cols)
            + ", updated_at = :now FROM _billing_state_upd AS u WHERE s.meter_id = u.meter_id"), {"now": now})
        return
    from core.models.billing import MeterBillingState
    for r in rows:
        session.query(MeterBillingState).filter(MeterBillingState.meter_id == r["meter_id"]).update(
            {**{c: r[c] for c in cols}, "updated_at": now}, synchronize_session=False)


def _copy_value(col: str, value):
    if col == "last_periods":
        return None if value is None else json.dumps(value)
    return value


def as_decimal(value) -> Decimal | None:
    return None if value is None else Decimal(value)


def aware(value: datetime | None) -> datetime | None:
    from datetime import timezone
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=timezone.utc)
