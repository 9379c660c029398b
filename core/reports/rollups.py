"""Report rollups, written in the same transaction as the rows they summarise.

Called from where money and readings are written -- and nowhere else:

- ``core.ledger.journal.post`` -> ``entry_posted`` (every entry but the bulk ones);
- ``core.ledger.bulk`` (COPY path) -> ``consumptions_posted``;
- ``core.billing.ingest`` -> ``Collector`` (billed usage, and the consumption entries it streams
  behind the readings), ``flush`` and ``readings_stored``.

Each call adds its rows' contribution with one ``INSERT .. ON CONFLICT DO UPDATE`` per table, rows
in key order. A rollup row is keyed by what its writer already holds locked (a wallet for
``ledger_days``, a meter's billing state for ``usage_*`` and ``reading_days``), so no row is hot
and two writers never wait on each other here in an order they would not already wait in.

This module imports only the foundation (models, db, config) so that the ledger and billing, which
sit below ``core.reports``, may call it (``tests/core/test_layering.py``: a sink).

Dating (``entry_day``): an entry's business day is the site's local date of

- the reading that closed the interval, for usage (a consumption with ``meta.reading_id``);
- the provider's paid time, for a payment (``meta.order_no`` -> ``payment_orders.paid_at``);
- the start of its period, for a charge or an apportionment (``meta.period``, else the key's last
  part: ``YYYY-MM-DD``, ``YYYY-MM``, ``YYYY-Qn`` or ``YYYY``), and for a postpaid bill's entry
  (``bill:<bill no>``, ``meta.period``);
- the moment it was posted, for everything else (desk recharges, refunds, adjustments, reversals).

Billed usage (``usage_parts``): an interval's quantity goes to the TOU periods of its priced lines
(a line without a period, or usage without a plan: ``none``), its fen (``amount_fen``) are split
over the periods in proportion to the lines' exact amounts by largest remainder (ties in
``FEE_PARTS`` order), a plan's fixed charge to ``fixed``; the parts always add up exactly.
"""
from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from core.bulk_sql import copy_text
from core.config import get_settings
from core.db import is_postgres
from core.models import Account, LedgerAccount, PaymentOrder, Reading, Site
from core.models.report import FEE_PARTS, ROLLUP_PERIODS, LedgerDay, ReadingDay, UsageDay, UsageMonth

# Ledger accounts whose postings are rolled up: what finance reads (wallets and equity are not).
ROLLED_KINDS = ("revenue", "cash", "clearing", "receivable")
ZERO = Decimal(0)
# Off only inside ``meterpay bench reports`` to measure ingest without the rollups in the same run.
ENABLED = True

_PERIOD = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?|-Q([1-4]))?$")


# --- dating -------------------------------------------------------------------------------

def zone(name: str | None) -> ZoneInfo:
    return ZoneInfo(name or get_settings().timezone)


def local_day(at: datetime, tz: ZoneInfo) -> date:
    return at.astimezone(tz).date()


def month_of(day: date) -> date:
    return day.replace(day=1)


def period_start(text: str | None) -> date | None:
    """The first day of a period written ``YYYY-MM-DD``, ``YYYY-MM``, ``YYYY-Qn`` or ``YYYY``; None otherwise."""
    m = _PERIOD.match(str(text or ""))
    if not m:
        return None
    year, month, day, quarter = m.groups()
    try:
        if quarter:
            return date(int(year), 3 * int(quarter) - 2, 1)
        return date(int(year), int(month or 1), int(day or 1))
    except ValueError:
        return None


def effective_kind(kind: str, meta: Mapping | None) -> str:
    """The kind an entry counts as: a reversal counts (negatively) as the kind it undid."""
    if kind == "reversal":
        return str((meta or {}).get("reversed_kind") or "reversal")
    return kind


def entry_time(kind: str, key: str, meta: Mapping | None, created_at: datetime, tz: ZoneInfo, *,
               reading_at: datetime | None = None, paid_at: datetime | None = None) -> datetime:
    """When an entry's money belongs (see the module's docstring); a period's start is its local
    midnight. ``reading_at``: the taken_at of ``meta.reading_id``; ``paid_at``: the paid time of
    ``meta.order_no`` (looked up by the caller, ``lookup_times``). Never later than ``created_at``
    for anything posted after the fact it records."""
    meta = meta or {}
    if kind != "reversal":
        if reading_at is not None and kind == "consumption":
            return reading_at
        if paid_at is not None and meta.get("order_no"):
            return paid_at
        if kind in ("charge", "apportionment") or (kind == "consumption" and key.startswith("bill:")):
            # a postpaid bill's entry (its energy, charge and apportionment lines) counts in its period
            start = period_start(meta.get("period")) or period_start(key.rsplit(":", 1)[-1])
            if start is not None:
                return datetime.combine(start, datetime.min.time(), tz)
    return created_at


def entry_day(kind: str, key: str, meta: Mapping | None, created_at: datetime, tz: ZoneInfo, *,
              reading_at: datetime | None = None, paid_at: datetime | None = None) -> date:
    """The business day of an entry: the local date of ``entry_time``."""
    return local_day(entry_time(kind, key, meta, created_at, tz, reading_at=reading_at, paid_at=paid_at), tz)


def lookup_times(session: Session, metas: Iterable[tuple[str, Mapping | None]]
                 ) -> tuple[dict[int, datetime], dict[str, datetime]]:
    """The reading times and paid times ``entry_day`` needs for entries of these (kind, meta)."""
    reading_ids: set[int] = set()
    orders: set[str] = set()
    for kind, meta in metas:
        meta = meta or {}
        if kind == "consumption" and meta.get("reading_id") is not None:
            try:
                reading_ids.add(int(meta["reading_id"]))
            except (TypeError, ValueError):
                pass
        if kind != "reversal" and meta.get("order_no"):
            orders.add(str(meta["order_no"]))
    readings: dict[int, datetime] = {}
    paid: dict[str, datetime] = {}
    if reading_ids:
        readings = {rid: at for rid, at in session.execute(
            select(Reading.id, Reading.taken_at).where(_in(session, Reading.id, reading_ids)))}
    if orders:
        paid = {no: at for no, at in session.execute(select(PaymentOrder.order_no, PaymentOrder.paid_at).where(
            _in(session, PaymentOrder.order_no, orders, strings=True))) if at is not None}
    return readings, paid


def time_of(kind: str, key: str, meta: Mapping | None, created_at: datetime, tz: ZoneInfo,
            readings: Mapping[int, datetime], paid: Mapping[str, datetime]) -> datetime:
    """``entry_time`` with the times ``lookup_times`` found."""
    meta = meta or {}
    reading_at = None
    if kind == "consumption" and meta.get("reading_id") is not None:
        try:
            reading_at = readings.get(int(meta["reading_id"]))
        except (TypeError, ValueError):
            reading_at = None
    paid_at = paid.get(str(meta.get("order_no"))) if meta.get("order_no") else None
    return entry_time(kind, key, meta, created_at, tz, reading_at=reading_at, paid_at=paid_at)


def day_of(kind: str, key: str, meta: Mapping | None, created_at: datetime, tz: ZoneInfo,
           readings: Mapping[int, datetime], paid: Mapping[str, datetime]) -> date:
    return local_day(time_of(kind, key, meta, created_at, tz, readings, paid), tz)


def sites_of(session: Session, account_ids: Iterable[int | None]) -> dict[int, tuple[int, str]]:
    """account id -> (site id, site timezone)."""
    ids = {a for a in account_ids if a}
    if not ids:
        return {}
    rows = session.execute(select(Account.id, Account.site_id, Site.timezone).join(Site, Site.id == Account.site_id)
                           .where(_in(session, Account.id, ids)))
    return {a: (s, tz) for a, s, tz in rows}


# --- the ledger's hooks ---------------------------------------------------------------------

def entry_posted(session: Session, entry: Any, legs: Sequence[Any], wallet_ids: Iterable[int]) -> None:
    """``journal.post`` wrote ``entry`` (flushed: id and created_at set) with ``legs``
    (``ledger_account_id``, ``amount_fen``); add its non-wallet postings to ``ledger_days``."""
    if not ENABLED:
        return
    ids = {leg.ledger_account_id for leg in legs} - set(wallet_ids)
    if not ids:
        return
    rolled = set(session.scalars(select(LedgerAccount.id).where(_in(session, LedgerAccount.id, ids),
                                                                 LedgerAccount.kind.in_(ROLLED_KINDS))))
    if not rolled:
        return
    site_id, tz_name = sites_of(session, [entry.account_id]).get(entry.account_id or 0, (None, None))
    readings, paid = lookup_times(session, [(entry.kind, entry.meta)])
    day = day_of(entry.kind, entry.idempotency_key, entry.meta, entry.created_at, zone(tz_name), readings, paid)
    kind = effective_kind(entry.kind, entry.meta)
    acc = LedgerRows()
    for leg in legs:
        if leg.ledger_account_id in rolled:
            acc.add(entry.account_id or 0, day, leg.ledger_account_id, kind, site_id, leg.amount_fen)
    acc.write(session)


def consumptions_posted(session: Session, entry_ids: Sequence[int], items: Sequence[Any]) -> None:
    """``ledger.bulk`` wrote consumption entries ``entry_ids`` for ``items`` (``Consumption``):
    add each revenue posting to ``ledger_days`` (dated by the reading in ``meta.reading_id``)."""
    if not ENABLED or not items:
        return
    sites = sites_of(session, [it.account_id for it in items])
    readings, _ = lookup_times(session, [("consumption", it.meta) for it in items])
    now = _now()
    acc = LedgerRows()
    for it in items:
        site_id, tz_name = sites.get(it.account_id, (None, None))
        day = day_of("consumption", it.key, it.meta, now, zone(tz_name), readings, {})
        acc.add(it.account_id, day, it.revenue_id, "consumption", site_id, it.amount_fen)
    acc.write(session)


def _now() -> datetime:
    from core.db import utcnow
    return utcnow()


# --- billing's hooks ------------------------------------------------------------------------

class Collector:
    """The rollups of one billing batch.

    ``begin`` makes one before billing's writer takes the connection. On billing's streaming path
    (PostgreSQL, many rows) the rollup rows go into temporary tables by COPY *through the writer*,
    behind the readings, entries and usage it streams, each block followed by the statements that
    merge it (``INSERT .. SELECT .. ON CONFLICT``, then the temporary table emptied): the database
    merges one block while billing prices the next, and nothing is left for ``flush``. Otherwise
    the rows are kept and ``flush`` merges them.
    """

    def __init__(self, meters: Mapping[int, Any] | None = None, *, stream: bool = False) -> None:
        self.meters = meters or {}
        self.stream = stream
        self.zones: dict[str, ZoneInfo] = {}
        self.days: dict[tuple[datetime, str], date] = {}  # (time, zone name) -> local day
        self.usage: list[tuple] = []        # kept for flush (not streaming)
        self.consumptions: list[tuple] = []
        self.readings: list[dict] = []

    @classmethod
    def begin(cls, session: Session, meters: Mapping[int, Any], *, stream: bool) -> Collector:
        """``meters``: meter id -> an object with ``kind``, ``tz`` and ``account_id``; ``stream``:
        billing will stream through a writer (call before the writer starts)."""
        stream = stream and ENABLED and is_postgres(session)
        if stream:  # one round trip: the temporary tables, empty
            _driver_run(session, "; ".join(f"CREATE TEMP TABLE IF NOT EXISTS _merge_{t} (LIKE {t}) ON COMMIT DELETE "
                                           f"ROWS; DELETE FROM _merge_{t}" for t in TEMP_TABLES))
        return cls(meters, stream=stream)

    def tz(self, meter_id: int) -> ZoneInfo:
        name = self.meters[meter_id].tz
        z = self.zones.get(name)
        if z is None:
            z = self.zones[name] = zone(name)
        return z

    def day(self, at: datetime, meter_id: int) -> date:
        """The local day of ``at`` for the meter's site (the readings of a poll round share their
        times, so each is converted once)."""
        key = (at, self.meters[meter_id].tz)
        d = self.days.get(key)
        if d is None:
            d = self.days[key] = local_day(at, self.tz(meter_id))
        return d

    def add(self, usage: Sequence[Mapping], consumptions: Sequence[Any] = (), *, streamed: bool = False,
            writer: Any = None) -> None:
        """``usage``: billing's billed-usage dicts (before ``_key`` is dropped); ``streamed``: the
        ``consumptions`` go in by COPY, not through ``journal.post``/``bulk``, so roll them up here;
        ``writer``: billing's streaming writer (the rows follow its COPY, merged right after)."""
        if not ENABLED:
            return
        closing = {u["_key"]: (u["meter_id"], u["ended_at"]) for u in usage if u.get("_key")} if streamed else {}
        if self.stream and writer is not None:
            # usage rows as COPY lines; the merge sums them per key (a meter can bill several days)
            out = []
            day, meters = self.day, self.meters
            for u in usage:
                mid = u["meter_id"]
                fen = int(u["amount_fen"])
                lines = u["lines"]
                if not any("period" in ln or "charge" in ln for ln in lines or ()):
                    # no TOU split, no fixed charge: all of it is "none" (as usage_parts says)
                    qty = Decimal(u["quantity"])
                    out.append(f"{mid}\t{day(u['ended_at'], mid)}\t{u['account_id'] or 0}\t{meters[mid].kind}\t"
                               f"{qty}\t{_ZEROS_BEFORE_NONE}\t{qty}\t{fen}\t{_ZEROS_BEFORE_NONE}\t{fen}\t0\t1\n")
                    continue
                q, f = usage_parts(u["quantity"], fen, lines)
                out.append(f"{mid}\t{day(u['ended_at'], mid)}\t{u['account_id'] or 0}\t{meters[mid].kind}\t"
                           f"{u['quantity']}\t" + "\t".join(map(str, q.values())) + f"\t{fen}\t" +
                           "\t".join(map(str, f.values())) + "\t1\n")
            merge = []
            if out:
                writer.copy(USAGE_DAYS_COPY, out)
                merge += [BLOCK_DAYS_MERGE, BLOCK_MONTHS_MERGE, "DELETE FROM _merge_usage_days"]
            if streamed and consumptions:  # the site of each account is joined in by the merge
                lines = []
                for c in consumptions:
                    mid, ended_at = closing[c.key]
                    lines.append(f"{c.account_id}\t{day(ended_at, mid)}\t{c.revenue_id}\tconsumption\t"
                                 f"{c.amount_fen}\t1\n")
                writer.copy(LEDGER_DAYS_COPY, lines)
                merge += [LEDGER_DAYS_MERGE, "DELETE FROM _merge_ledger_days"]
            if merge:
                writer.execute("; ".join(merge))
            return
        self.usage.extend((u["meter_id"], u["account_id"], u["ended_at"], u["quantity"], u["amount_fen"],
                           u["lines"]) for u in usage)
        for c in consumptions if streamed else ():
            meter_id, ended_at = closing[c.key]
            self.consumptions.append((c.account_id, c.revenue_id, c.amount_fen, meter_id, ended_at))

    def readings_stored(self, rows: Sequence[Any], groups: Mapping[int, Sequence[int]],
                        statuses: Mapping[int, tuple], *, writer: Any = None) -> None:
        """Billing stored its batch's ``rows`` (see ``reading_rows``); with ``writer`` (streaming)
        they follow its COPY and are merged right after, while billing prices."""
        if not ENABLED or not groups:
            return
        if self.stream and writer is not None:
            iso: dict[datetime, str] = {}

            def at(v: datetime | None) -> str:
                if v is None:
                    return "\\N"
                text = iso.get(v)
                if text is None:
                    text = iso[v] = v.isoformat()
                return text
            lines = [f"{m}\t{d}\t{at(v[0])}\t{_nul(v[1])}\t{at(v[2])}\t{_nul(v[3])}\t{v[4]}\t{v[5]}\n"
                     for (m, d), v in _reading_days(rows, groups, statuses, self.meters, self.zones, self.days).items()]
            if lines:
                writer.copy(READING_DAYS_COPY, lines)
                writer.execute(f"{READING_DAYS_MERGE}; DELETE FROM _merge_reading_days")
            return
        self.readings.extend(reading_rows(rows, groups, statuses, self.meters, self.zones))


def _nul(v) -> str:
    return "\\N" if v is None else str(v)


def _iso(v) -> str:
    return "\\N" if v is None else v.isoformat()


TEMP_TABLES = ("ledger_days", "usage_days", "reading_days")


def flush(session: Session, collector: Collector | None, meters: Mapping[int, Any] | None = None) -> None:
    """Write what ``collector`` kept (after billing's writer is done with the connection); the
    streamed rows were merged by the writer already."""
    if not ENABLED or collector is None:
        return
    if collector.readings:
        write_readings(session, collector.readings)
    if collector.usage:
        usage = UsageRows()
        for meter_id, account_id, ended_at, quantity, amount_fen, lines in collector.usage:
            usage.add(meter_id, account_id or 0, collector.day(ended_at, meter_id),
                      collector.meters[meter_id].kind, quantity, int(amount_fen), lines)
        usage.write(session)
    if collector.consumptions:
        sites = sites_of(session, [c[0] for c in collector.consumptions])
        ledger = LedgerRows()
        for account_id, revenue_id, fen, meter_id, ended_at in collector.consumptions:
            ledger.add(account_id, collector.day(ended_at, meter_id), revenue_id, "consumption",
                       sites.get(account_id, (None, None))[0], fen)
        ledger.write(session)
    collector.usage, collector.consumptions, collector.readings = [], [], []


READING_COLS = "meter_id, day, first_at, first_total, last_at, last_total, readings, anomalies"


def reading_rows(rows: Sequence[Any], groups: Mapping[int, Sequence[int]], statuses: Mapping[int, tuple],
                 meters: Mapping[int, Any], zones: dict[str, ZoneInfo] | None = None) -> list[dict]:
    """``reading_days`` rows for a billing batch: ``groups`` maps each meter to the indexes of its
    ``rows`` in time order (as billing sorts them); ``statuses[i][0]`` is a row's status when it is
    not plainly accepted: "duplicate" (not stored), "anomaly" (stored, counted apart), "late" or
    "accepted" (readings of the series).

    A meter's rows usually fall on one local day: then only its first and last row are looked at.
    Rows over several days are cut at each local midnight (a bisect on their times)."""
    return [{"meter_id": m, "day": d, "first_at": v[0], "first_total": v[1], "last_at": v[2], "last_total": v[3],
             "readings": v[4], "anomalies": v[5]}
            for (m, d), v in sorted(_reading_days(rows, groups, statuses, meters, zones).items())]


def _reading_days(rows: Sequence[Any], groups: Mapping[int, Sequence[int]], statuses: Mapping[int, tuple],
                  meters: Mapping[int, Any], zones: dict[str, ZoneInfo] | None = None,
                  local: dict[tuple[datetime, str], date] | None = None) -> dict[tuple[int, date], list]:
    """``reading_rows`` as (meter, day) -> [first_at, first_total, last_at, last_total, readings,
    anomalies], unsorted. ``local``: (time, zone name) -> local day, a cache shared with the caller."""
    days: dict[tuple[int, date], list] = {}
    zones = {} if zones is None else zones
    local = {} if local is None else local
    ends: dict[tuple[date, str], datetime] = {}  # (day, zone name) -> the next local midnight
    anomalous = {i for i, st in statuses.items() if st[0] == "anomaly"}
    duplicate = {i for i, st in statuses.items() if st[0] == "duplicate"}
    for meter, idxs in groups.items():
        group = [i for i in idxs if i not in duplicate] if duplicate else idxs
        if not group:
            continue
        name = meters[meter].tz
        first_at, last_at = rows[group[0]].taken_at, rows[group[-1]].taken_at
        day = local.get((first_at, name))
        if day is None:
            tz = zones.get(name) or zones.setdefault(name, zone(name))
            day = local[(first_at, name)] = local_day(first_at, tz)
        end = ends.get((day, name))
        if end is None:
            tz = zones.get(name) or zones.setdefault(name, zone(name))
            end = ends[(day, name)] = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
        if last_at < end:  # one day: no need to look at the rows in between
            runs: list[tuple[date, Sequence[int], Sequence[datetime] | None]] = [(day, group, None)]
        else:
            tz = zones.get(name) or zones.setdefault(name, zone(name))
            times = [rows[i].taken_at for i in group]
            runs = []
            a = 0
            while a < len(group):
                day = local_day(times[a], tz)
                b = bisect_left(times, datetime.combine(day + timedelta(days=1), datetime.min.time(), tz), a)
                runs.append((day, group[a:b], times[a:b]))
                a = b
        for day, run, run_times in runs:
            cur = days.get((meter, day))
            if cur is None:
                cur = days[(meter, day)] = [None, None, None, None, 0, 0]
            _add_run(cur, rows, run, run_times, anomalous)
    return days


def readings_stored(session: Session, rows: Sequence[Any], groups: Mapping[int, Sequence[int]],
                    statuses: Mapping[int, tuple], meters: Mapping[int, Any]) -> None:
    """Add billing's stored readings to ``reading_days`` now (see ``reading_rows``)."""
    if ENABLED and groups:
        write_readings(session, reading_rows(rows, groups, statuses, meters))


def _add_run(cur: list, rows: Sequence[Any], run: Sequence[int], times: Sequence[datetime] | None,
             anomalous: set[int]) -> None:
    """Add one meter's rows of one day (in time order; ``times``: theirs, when known) to ``cur``:
    [first_at, first_total, last_at, last_total, readings, anomalies]. Rows in ``anomalous`` are
    counted, not part of the series."""
    if anomalous and not anomalous.isdisjoint(run):
        good = [(rows[i].taken_at, rows[i].total) for i in run if i not in anomalous]
        cur[5] += len(run) - len(good)
        if not good:
            return
        first, last, count = good[0], good[-1], len(good)
    else:  # the usual run: every row is a reading of the series
        head, tail = rows[run[0]], rows[run[-1]]
        first, last, count = (head.taken_at, head.total), (tail.taken_at, tail.total), len(run)
    cur[4] += count
    if cur[0] is None or first[0] < cur[0]:
        cur[0], cur[1] = first
    if cur[2] is None or last[0] > cur[2]:
        cur[2], cur[3] = last


# --- the rows and how they merge -----------------------------------------------------------

def usage_parts(quantity: Decimal, amount_fen: int, lines: Sequence[Mapping]) -> tuple[dict[str, Decimal],
                                                                                        dict[str, int]]:
    """One billed interval's quantity per period (ROLLUP_PERIODS) and fen per part (FEE_PARTS)."""
    if not any("period" in ln or "charge" in ln for ln in lines or ()):  # no TOU split, no fixed charge
        q = dict.fromkeys(ROLLUP_PERIODS, ZERO)
        q["none"] = Decimal(quantity)
        f = dict.fromkeys(FEE_PARTS, 0)
        f["none"] = int(amount_fen)
        return q, f
    q = dict.fromkeys(ROLLUP_PERIODS, ZERO)
    weight = dict.fromkeys(FEE_PARTS, ZERO)
    for ln in lines or ():
        amount = Decimal(str(ln.get("amount", "0")))
        if ln.get("charge"):
            weight["fixed"] += amount
            continue
        period = ln.get("period")
        part = period if period in q else "none"
        if part != "none":
            q[part] += Decimal(str(ln.get("quantity", "0")))
        weight[part] += amount
    q["none"] = Decimal(quantity) - sum((q[p] for p in ROLLUP_PERIODS if p != "none"), ZERO)
    weighed = [k for k, w in weight.items() if w > 0]
    if len(weighed) == 1:  # one part (a flat or tiered plan): all of it, no split to compute
        fees = dict.fromkeys(FEE_PARTS, 0)
        fees[weighed[0]] = int(amount_fen)
        return q, fees
    return q, split_fen(int(amount_fen), weight)


def split_fen(fen: int, weights: Mapping[str, Decimal]) -> dict[str, int]:
    """``fen`` over ``weights`` by largest remainder (ties in the weights' order); all to "none"
    when no weight is positive."""
    out = dict.fromkeys(weights, 0)
    units = {k: max(int(w.scaleb(10).to_integral_value()), 0) for k, w in weights.items()}
    total = sum(units.values())
    if fen == 0:
        return out
    if total <= 0:
        out["none" if "none" in out else next(iter(out))] = fen
        return out
    sign = 1 if fen > 0 else -1
    n = abs(fen)
    rema = {}
    for k, u in units.items():
        out[k], rema[k] = divmod(n * u, total)
    left = n - sum(out.values())
    order = sorted(units, key=lambda k: -rema[k])  # sorted() is stable: ties keep the weights' order
    for k in order[:left]:
        out[k] += 1
    return {k: sign * v for k, v in out.items()}


class LedgerRows:
    """Contributions to ``ledger_days``, summed per key before they are written."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, date, int, str], list] = {}

    def add(self, account_id: int, day: date, ledger_account_id: int, kind: str, site_id: int | None,
            amount_fen: int, postings: int = 1) -> None:
        row = self.rows.get((account_id, day, ledger_account_id, kind))
        if row is None:
            self.rows[(account_id, day, ledger_account_id, kind)] = [site_id, int(amount_fen), postings]
        else:
            row[1] += int(amount_fen)
            row[2] += postings

    def write(self, session: Session) -> None:
        if not self.rows:
            return
        t = LedgerDay.__table__
        _merge(session, t, [{"account_id": k[0], "day": k[1], "ledger_account_id": k[2], "kind": k[3], "site_id": v[0],
                             "amount_fen": v[1], "postings": v[2]} for k, v in sorted(self.rows.items())],
               ["account_id", "day", "ledger_account_id", "kind"], lambda ex: {
                   "amount_fen": t.c.amount_fen + ex.amount_fen, "postings": t.c.postings + ex.postings},
               _sums_sql("ledger_days", ("amount_fen", "postings")))
        self.rows = {}


# "none" is the last period and "fixed" follows it (the fast path of ``Collector.add`` writes them so)
assert ROLLUP_PERIODS[-1] == "none" and FEE_PARTS == (*ROLLUP_PERIODS, "fixed")
_ZEROS_BEFORE_NONE = "\t".join("0" for _ in ROLLUP_PERIODS[:-1])
USAGE_SUMS = ("quantity", *(f"q_{p}" for p in ROLLUP_PERIODS), "fee_fen", *(f"f_{p}" for p in FEE_PARTS), "intervals")


class UsageRows:
    """Contributions to ``usage_days`` and ``usage_months``, summed per key before they are written."""

    def __init__(self) -> None:
        self.days: dict[tuple[int, date, int], dict] = {}

    def add(self, meter_id: int, account_id: int, day: date, kind: str, quantity: Decimal, amount_fen: int,
            lines: Sequence[Mapping]) -> None:
        q, f = usage_parts(Decimal(quantity), amount_fen, lines)
        self.add_sums(meter_id, account_id, day, kind, {
            "quantity": Decimal(quantity), **{f"q_{p}": v for p, v in q.items()}, "fee_fen": int(amount_fen),
            **{f"f_{p}": v for p, v in f.items()}, "intervals": 1})

    def add_sums(self, meter_id: int, account_id: int, day: date, kind: str, sums: Mapping[str, Any]) -> None:
        row = self.days.get((meter_id, day, account_id))
        if row is None:
            self.days[(meter_id, day, account_id)] = {"kind": kind, **sums}
        else:
            for c in USAGE_SUMS:
                row[c] += sums[c]

    def months(self) -> dict[tuple[int, date, int], dict]:
        out: dict[tuple[int, date, int], dict] = {}
        for (meter_id, day, account_id), row in self.days.items():
            key = (meter_id, month_of(day), account_id)
            m = out.get(key)
            if m is None:
                out[key] = dict(row)
            else:
                for c in USAGE_SUMS:
                    m[c] += row[c]
        return out

    def write(self, session: Session) -> None:
        if not self.days:
            return
        days = [{"meter_id": k[0], "day": k[1], "account_id": k[2], **v} for k, v in sorted(self.days.items())]
        day_t, month_t = UsageDay.__table__, UsageMonth.__table__
        _merge(session, day_t, days, ["meter_id", "day", "account_id"],
               lambda ex: {c: day_t.c[c] + ex[c] for c in USAGE_SUMS}, _sums_sql("usage_days", USAGE_SUMS), plain=True)
        sums = _sums_sql("usage_months", USAGE_SUMS)
        if _copied(session, days):  # the month rows from the day rows COPY just brought in
            _months_from_days(session)
        else:
            months = [{"meter_id": k[0], "month": k[1], "account_id": k[2], **v}
                      for k, v in sorted(self.months().items())]
            _merge(session, month_t, months, ["meter_id", "month", "account_id"],
                   lambda ex: {c: month_t.c[c] + ex[c] for c in USAGE_SUMS}, sums)
        self.days = {}


def write_readings(session: Session, rows: list[dict]) -> None:
    if not rows:
        return
    t = ReadingDay.__table__

    def merged(ex):
        earlier = (t.c.first_at.is_(None)) | (ex.first_at.is_not(None) & (ex.first_at < t.c.first_at))
        later = (t.c.last_at.is_(None)) | (ex.last_at.is_not(None) & (ex.last_at > t.c.last_at))
        return {"first_at": case((earlier, ex.first_at), else_=t.c.first_at),
                "first_total": case((earlier, ex.first_total), else_=t.c.first_total),
                "last_at": case((later, ex.last_at), else_=t.c.last_at),
                "last_total": case((later, ex.last_total), else_=t.c.last_total),
                "readings": t.c.readings + ex.readings, "anomalies": t.c.anomalies + ex.anomalies}
    _merge(session, t, rows, ["meter_id", "day"], merged, READINGS_SQL)


_EARLIER = ("(reading_days.first_at IS NULL OR "
            "(EXCLUDED.first_at IS NOT NULL AND EXCLUDED.first_at < reading_days.first_at))")
_LATER = "(reading_days.last_at IS NULL OR (EXCLUDED.last_at IS NOT NULL AND EXCLUDED.last_at > reading_days.last_at))"
READINGS_SQL = ", ".join([
    f"first_at = CASE WHEN {_EARLIER} THEN EXCLUDED.first_at ELSE reading_days.first_at END",
    f"first_total = CASE WHEN {_EARLIER} THEN EXCLUDED.first_total ELSE reading_days.first_total END",
    f"last_at = CASE WHEN {_LATER} THEN EXCLUDED.last_at ELSE reading_days.last_at END",
    f"last_total = CASE WHEN {_LATER} THEN EXCLUDED.last_total ELSE reading_days.last_total END",
    "readings = reading_days.readings + EXCLUDED.readings", "anomalies = reading_days.anomalies + EXCLUDED.anomalies"])


_BATCH = 2000  # rows per INSERT .. VALUES statement (the ORM path)
COPY_FROM = 100  # from this many rows (PostgreSQL) a merge goes through COPY into a temporary table


def _merge(session: Session, table: Any, rows: list[dict], keys: list[str], set_, set_sql: str, *,
           plain: bool = False) -> None:
    """INSERT the rows (unique per key), adding to the rows already there: ``set_(excluded)`` (SQL
    expressions) or, through COPY on PostgreSQL, ``set_sql`` (the same as text). ``plain``: every
    value of every row is a number, a date or a word that needs no escaping, never None."""
    if is_postgres(session) and len(rows) >= COPY_FROM:
        _merge_copy(session, table, rows, keys, set_sql, plain=plain)
        return
    insert: Any
    if is_postgres(session):
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=set_(stmt.excluded))
    for k in range(0, len(rows), _BATCH):
        session.execute(stmt, rows[k:k + _BATCH])


def _merge_copy(session: Session, table: Any, rows: list[dict], keys: list[str], set_sql: str, *,
                plain: bool = False) -> None:
    from core.bulk_sql import copy_lines
    cols = list(rows[0])
    tmp = f"_merge_{table.name}"
    conn = session.connection()
    conn.exec_driver_sql(f"CREATE TEMP TABLE IF NOT EXISTS {tmp} (LIKE {table.name}) ON COMMIT DELETE ROWS")
    conn.exec_driver_sql(f"DELETE FROM {tmp}")
    lines = _lines(rows, plain)
    copy_lines(session, f"COPY {tmp} ({', '.join(cols)}) FROM STDIN", lines)
    names = ", ".join(cols)
    conn.exec_driver_sql(f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {tmp} ORDER BY {', '.join(keys)} "
                         f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {set_sql}")


def _sums_sql(table: str, cols) -> str:
    return ", ".join(f"{c} = {table}.{c} + EXCLUDED.{c}" for c in cols)


MONTHS_FROM_DAYS = (
    f"INSERT INTO usage_months (meter_id, month, account_id, kind, {', '.join(USAGE_SUMS)}) "
    f"SELECT meter_id, CAST(date_trunc('month', day) AS date), account_id, min(kind), "
    f"{', '.join(f'sum({c})' for c in USAGE_SUMS)} FROM _merge_usage_days "
    f"GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 ON CONFLICT (meter_id, month, account_id) DO UPDATE SET "
    f"{_sums_sql('usage_months', USAGE_SUMS)}")


USAGE_DAYS_COPY = f"COPY _merge_usage_days (meter_id, day, account_id, kind, {', '.join(USAGE_SUMS)}) FROM STDIN"
# A block of billing's stream has one usage row per meter (one billed interval per meter and
# batch), so its rows need no GROUP BY: each key comes once (ON CONFLICT would refuse a second).
# A block's rows are summed per key first: a meter's batch can bill several days (one interval per
# local day, core.billing.ingest._day_groups), several of them in one month.
BLOCK_DAYS_MERGE = (
    f"INSERT INTO usage_days (meter_id, day, account_id, kind, {', '.join(USAGE_SUMS)}) SELECT meter_id, day, "
    f"account_id, min(kind), {', '.join(f'sum({c})' for c in USAGE_SUMS)} FROM _merge_usage_days "
    f"GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 "
    f"ON CONFLICT (meter_id, day, account_id) DO UPDATE SET {_sums_sql('usage_days', USAGE_SUMS)}")
BLOCK_MONTHS_MERGE = MONTHS_FROM_DAYS
LEDGER_DAYS_COPY = ("COPY _merge_ledger_days (account_id, day, ledger_account_id, kind, amount_fen, postings) "
                    "FROM STDIN")
LEDGER_DAYS_MERGE = (
    "INSERT INTO ledger_days (account_id, day, ledger_account_id, kind, site_id, amount_fen, postings) "
    "SELECT t.account_id, t.day, t.ledger_account_id, t.kind, min(a.site_id), sum(t.amount_fen), sum(t.postings) "
    "FROM _merge_ledger_days t LEFT JOIN accounts a ON a.id = t.account_id GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
    "ON CONFLICT (account_id, day, ledger_account_id, kind) "
    f"DO UPDATE SET {_sums_sql('ledger_days', ('amount_fen', 'postings'))}")
READING_DAYS_COPY = f"COPY _merge_reading_days ({READING_COLS}) FROM STDIN"
READING_DAYS_MERGE = (f"INSERT INTO reading_days ({READING_COLS}) SELECT {READING_COLS} FROM _merge_reading_days "
                      f"ORDER BY meter_id, day ON CONFLICT (meter_id, day) DO UPDATE SET {READINGS_SQL}")


def _months_from_days(session: Session) -> None:
    """``usage_months`` from the day rows in ``_merge_usage_days`` (this batch's)."""
    session.connection().exec_driver_sql(MONTHS_FROM_DAYS)


def _driver_run(session: Session, sql: str) -> None:
    """Several statements (no parameters) in one round trip, in the session's transaction."""
    conn = session.connection().connection.driver_connection
    assert conn is not None
    conn.execute(sql)


def _lines(rows: list[dict], plain: bool = False) -> list[str]:
    """Rows as COPY text lines (``plain``: numbers, dates and fixed words only, never None)."""
    if plain:
        return ["\t".join(map(str, r.values())) + "\n" for r in rows]
    return ["\t".join(map(_copy_field, r.values())) + "\n" for r in rows]


def _copied(session: Session, rows: list) -> bool:
    return is_postgres(session) and len(rows) >= COPY_FROM


def _copy_field(v) -> str:
    """A value as COPY text: numbers and dates as they print, text escaped, None as NULL."""
    if v is None:
        return "\\N"
    if isinstance(v, str):
        return copy_text(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return str(v)


def _in(session: Session, column, values, *, strings: bool = False):
    from core.bulk_sql import ids_in
    return ids_in(session, column, values, strings=strings)
