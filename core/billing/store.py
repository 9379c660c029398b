"""Writing many rows fast: PostgreSQL COPY for large batches, the ORM otherwise.

Callers hold the billing-state row lock of every meter they write readings for, and have checked
duplicates under it, so COPY meets no unique-key conflict.
"""
from __future__ import annotations

import json
import queue
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy.orm import Session

from core.bulk_sql import _take_ids, copy_lines, copy_text, next_ids
from core.db import is_postgres, utcnow
from core.models import BilledUsage, MeterEvent, Reading
from core.tariffs.plan import PERIODS  # the register columns, in READING_COLUMNS order

COPY_THRESHOLD = 50
READING_COLUMNS = ("meter_id", "taken_at", "total", "sharp", "peak", "flat", "valley", "deep_valley",
                   "source", "status")


class IdReservation:
    """``n`` ids taken from a table's sequence on a pooled connection of their own, on a thread.

    Sequences are not transactional, so this runs while the caller's transaction does other work
    (a large import takes its readings' ids while it locks the meters' billing cursors); ids of a
    batch that rolls back are only a gap, and may be used again by the same batch's retry.
    """

    def __init__(self, session: Session, table: str, n: int):
        bind = session.get_bind()
        self.engine: Any = getattr(bind, "engine", bind)
        self.table, self.n = table, n
        self._ids: list[int] = []
        self._failed: list[BaseException] = []
        self._thread = threading.Thread(target=self._take, name=f"{table}-ids", daemon=True)
        self._thread.start()

    def _take(self) -> None:
        try:
            raw = self.engine.raw_connection()
            try:
                cur = raw.cursor()
                self._ids = _take_ids(cur, self.table, self.n)
                cur.close()
                raw.commit()
            finally:
                raw.close()
        except BaseException as exc:  # noqa: BLE001 - re-raised by ids()
            self._failed.append(exc)

    def ids(self, n: int) -> list[int]:
        """The first ``n`` reserved ids (waits for the reservation)."""
        self._thread.join()
        if self._failed:
            raise self._failed[0]
        if n > self.n:
            raise ValueError(f"{n} ids asked of a reservation of {self.n}")
        return self._ids[:n]


def use_copy(session: Session, n: int) -> bool:
    return n >= COPY_THRESHOLD and is_postgres(session)


class ReadingWriter:
    """Readings written while the caller goes on working: ``send`` blocks of rows as they are
    decided, ``ids`` when all are sent, ``wait`` before the session is used again (a streaming
    writer also takes further COPYs with ``copy``, run in order after the readings).

    With at least COPY_THRESHOLD rows ``expected`` on PostgreSQL, ids are taken from the sequence
    up front (``expected`` is an upper bound; unused ids are only a gap) and a thread streams the
    blocks through COPY while the caller decides the next ones and prices; until ``wait`` returns
    the caller must not touch the session's connection (``wait`` re-raises what the writer met).
    Otherwise the rows go in through the ORM when ``ids`` is called.
    """

    BLOCK = 5000  # rows per block handed to the writer

    def __init__(self, session: Session, expected: int, reserved: IdReservation | None = None):
        self.session = session
        self.streaming = use_copy(session, expected)
        self._sent = 0
        self._kept: list[tuple] = []  # the ORM path's rows until ids()
        self._thread: threading.Thread | None = None
        self._failed: list[BaseException] = []
        if self.streaming:
            if reserved is not None and reserved.n >= expected:
                self._reserved = reserved.ids(expected)
            else:
                self._reserved = next_ids(session, "readings", expected)
            self._blocks: queue.Queue = queue.Queue(maxsize=16)
            driver = session.connection().connection.driver_connection
            self._thread = threading.Thread(target=self._write, args=(driver,), name="readings-copy", daemon=True)
            self._thread.start()

    def send(self, block: list[tuple]) -> None:
        """Hand over the next readings, in order; the writer owns ``block`` from now on. Each is a
        tuple of READING_COLUMNS, or a reading as it arrived (a 5-tuple: meter id, taken_at, total,
        periods or None, source) to store with status "ok"."""
        if not block:
            return
        if not self.streaming:
            self._kept.extend(block)
            return
        if self._sent + len(block) > len(self._reserved):
            raise ValueError("more readings than the writer was told to expect")
        self._blocks.put((self._sent, block))
        self._sent += len(block)

    def ids(self) -> list[int]:
        """The ids of every reading sent, in order (the ORM path writes them now)."""
        if self.streaming:
            return self._reserved[:self._sent]
        rows, self._kept = self._kept, []
        if not rows:
            return []
        objs = [Reading(**dict(zip(READING_COLUMNS, _columns(r)))) for r in rows]
        self.session.add_all(objs)
        self.session.flush()
        return [o.id for o in objs]

    def copy(self, sql: str, lines: list[str]) -> None:
        """Queue another COPY (``lines`` already formatted, each ending in a newline) after the
        readings: the readings' COPY ends with the first of these. Streaming writers only."""
        if not self.streaming:
            raise RuntimeError("only a streaming writer takes further COPYs")
        if lines:
            self._blocks.put(("copy", sql, lines))

    def execute(self, sql: str) -> None:
        """Queue statements (no parameters; several may be joined with ``;``) to run in order with
        the COPYs, on the same connection and transaction, while the caller goes on: the database
        merges what was just copied while billing prices the next block. Like ``copy``, it ends
        the readings' COPY. Streaming writers only."""
        if not self.streaming:
            raise RuntimeError("only a streaming writer takes statements")
        if sql:
            self._blocks.put(("sql", sql, None))

    def wait(self) -> None:
        if self._thread is None:
            return
        self._blocks.put(None)
        self._thread.join()
        self._thread = None
        if self._failed:
            raise self._failed[0]

    def _write(self, driver) -> None:
        got_end = False
        try:
            now = utcnow().isoformat()
            # rows of one poll round share one datetime object: format it once (the object is kept
            # with its text, so its id cannot be reused by another while this writer runs)
            iso: dict[int, tuple[datetime, str]] = {}
            ids = self._reserved
            with driver.cursor() as cur:
                with cur.copy("COPY readings (id, " + ", ".join(READING_COLUMNS) + ", created_at) FROM STDIN") as copy:
                    while True:
                        item = self._blocks.get()
                        got_end = item is None
                        if item is None or item[0] in ("copy", "sql"):
                            break
                        first, block = item
                        buf: list[str] = []
                        add = buf.append
                        for rid, r in zip(ids[first:first + len(block)], block):
                            at = r[1]
                            seen = iso.get(id(at))
                            if seen is None:
                                seen = iso[id(at)] = (at, at.isoformat())
                            when = seen[1]
                            # ints, ISO times, Decimal strings and fixed words need no escaping
                            if len(r) == 5:  # a RawReading, stored as it came
                                if r[3] is None:
                                    add(f"{rid}\t{r[0]}\t{when}\t{r[2]}\t\\N\t\\N\t\\N\t\\N\t\\N\t{r[4]}\tok\t"
                                        f"{now}\n")
                                    continue
                                r = _columns(r)
                            if r[3] is None and r[4] is None and r[5] is None and r[6] is None and r[7] is None:
                                add(f"{rid}\t{r[0]}\t{when}\t{r[2]}\t\\N\t\\N\t\\N\t\\N\t\\N\t{r[8]}\t{r[9]}\t{now}\n")
                            else:
                                add(f"{rid}\t{r[0]}\t{when}\t{r[2]}\t{_n(r[3])}\t{_n(r[4])}\t{_n(r[5])}\t"
                                    f"{_n(r[6])}\t{_n(r[7])}\t{r[8]}\t{r[9]}\t{now}\n")
                        copy.write("".join(buf))
                while item is not None:
                    what, sql, lines = item
                    if what == "sql":
                        cur.execute(sql)
                    else:
                        with cur.copy(sql) as copy:
                            for k in range(0, len(lines), 10000):
                                copy.write("".join(lines[k:k + 10000]))
                    item = self._blocks.get()
                    got_end = item is None
        except BaseException as exc:  # noqa: BLE001 - re-raised by wait() in the caller's thread
            self._failed.append(exc)
            while not got_end:  # let the caller's send() and wait() through
                got_end = self._blocks.get() is None


_NO_REGISTERS = (None,) * 5


def _columns(r: tuple) -> tuple:
    """A reading to store as a tuple of READING_COLUMNS: a RawReading (meter id, time, total,
    periods, source; see ``send``) becomes a reading with status "ok"; a tuple stays as it is."""
    if len(r) != 5:
        return r
    periods = r[3]
    regs = _NO_REGISTERS if periods is None else tuple(map(periods.get, PERIODS))
    return (r[0], r[1], r[2], *regs, r[4], "ok")


def _n(value) -> str:
    return "\\N" if value is None else str(value)


def insert_usage(session: Session, rows: list[dict]) -> None:
    if not rows:
        return
    if not use_copy(session, len(rows)):
        session.add_all([BilledUsage(**r) for r in rows])
        session.flush()
        return
    copy_lines(session, USAGE_COPY, usage_lines(rows))


USAGE_COPY = ("COPY billed_usage (meter_id, account_id, billing_mode, from_reading_id, to_reading_id, started_at, "
              "ended_at, quantity, amount, amount_fen, lines, plan_id, entry_id, created_at) FROM STDIN")


def usage_lines(rows: list[dict]) -> list[str]:
    """Billed usage rows as lines of USAGE_COPY."""
    now = utcnow().isoformat()
    t = copy_text
    return [f"{r['meter_id']}\t{t(r['account_id'])}\t{t(r['billing_mode'])}\t{r['from_reading_id']}\t"
            f"{r['to_reading_id']}\t{r['started_at'].isoformat()}\t{r['ended_at'].isoformat()}\t{r['quantity']}\t"
            f"{r['amount']}\t{int(r['amount_fen'])}\t{t(json.dumps(r['lines']))}\t{t(r['plan_id'])}\t"
            f"{t(r['entry_id'])}\t{now}\n"
            for r in rows]


def insert_events(session: Session, rows: list[dict]) -> None:
    if rows:
        session.add_all([MeterEvent(**r) for r in rows])
        session.flush()


STATE_COLUMNS = ("last_reading_id", "last_taken_at", "last_total", "last_periods", "cycle", "cycle_used",
                 "charged_month", "exact_amount", "billed_fen", "seen_until")
STATES_TEMP = ("CREATE TEMP TABLE IF NOT EXISTS _billing_state_upd (meter_id bigint, last_reading_id bigint,"
               " last_taken_at timestamptz, last_total numeric, last_periods text, cycle text,"
               " cycle_used numeric, charged_month text, exact_amount numeric, billed_fen bigint,"
               " seen_until timestamptz) ON COMMIT DELETE ROWS")
STATES_COPY = "COPY _billing_state_upd (meter_id, " + ", ".join(STATE_COLUMNS) + ") FROM STDIN"


def _states_update(now: datetime) -> str:
    """The UPDATE that writes back the states copied into ``_billing_state_upd``."""
    return ("UPDATE meter_billing_states AS s SET " + ", ".join(
        f"{c} = u.{c}" + ("::json" if c == "last_periods" else "") for c in STATE_COLUMNS)
        + f", updated_at = '{now.isoformat()}' FROM _billing_state_upd AS u WHERE s.meter_id = u.meter_id")


def state_lines(rows: Sequence[dict]) -> list[str]:
    """Billing states as lines of STATES_COPY (ids, numbers and times need no escaping; the texts
    and the registers' JSON go through ``copy_text``)."""
    t = copy_text
    out = []
    for r in rows:
        at, seen, periods = r["last_taken_at"], r["seen_until"], r["last_periods"]
        rid, total = r["last_reading_id"], r["last_total"]
        out.append(f"{r['meter_id']}\t{NULL if rid is None else rid}\t{NULL if at is None else at.isoformat()}\t"
                   f"{NULL if total is None else total}\t{NULL if periods is None else t(json.dumps(periods))}\t"
                   f"{t(r['cycle'])}\t{t(r['cycle_used'])}\t{t(r['charged_month'])}\t{t(r['exact_amount'])}\t"
                   f"{t(r['billed_fen'])}\t{NULL if seen is None else seen.isoformat()}\n")
    return out


NULL = "\\N"  # COPY's text for NULL


def prepare_stream(session: Session) -> None:
    """Before a streaming writer starts: the temporary table ``stream_states`` copies into, empty."""
    conn = session.connection()
    conn.exec_driver_sql(STATES_TEMP)
    conn.exec_driver_sql("DELETE FROM _billing_state_upd")


def stream_states(writer: ReadingWriter, rows: Sequence[dict]) -> None:
    """``update_states`` through a streaming writer (after ``prepare_stream``): the rows follow its
    COPYs and are written back right after, while the caller goes on."""
    if rows:
        writer.copy(STATES_COPY, state_lines(rows))
        writer.execute(f"{_states_update(utcnow())}; DELETE FROM _billing_state_upd")


def update_states(session: Session, rows: list[dict]) -> None:
    """Write back billing states: dicts with meter_id and the columns to set."""
    if not rows:
        return
    now = utcnow()
    if use_copy(session, len(rows)):
        prepare_stream(session)
        copy_lines(session, STATES_COPY, state_lines(rows))
        session.connection().exec_driver_sql(_states_update(now))
        return
    from core.models.billing import MeterBillingState
    for r in rows:
        session.query(MeterBillingState).filter(MeterBillingState.meter_id == r["meter_id"]).update(
            {**{c: r[c] for c in STATE_COLUMNS}, "updated_at": now}, synchronize_session=False)


def _copy_value(col: str, value):
    if col == "last_periods":
        return None if value is None else json.dumps(value)
    return value


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
