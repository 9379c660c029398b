"""Readings in, usage priced and billed: ``ingest`` (one reading, the poller) and ``ingest_batch``.

Per meter, readings are taken in time order against the meter's billing cursor (its last billed
reading, locked for the batch):

- the same (meter, time) again: ``duplicate``, nothing stored or billed;
- not after the cursor (arrived late): ``accepted`` with ``late=True``, stored with status ``late``;
  its interval was already billed, so it neither charges twice nor loses usage (a late value
  above the cursor's is an ``anomaly``);
- below the cursor's total (meter swap, register rollover, bad read): stored as ``anomaly``, a
  meter event for a manager, not billed; the cursor stays;
- otherwise ``accepted``: the interval since the cursor is priced (CT ratio applied) with the
  account's plan for the meter's utility (its electricity plan, or its water plan) and the cursor
  moves.

A meter on an open account with no plan of the right unit for its utility is *unpriced*: its
readings are stored, but its cursor waits, so nothing is billed at a wrong price and no usage is
lost; the first reading after a plan is assigned bills the whole gap at that plan. A meter on no
account moves its cursor without billing anybody (priced with its own plan, if it has one, for
the record: a common area's master meter). The account and the plan are read after the cursors
are locked, so a batch that waited behind a move-out or a tariff change sees the new ones.

Each meter's new accepted readings in one batch form one billed interval: one ``billed_usage`` row
and, for a prepaid-platform account, one consumption entry keyed ``usage:<meter>:<reading id>`` by
the reading that closes it, deducting round(cumulative exact amount) minus what was posted before.
Postpaid rows wait for a bill; prepaid-meter rows record usage only. ``balance_changed`` is published
for every account touched with ``signals.emit_many``: after commit, one job (queue "notify") runs
the listeners for the whole batch (a batch touching one account dispatches in line); ``ingest`` (one
reading) also emits ``reading_billed``.
"""
from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from itertools import islice
from typing import Any, NamedTuple

from sqlalchemy import case, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import ledger, signals
from core.billing.pricing import PricerCache
from core.billing.store import (
    USAGE_COPY,
    IdReservation,
    ReadingWriter,
    aware,
    insert_events,
    insert_usage,
    prepare_stream,
    stream_states,
    update_states,
    usage_lines,
    use_copy,
)
from core.bulk_sql import ids_in, next_ids
from core.db import is_postgres, utcnow
from core.errors import NotFound, ValidationError
from core.ledger.bulk import (
    ENTRIES_COPY,
    POSTINGS_COPY,
    Consumption,
    entry_lines,
    lock_wallets,
    post_consumptions,
    posting_lines,
    wallet_deltas_sql,
    wallets_updated,
)
from core.ledger.money import to_fen
from core.models import Account, LedgerAccount, Meter, Reading, Site
from core.models.billing import MeterBillingState
from core.models.meter import UTILITY_UNIT
from core.reports import rollups  # issue 15: report rollups, written with the readings and usage
from core.tariffs import Interval, State
from core.tariffs.plan import PERIODS
from core.tariffs.usage import parse_periods, parse_quantity

STATUSES = ("accepted", "duplicate", "anomaly")
try:  # COPY runs on the driver's connection, so its unique violation is psycopg's own error
    from psycopg.errors import UniqueViolation as _CopyConflict
    _CONFLICTS: tuple = (IntegrityError, _CopyConflict)
except ImportError:  # pragma: no cover - psycopg is a dependency
    _CONFLICTS = (IntegrityError,)
_NO_PERIODS = (None,) * len(PERIODS)
SOURCES = ("poll", "import", "manual")
_TOTAL = operator.itemgetter(2)  # RawReading.total
_RUN = 4  # from this many rows a meter's rows are first tried as one plain run (_decide_and_bill)
EARLY_IDS = 20_000  # from this many rows (PostgreSQL) reading ids are reserved on a connection of their own


class RawReading(NamedTuple):
    """One reading as it arrives (a NamedTuple: imports hold a chunk of them at a time)."""

    meter_id: int
    taken_at: datetime  # timezone-aware
    total: Decimal
    periods: Mapping[str, Decimal] | None = None
    source: str = "poll"


class IngestResult(NamedTuple):
    """``status``: accepted | duplicate | anomaly. ``billed_fen``: deducted (prepaid-platform) or
    accrued (postpaid) by this reading; 0 unless it closed a billed interval. ``late``: accepted
    and stored (as ``late``) after a later reading was billed, so it bills nothing itself."""

    status: str
    billed_fen: int = 0
    reading_id: int | None = None
    quantity: Decimal = Decimal(0)
    reason: str = ""
    late: bool = False


@dataclass
class BatchResult:
    """``results``: one per row in order (empty when the caller asked for ``detail=False``);
    ``counts``: rows per status (late readings count as accepted), always there."""

    results: list[IngestResult] = field(default_factory=list)
    billed_fen: int = 0
    accounts: dict[int, int] = field(default_factory=dict)  # account id -> delta fen on its wallet
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))

    def count(self, status: str) -> int:
        return self.counts.get(status, 0)


def ingest(session: Session, meter_id: int, taken_at: datetime, total: Decimal,
           periods: dict[str, Decimal] | None = None, source: str = "poll") -> IngestResult:
    """Store one reading and bill the interval it closes, in the caller's transaction."""
    result = ingest_batch(session, [RawReading(meter_id, taken_at, total, periods, source)]).results[0]
    if result.status == "accepted" and not result.late:
        account_id = session.scalar(select(Meter.account_id).where(Meter.id == meter_id))
        signals.emit(session, "reading_billed", meter_id=meter_id, account_id=account_id)
    return result


def validate_raw(r: RawReading) -> RawReading:
    if not isinstance(r.taken_at, datetime) or r.taken_at.tzinfo is None:
        raise ValidationError("taken_at: must be a timezone-aware datetime", field="taken_at")
    total = parse_quantity(r.total, "total")
    periods = parse_periods(dict(r.periods), "periods") if r.periods else None
    if r.source not in SOURCES:
        raise ValidationError(f"source: must be one of {', '.join(SOURCES)} (got {r.source!r})", field="source")
    return RawReading(r.meter_id, r.taken_at, total, periods, r.source)


@dataclass
class _Meter:
    id: int
    kind: str
    ct_ratio: int
    tz: str = "Asia/Shanghai"
    unit: str = "kWh"  # the unit a plan must be priced in to price this meter (UTILITY_UNIT[kind])
    has_state: bool = False  # a billing-state row existed when the meter was loaded
    # read under the cursor lock (_lock_states):
    account_id: int | None = None
    billing_mode: str | None = None
    plan_id: int | None = None


def ingest_batch(session: Session, rows: Sequence[RawReading], *, actor: str = "system",
                 front: str = "job", validated: bool = False, detail: bool = True) -> BatchResult:
    """Ingest many readings in the caller's transaction; results are in the order of ``rows``.

    ``validated=True``: the rows were built by a parser that already checked them (CSV import).
    ``detail=False``: only counts and amounts, no ``IngestResult`` per row (imports)."""
    rows = list(rows) if validated else [validate_raw(r) for r in rows]
    if not rows:
        return BatchResult()
    # A large batch takes its readings' ids on another connection while this one locks the cursors.
    reserved = IdReservation(session, "readings", len(rows)) if (
        len(rows) >= EARLY_IDS and is_postgres(session)) else None
    meters = _load_meters(session, {r.meter_id for r in rows})
    states = _lock_states(session, meters)
    try:
        with session.begin_nested():
            out, billed = _ingest_locked(session, rows, meters, states, full_check=False, actor=actor, front=front,
                                         detail=detail, reserved=reserved)
    except _CONFLICTS:
        # A reading we did not know of (written outside billing): look every row up and go again.
        states = _lock_states(session, meters)
        out, billed = _ingest_locked(session, rows, meters, states, full_check=True, actor=actor, front=front,
                                     detail=detail, reserved=reserved)
    if billed.wallet_deltas:
        # The new balance rides along, so a listener can tell "nothing to do" without a query.
        balances = dict(session.execute(select(LedgerAccount.account_id, LedgerAccount.balance_fen).where(
            ids_in(session, LedgerAccount.account_id, billed.wallet_deltas))).all())
        # One job after commit runs the listeners for every account of the batch (one account: in line).
        signals.emit_many(session, "balance_changed", [
            {"account_id": account_id, "entry_kind": "consumption", "delta_fen": delta,
             "entry_id": billed.last_entry.get(account_id), "balance_fen": balances.get(account_id)}
            for account_id, delta in billed.wallet_deltas.items()])
    return out


def _ingest_locked(session: Session, rows: list[RawReading], meters: dict, states: dict, *, full_check: bool,
                   actor: str, front: str, detail: bool = True,
                   reserved: IdReservation | None = None) -> tuple[BatchResult, _Billed]:
    out = BatchResult()
    if full_check:
        existing = _existing(session, rows)
    else:
        existing = _existing(session, [r for r in rows if states[r.meter_id]["seen_until"] is not None
                                       and r.taken_at <= states[r.meter_id]["seen_until"]])

    by_meter: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_meter[r.meter_id].append(i)

    # What billing reads from the database is read now: from here on the readings are written
    # (COPY, on a thread) as they are decided, and the intervals priced meanwhile.
    expected = len(rows) - len(existing)
    ctx = _bill_context(session, meters, list(by_meter), stream=use_copy(session, expected),
                        days=lambda mid: _days_spanned(rows, by_meter[mid], meters[mid].tz))
    if ctx.entry_ids is not None:
        prepare_stream(session)  # the billing states follow the stream too
    ctx.rollup = rollups.Collector.begin(session, meters, stream=ctx.entry_ids is not None)  # issue 15
    writer = ReadingWriter(session, expected, reserved)
    try:
        return _decide_and_bill(session, rows, meters, states, by_meter, existing, ctx, writer, out, actor=actor,
                                front=front, detail=detail)
    finally:
        writer.wait()


def _decide_and_bill(session: Session, rows: list[RawReading], meters: dict, states: dict,
                     by_meter: dict[int, list[int]], existing: set, ctx: _BillContext, writer: ReadingWriter,
                     out: BatchResult, *, actor: str, front: str, detail: bool) -> tuple[BatchResult, _Billed]:
    times = [r.taken_at for r in rows]
    # Rows in time order (a poll round, an export by time) leave each meter's rows in order already.
    in_order = all(map(operator.le, times, islice(times, 1, None)))
    # Readings to insert, handed to the writer a block at a time: a plain accepted reading as its
    # RawReading (stored as it came, status "ok"), any other as a tuple of READING_COLUMNS.
    new_rows: list[tuple] = []
    new_index: list[int] = []  # row index of every reading stored, in order
    statuses: dict[int, tuple[str, str]] = {}  # rows that are not plainly accepted (and baselines)
    billed_ok: dict[int, list[int]] = {}  # meter -> row indexes accepted after the cursor
    events: list[dict] = []
    duplicate = ("duplicate", "")
    n_duplicate = n_anomaly = 0
    add_row, add_index = new_rows.append, new_index.append
    first_new: dict[int, int] = {}  # meter -> position of its first stored reading in new_index
    totals = list(map(_TOTAL, rows))
    existing_meters = {m for m, _ in existing}
    lt, le = operator.lt, operator.le
    for mid, idxs in by_meter.items():
        if len(idxs) > 1 and not in_order:
            idxs.sort(key=times.__getitem__)  # stable: of two rows at one time the first in the file wins
        first_new[mid] = len(new_index)
        st = states[mid]
        cur_at, cur_total = st["last_taken_at"], st["last_total"]
        closed = st["closed"]
        seen_until = st["seen_until"]
        previous_at = None  # rows are in time order: a repeat of a time is the row just before
        accepted: list[int] = []
        todo: Sequence[int] = idxs
        if len(idxs) >= _RUN and cur_at is not None and not closed and mid not in existing_meters:
            # The common case for a whole run of a meter's rows at once (in C): times strictly after
            # the cursor and each other, totals not below it or each other -- each row would take
            # the common-case branch below.
            ts = list(map(times.__getitem__, idxs))
            if ts[0] > cur_at and all(map(lt, ts, islice(ts, 1, None))):
                tots = list(map(totals.__getitem__, idxs))
                if tots[0] >= cur_total and all(map(le, tots, islice(tots, 1, None))):
                    cur_at, cur_total = ts[-1], tots[-1]
                    new_rows.extend(map(rows.__getitem__, idxs))
                    new_index.extend(idxs)
                    accepted, todo = list(idxs), ()
        for i in todo:
            r = rows[i]
            at = r.taken_at
            if at == previous_at or (existing and (mid, at) in existing):
                statuses[i] = duplicate
                n_duplicate += 1
                continue
            previous_at = at
            total = r.total
            periods = r.periods
            if cur_at is not None and at > cur_at and not closed and total >= cur_total:
                # the common case: a new reading after the cursor, not below it
                cur_at, cur_total = at, total
                accepted.append(i)
                add_row(r)
                add_index(i)
                continue
            if closed:
                status, reason = "anomaly", "meter was replaced"
            elif cur_at is None:
                status, reason = "accepted", "first reading"
                cur_at, cur_total = at, total
                st["baseline"] = i
            elif at <= cur_at:
                if total > cur_total:
                    status, reason = "anomaly", f"late reading {total} above the later {cur_total}"
                else:
                    status, reason = "late", "arrived after a later reading was billed"
            else:
                status, reason = "anomaly", f"{total} is below the previous reading {cur_total}"
            statuses[i] = (status, reason)
            add_row((mid, at, total, *_registers(periods), r.source, "ok" if status == "accepted" else status))
            add_index(i)
            if status == "anomaly":
                n_anomaly += 1
                events.append({"meter_id": mid, "kind": "reading_anomaly", "at": utcnow(),
                               "detail": {"taken_at": at.isoformat(), "total": str(total),
                                          "previous_total": None if cur_total is None else str(cur_total),
                                          "reason": reason}})
        # rows are in time order: the last stored one is the latest seen
        if new_rows and new_rows[-1][0] == mid:
            last_at = new_rows[-1][1]
            if seen_until is None or last_at > seen_until:
                st["seen_until"] = last_at
                st["dirty"] = True
        if accepted:
            billed_ok[mid] = accepted
        if len(new_rows) >= ReadingWriter.BLOCK:
            writer.send(new_rows)  # the writer owns the block now (a chunk's tuples are not all kept)
            new_rows = []
            add_row = new_rows.append

    writer.send(new_rows)
    pricers = ctx.pricers
    if billed_ok and pricers is not None:
        # Unpriced (an account, but no plan of the meter's unit): the readings are stored, the
        # cursor waits for a plan (a first reading still becomes the cursor, below).
        for mid in list(billed_ok):
            m = meters[mid]
            if m.account_id is not None and pricers.loaded(m.plan_id, m.tz, m.unit) is None:
                statuses[billed_ok.pop(mid)[-1]] = ("accepted", f"unpriced: no {m.kind} plan; billed once one is set")
    # issue 15: one billed interval per local day of the closing readings, so that usage and its
    # entry are dated by the day the energy was used even when one batch holds many days of a meter
    groups = {mid: _day_groups(rows, idxs, meters[mid].tz) for mid, idxs in billed_ok.items()}
    ids = writer.ids()
    if detail:
        reading_id = dict(zip(new_index, ids))
    else:  # only what billing needs: each meter's baseline and the last accepted reading of each of
        # its day groups, found among the meter's own stored readings (consecutive in new_index)
        need = [(mid, g[-1]) for mid, gs in groups.items() for g in gs]
        need += [(mid, st["baseline"]) for mid, st in states.items() if "baseline" in st]
        find = new_index.index
        reading_id = {i: ids[find(i, first_new[mid])] for mid, i in need}
    del new_rows
    if ctx.entry_ids is not None:
        # entries, postings and usage follow the readings through the same COPY stream, a block of
        # meters at a time as they are priced; the wallets were locked before the stream started
        sink: _StreamedPosting | _ToPost = _StreamedPosting(writer, ctx.entry_ids, actor=actor, front=front)
    else:
        sink = _ToPost()
    # issue 15: reading_days (streamed behind the readings when the writer streams), usage and ledger rollups
    ctx.rollup.readings_stored(rows, by_meter, statuses, writer=writer if writer.streaming else None)
    sink.rollup = ctx.rollup
    try:
        billed = _price_usage(ctx, rows, meters, states, groups, reading_id, sink)
    finally:
        writer.wait()
    insert_events(session, events)
    written: set[int] = set()  # meters whose billing state the writer wrote back already
    if isinstance(sink, _StreamedPosting):
        wallets_updated(session, [w for w, d in sink.wallet_deltas.items() if d])  # updated by the writer
        written = sink.states_written
    else:
        _post_usage(session, sink, billed, actor=actor, front=front)
    for mid, st in states.items():
        if "baseline" in st and mid not in billed_ok:
            i = st["baseline"]
            st.update(last_reading_id=reading_id[i], last_taken_at=rows[i].taken_at, last_total=rows[i].total,
                      last_periods=_periods_json(rows[i].periods), dirty=True)
    update_states(session, [st for mid, st in states.items() if st.get("dirty") and mid not in written])
    rollups.flush(session, sink.rollup, meters)  # issue 15: usage_days/months (+ ledger_days when streamed)

    out.counts = {"accepted": len(rows) - n_duplicate - n_anomaly, "duplicate": n_duplicate, "anomaly": n_anomaly}
    if detail:
        per_row, zero = billed.per_row, (0, Decimal(0))
        get_id, get_status = reading_id.get, statuses.get
        plain = ("accepted", "")
        results = []
        for i in range(len(rows)):
            status, reason = get_status(i, plain)
            fen, qty = per_row.get(i, zero)
            if status == "late":
                results.append(IngestResult("accepted", 0, get_id(i), Decimal(0), reason, True))
            else:
                results.append(IngestResult(status, fen, get_id(i), qty, reason))
        out.results = results
    out.billed_fen = billed.total_fen
    out.accounts = billed.wallet_deltas
    return out, billed


@dataclass
class _Billed:
    per_row: dict[int, tuple[int, Decimal]] = field(default_factory=dict)
    total_fen: int = 0
    wallet_deltas: dict[int, int] = field(default_factory=dict)
    last_entry: dict[int, int] = field(default_factory=dict)


@dataclass
class _BillContext:
    """What pricing reads from the database, read before the readings are written."""

    pricers: PricerCache | None = None
    wallets: dict[int, int] = field(default_factory=dict)  # account id -> wallet ledger account id
    revenue: dict[str, int] = field(default_factory=dict)  # "revenue:electricity" -> ledger account id
    entry_ids: list[int] | None = None  # streaming: journal entry ids taken up front, wallets locked
    rollup: Any = None  # issue 15: the batch's report rollups (core.reports.rollups.Collector)


@dataclass
class _ToPost:
    """Usage and consumptions priced, for ``_post_usage`` once the readings are in."""

    usage: list[dict] = field(default_factory=list)
    consumptions: list[Consumption] = field(default_factory=list)
    rollup: rollups.Collector | None = None  # issue 15

    def add(self, usage: list[dict], consumptions: list[Consumption], states: Sequence[dict] = ()) -> None:
        """``states``: the billing states of the block's meters, written back at the end."""
        if self.rollup is not None:  # issue 15 (the consumptions roll up as they are posted)
            self.rollup.add(usage)
        self.usage.extend(usage)
        self.consumptions.extend(consumptions)


class _StreamedPosting:
    """Entries, postings and billed usage of each block of priced meters queued on the readings'
    COPY stream, then the statements that add the block's deltas to the wallets' cached balances
    and write back its meters' billing states: the database does them while the next block is
    priced. Each key names a reading id taken from the sequence in this transaction, so no entry
    can hold it yet (the unique index would still refuse one); the wallets are locked."""

    def __init__(self, writer: ReadingWriter, entry_ids: list[int], *, actor: str, front: str):
        self.writer, self.actor, self.front = writer, actor, front
        self.entry_ids = iter(entry_ids)
        self.wallet_deltas: dict[int, int] = {}  # wallet ledger account id -> fen
        self.account_deltas: dict[int, int] = {}
        self.last_entry: dict[int, int] = {}
        self.states_written: set[int] = set()  # meter ids
        self.rollup: rollups.Collector | None = None  # issue 15

    def add(self, usage: list[dict], consumptions: list[Consumption], states: Sequence[dict] = ()) -> None:
        """``states``: the billing states of the block's meters (final: the block is priced)."""
        if self.rollup is not None:  # issue 15: these entries bypass journal/bulk, so roll them up here
            self.rollup.add(usage, consumptions, streamed=True, writer=self.writer)
        ids = [next(self.entry_ids) for _ in consumptions]
        by_key = {}
        block: dict[int, int] = {}  # wallet -> fen, this block
        for eid, c in zip(ids, consumptions):
            by_key[c.key] = eid
            block[c.wallet_id] = block.get(c.wallet_id, 0) - c.amount_fen
            self.wallet_deltas[c.wallet_id] = self.wallet_deltas.get(c.wallet_id, 0) - c.amount_fen
            self.account_deltas[c.account_id] = self.account_deltas.get(c.account_id, 0) - c.amount_fen
            self.last_entry[c.account_id] = eid
        for u in usage:
            key = u.pop("_key")
            if key is not None:
                u["entry_id"] = by_key[key]
        self.writer.copy(ENTRIES_COPY, entry_lines(ids, consumptions, actor=self.actor, front=self.front))
        self.writer.copy(POSTINGS_COPY, posting_lines(ids, consumptions))
        self.writer.copy(USAGE_COPY, usage_lines(usage))
        self.writer.execute(wallet_deltas_sql(block))
        stream_states(self.writer, states)
        self.states_written.update(st["meter_id"] for st in states)


def _bill_context(session: Session, meters: dict[int, _Meter], meter_ids: list[int], *,
                  stream: bool = False, days=None) -> _BillContext:
    """Plans, wallets and revenue accounts for every meter of the batch (before anything is billed).
    ``stream``: also lock the prepaid wallets (in id order) and take entry ids: one for each local
    day a prepaid meter's rows span (``days(meter id)``; one each without it), the most entries
    its rows can make (``_day_groups``)."""
    ctx = _BillContext()
    if not meter_ids:
        return ctx
    ctx.pricers = PricerCache(session)
    ctx.pricers.preload(meters[m].plan_id for m in meter_ids)
    prepaid = [meters[m] for m in meter_ids if meters[m].billing_mode == "prepaid-platform"]
    ctx.wallets = _wallets(session, {m.account_id for m in prepaid})
    for code in sorted({f"revenue:{m.kind}" for m in prepaid}):
        ctx.revenue[code] = ledger.system_account(session, code).id
    if stream:
        lock_wallets(session, ctx.wallets.values())
        n = sum(days(m.id) for m in prepaid) if days is not None else len(prepaid)
        ctx.entry_ids = next_ids(session, "journal_entries", n) if prepaid else []
    return ctx


_PRICE_BLOCK = 1000  # meters priced between two hand-overs to the sink


def _price_usage(ctx: _BillContext, rows: list[RawReading], meters: dict[int, _Meter], states: dict[int, dict],
                 groups: dict[int, list[list[int]]], reading_id: dict[int, int], sink) -> _Billed:
    """Price each meter's new intervals, one billed interval per day group (``_day_groups``), and
    move its billing state on; no database here (this runs while the readings are being written on
    the same connection)."""
    res = _Billed()
    usage: list[dict] = []
    consumptions: list[Consumption] = []
    pricers, wallets, revenue = ctx.pricers, ctx.wallets, ctx.revenue
    assert pricers is not None  # loaded by _prepare
    block_states: list[dict] = []
    for mid, day_groups in groups.items():
        if len(usage) >= _PRICE_BLOCK:
            sink.add(usage, consumptions, block_states)
            usage, consumptions, block_states = [], [], []
        m, st = meters[mid], states[mid]
        if "baseline" in st:  # first reading ever arrived in this batch: the cursor starts there
            b = st["baseline"]
            st.update(last_taken_at=rows[b].taken_at, last_total=rows[b].total,
                      last_periods=_periods_json(rows[b].periods), last_reading_id=reading_id[b])
        pricer = pricers.loaded(m.plan_id, m.tz, m.unit)
        for idxs in day_groups:
            _price_group(m, st, pricer, rows, idxs, reading_id, wallets, revenue, usage, consumptions, res)
        block_states.append(st)
    if usage:
        sink.add(usage, consumptions, block_states)
    if isinstance(sink, _StreamedPosting):
        res.wallet_deltas, res.last_entry = sink.account_deltas, sink.last_entry
    return res



def _price_group(m: _Meter, st: dict, pricer, rows: list[RawReading], idxs: list[int], reading_id: dict[int, int],
                 wallets: dict[int, int], revenue: dict[str, int], usage: list[dict], consumptions: list[Consumption],
                 res: _Billed) -> None:
    """One billed interval: the readings ``idxs`` (in time order, after the cursor in ``st``) priced
    together, one consumption entry (prepaid-platform) and one ``billed_usage`` row; ``st`` moves on."""
    mid = m.id
    prev_at, prev_total = st["last_taken_at"], st["last_total"]
    prev_periods = st["last_periods"]
    from_id = st["last_reading_id"]
    last_row = rows[idxs[-1]]
    if pricer is None or pricer.is_flat:  # only the total matters: one interval
        intervals = [Interval(prev_at, last_row.taken_at, (last_row.total - prev_total) * m.ct_ratio)]
    elif not pricer.uses_registers:  # tiers and versions: only the times and totals matter
        intervals = []
        ct = m.ct_ratio
        for i in idxs:
            r = rows[i]
            intervals.append(Interval(prev_at, r.taken_at, (r.total - prev_total) * ct))
            prev_at, prev_total = r.taken_at, r.total
    else:
        intervals = []
        ct = m.ct_ratio
        prev_regs: Mapping[str, Decimal] | None = (
            {k: Decimal(v) for k, v in prev_periods.items()} if prev_periods else None)
        for i in idxs:
            r = rows[i]
            intervals.append(Interval(prev_at, r.taken_at, (r.total - prev_total) * ct,
                                      _deltas(prev_regs, r.periods, ct)))
            prev_at, prev_total, prev_regs = r.taken_at, r.total, r.periods
    quantity = sum((iv.quantity for iv in intervals), Decimal(0))
    state = State(st["cycle"], st["cycle_used"], st["charged_month"])
    if pricer is not None:
        priced = pricer.price(intervals, state)
        amount, state, lines = priced.amount, priced.state, [_line_json(ln) for ln in priced.lines]
    else:
        amount, lines = Decimal(0), []
    exact = st["exact_amount"] + amount
    fen = to_fen(exact) - st["billed_fen"] if pricer is not None else 0
    last = idxs[-1]
    to_id = reading_id[last]
    entry_key = None
    if fen > 0 and m.billing_mode == "prepaid-platform":
        code = f"revenue:{m.kind}"
        entry_key = f"usage:{mid}:{to_id}"
        assert m.account_id is not None  # priced (fen > 0) only when the meter has an account
        consumptions.append(Consumption(entry_key, m.account_id, wallets[m.account_id], revenue[code], fen,
                                        memo=f"{m.kind} usage", meta={"meter_id": mid, "reading_id": to_id,
                                                                     "quantity": str(quantity)}))
    usage.append({"meter_id": mid, "account_id": m.account_id, "billing_mode": m.billing_mode or "none",
                  "from_reading_id": from_id, "to_reading_id": to_id,
                  "started_at": intervals[0].start, "ended_at": intervals[-1].end, "quantity": quantity,
                  "amount": amount, "amount_fen": max(fen, 0), "lines": lines,
                  "plan_id": m.plan_id if pricer is not None else None, "entry_id": None, "_key": entry_key})
    st.update(last_reading_id=to_id, last_taken_at=rows[last].taken_at, last_total=rows[last].total,
              last_periods=_periods_json(rows[last].periods), cycle=state.cycle, cycle_used=state.used,
              charged_month=state.charged_month, exact_amount=exact,
              billed_fen=st["billed_fen"] + max(fen, 0), dirty=True)
    # prepaid-meter usage is priced for reports, but the meter deducts it, not the platform
    billed = max(fen, 0) if m.billing_mode in ("prepaid-platform", "postpaid") else 0
    res.per_row[last] = (billed, quantity)
    res.total_fen += billed


def _days_spanned(rows: list[RawReading], idxs: list[int], tz: str) -> int:
    """How many local days (in ``tz``) the rows ``idxs`` of one meter span, first to last: the most
    day groups they can make."""
    if len(idxs) == 1:
        return 1
    times = [rows[i].taken_at for i in idxs]
    zone = rollups.zone(tz)
    return (max(times).astimezone(zone).date() - min(times).astimezone(zone).date()).days + 1


def _day_groups(rows: list[RawReading], idxs: list[int], tz: str) -> list[list[int]]:
    """A meter's accepted rows (time order) cut into runs by the local day (in ``tz``) of each
    reading: each run is billed as one interval, dated by its closing reading. A poll (one row) or a
    batch within one day is one run; the check is two conversions then."""
    if len(idxs) == 1:
        return [idxs]
    zone = rollups.zone(tz)
    if rows[idxs[0]].taken_at.astimezone(zone).date() == rows[idxs[-1]].taken_at.astimezone(zone).date():
        return [idxs]
    out: list[list[int]] = []
    day = None
    for i in idxs:
        d = rows[i].taken_at.astimezone(zone).date()
        if d != day:
            out.append([])
            day = d
        out[-1].append(i)
    return out

def _post_usage(session: Session, todo: _ToPost, res: _Billed, *, actor: str, front: str) -> None:
    usage, consumptions = todo.usage, todo.consumptions
    entry_ids = post_consumptions(session, consumptions, actor=actor, front=front)
    amount_by_key = {c.key: (c.account_id, c.amount_fen) for c in consumptions}
    for u in usage:
        key = u.pop("_key")
        if key is not None:
            u["entry_id"] = entry_ids.get(key)
            if u["entry_id"] is not None:
                account_id, fen = amount_by_key[key]
                res.wallet_deltas[account_id] = res.wallet_deltas.get(account_id, 0) - fen
                res.last_entry[account_id] = u["entry_id"]
    insert_usage(session, usage)


def _registers(periods: Mapping[str, Decimal] | None) -> tuple:
    """A reading's per-period registers in PERIODS order (the columns of a stored reading)."""
    return _NO_PERIODS if periods is None else tuple(map(periods.get, PERIODS))


def _line_json(ln) -> dict:
    d = {k: getattr(ln, k) for k in ("charge", "tier", "period") if getattr(ln, k) is not None}
    d.update(quantity=str(ln.quantity), price=str(ln.price), amount=str(ln.amount))
    return d


def _periods_json(periods) -> dict | None:
    return {k: str(v) for k, v in periods.items()} if periods else None


def _deltas(prev: Mapping[str, Decimal] | None, cur, ct: int) -> dict[str, Decimal] | None:
    if not prev or not cur or prev.keys() != cur.keys():
        return None
    deltas = {p: (cur[p] - prev[p]) * ct for p in cur}
    return None if any(v < 0 for v in deltas.values()) else deltas


def _load_meters(session: Session, ids: set[int]) -> dict[int, _Meter]:
    """What never changes under billing (kind, CT ratio, site timezone), and whether a billing
    state exists; the account and plan are read under the cursor lock (``_lock_states``)."""
    q = (select(Meter.id, Meter.kind, Meter.ct_ratio, Site.timezone, MeterBillingState.meter_id.label("state"))
         .join(Site, Site.id == Meter.site_id)
         .outerjoin(MeterBillingState, MeterBillingState.meter_id == Meter.id)
         .where(ids_in(session, Meter.id, ids)))
    found = {r.id: _Meter(r.id, r.kind, r.ct_ratio or 1, r.timezone or "Asia/Shanghai", UTILITY_UNIT.get(r.kind, ""),
                          r.state is not None) for r in session.execute(q)}
    missing = ids - set(found)
    if missing:
        raise NotFound(f"meter_id: no meter {sorted(missing)[0]}", field="meter_id")
    return found


def lock_states(session: Session, meter_ids) -> dict[int, dict]:
    """Lock the billing cursors of ``meter_ids`` (created when missing) in meter id order, as
    billing does, and return them (``last_taken_at``, ``last_total``, ``closed``, ...). A caller
    that changes who pays for a meter (a move-out) takes them first: a poll of the same meters
    then waits, and reads the new account when it gets them."""
    return _lock_states(session, _load_meters(session, set(meter_ids)))


def start_tenancy(session: Session, meter_ids) -> None:
    """Start a new tier cycle on each meter: cycle, usage in it, the month charged a fixed fee and
    the cumulative exact amount and fen go back to zero (what rounding left over, under half a
    fen, is dropped). The cursor stays. Call with the cursors locked (``lock_states``)."""
    ids = sorted(set(meter_ids))
    if ids:
        session.execute(update(MeterBillingState).where(ids_in(session, MeterBillingState.meter_id, ids)).values(
            cycle=None, cycle_used=Decimal(0), charged_month=None, exact_amount=Decimal(0), billed_fen=0,
            updated_at=utcnow()))


def _plan_column():
    """The plan that prices a meter: its account's plan for the meter's utility, or on no
    account, the meter's own plan."""
    return case((Meter.account_id.is_(None), Meter.tariff_plan_id),
                (Meter.kind == "water", Account.water_plan_id), else_=Account.electricity_plan_id)


def _lock_states(session: Session, meters: dict[int, _Meter]) -> dict[int, dict]:
    """Create missing billing states, lock them all in meter id order, then read each meter's
    account, billing mode and plan into ``meters`` (after the lock: see ``lock_states``)."""
    meter_ids = sorted(meters)
    missing = [m for m in meter_ids if not meters[m].has_state]
    if missing and is_postgres(session):  # one statement, the ids as one array
        session.execute(text("INSERT INTO meter_billing_states (meter_id, cycle_used, exact_amount, billed_fen, "
                             "closed, updated_at) SELECT m, 0, 0, 0, false, :now FROM unnest(CAST(:ids AS bigint[])) "
                             "AS m ON CONFLICT (meter_id) DO NOTHING"), {"ids": missing, "now": utcnow()})
    elif missing:
        from sqlalchemy.dialects.sqlite import insert
        now = utcnow()
        table: Any = MeterBillingState.__table__
        session.execute(insert(table).on_conflict_do_nothing(index_elements=["meter_id"]),
                        [{"meter_id": m, "cycle_used": Decimal(0), "exact_amount": Decimal(0), "billed_fen": 0,
                          "closed": False, "updated_at": now} for m in missing])
    q = select(MeterBillingState.__table__).where(ids_in(session, MeterBillingState.meter_id, meter_ids)).order_by(
        MeterBillingState.meter_id).with_for_update()
    states = {}
    for r in session.execute(q).mappings():
        st = dict(r)
        st["last_taken_at"] = aware(st["last_taken_at"])
        st["seen_until"] = aware(st["seen_until"])
        st["last_total"] = None if st["last_total"] is None else Decimal(st["last_total"])
        st["cycle_used"] = Decimal(st["cycle_used"] or 0)
        st["exact_amount"] = Decimal(st["exact_amount"] or 0)
        states[st["meter_id"]] = st
    q2 = (select(Meter.id, Meter.account_id, Account.billing_mode, _plan_column().label("plan_id"))
          .outerjoin(Account, Account.id == Meter.account_id).where(ids_in(session, Meter.id, meter_ids)))
    for mid, account_id, billing_mode, plan_id in session.execute(q2):
        m = meters[mid]
        m.account_id, m.billing_mode, m.plan_id, m.has_state = account_id, billing_mode, plan_id, True
    return states


def _existing(session: Session, rows: list[RawReading]) -> set[tuple[int, datetime]]:
    """(meter id, taken_at) pairs of ``rows`` already stored."""
    found: set[tuple[int, datetime]] = set()
    if not rows:
        return found
    if is_postgres(session):
        # Arrays sent as text literals (ints and ISO times need no quoting) and matches returned as
        # positions: psycopg adapting 50,000 datetimes one by one, both ways, was most of a replay.
        res = session.execute(text(
            "SELECT k.i FROM unnest(CAST(CAST(:m AS text) AS bigint[]), CAST(CAST(:t AS text) AS timestamptz[])) "
            "WITH ORDINALITY AS k(meter_id, taken_at, i) "
            "JOIN readings r ON r.meter_id = k.meter_id AND r.taken_at = k.taken_at"),
            {"m": "{" + ",".join([str(r.meter_id) for r in rows]) + "}",
             "t": "{" + ",".join([r.taken_at.isoformat() for r in rows]) + "}"})
        for (i,) in res:
            r = rows[i - 1]
            found.add((r.meter_id, r.taken_at))
    else:
        pairs = list({(r.meter_id, r.taken_at) for r in rows})
        for k in range(0, len(pairs), 400):
            part = pairs[k:k + 400]
            q = select(Reading.meter_id, Reading.taken_at).where(
                tuple_(Reading.meter_id, Reading.taken_at).in_(part))
            for mid, at in session.execute(q):
                found.add((mid, aware(at)))
    return found


def _wallets(session: Session, account_ids: set) -> dict[int, int]:
    account_ids = {a for a in account_ids if a is not None}
    if not account_ids:
        return {}
    rows = session.execute(select(LedgerAccount.account_id, LedgerAccount.id)
                           .where(ids_in(session, LedgerAccount.account_id, account_ids)))
    return {a: w for a, w in rows if a is not None}
