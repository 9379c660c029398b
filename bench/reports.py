"""``meterpay bench reports``: the finance and energy reports on a year of data, each next to a naive
baseline measured in the same run, and billing's ingest rate with and without the report rollups.

Builds, on a scratch PostgreSQL database beside METERPAY_DATABASE_URL (dropped afterwards unless
``--keep``), a site of N meters (default 2,000: buildings of 20 floors x 10 rooms; accounts 80%
prepaid-platform, 10% postpaid, 10% prepaid-meter; plans 60% flat, 20% tiered, 20% TOU, half of the
TOU meters with per-period registers) and M months (default 13) of hourly readings from 2025-01-01,
about 19 million rows, ingested the real way: ``core.billing.ingest_batch`` one day at a time (N x
24 readings, one billed interval per meter per day), so the readings, billed usage, consumption
entries and every rollup are written as in production. Each account also gets a recharge a month
(half at the desk, half online through WeChat Pay or Alipay with a paid time) and a few refunds.
``--reuse URL`` measures again on a database an earlier ``--keep`` run built.

Then, in the same run (median of ``--repeat``):

- ``energy``: the site's energy report for a month (``core.reports.energy.energy``) vs the same
  report from the billed usage rows of the month, and vs a scan of the month's raw readings;
- ``yoy``: year-on-year by room (``energy.yoy``) vs a scan of two years of raw readings;
- ``meter_day``: one meter's daily report for a month (``energy.meter_report``) vs its raw readings;
- ``income``: income by day for a year (``core.reports.finance.income``) vs the postings of the year
  dated through their entries, billed usage and payment orders;
- ``ingest``: day batches of N x 24 readings ingested with the rollups on and off, interleaved;
- ``check``: ``ledger check`` (the ledger's checks and the rollups').

Each rollup result is compared with its baseline's (the bench fails when they differ). Targets
(issue 15): energy < 1 s, yoy < 1 s, meter day < 100 ms, income < 1 s; ingest at its rate.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import click

from bench.common import scratch_database
from meterpay.cli.base import fail, friendly_errors

TZ = "Asia/Shanghai"
SH = ZoneInfo(TZ)
START = date(2025, 1, 1)
ROOMS_PER_FLOOR, FLOORS = 10, 20
OPENING_FEN = 200_000


def _build_site(n_meters: int, seed: int) -> dict:
    """Site, buildings, floors, rooms, tenants, accounts with opening balances, meters (bulk inserts)."""
    from sqlalchemy import insert

    from bench.billing import PLANS, open_wallets
    from core.db import session_scope, utcnow
    from core.models import Account, Building, Floor, Meter, Room, Site, Tenant
    from core.tariffs.store import add_plan
    rnd = random.Random(seed)
    with session_scope() as s:
        site = Site(name=f"报表基准 {uuid.uuid4().hex[:6]}", timezone=TZ, settings={})
        s.add(site)
        s.flush()
        plan_ids = {name: add_plan(s, name, spec, site_id=site.id)[0].id for name, spec in PLANS.items()}
        room_rows = []
        b = 0
        while len(room_rows) < n_meters:
            b += 1
            building = Building(site_id=site.id, name=f"{b}号楼")
            s.add(building)
            s.flush()
            for f in range(1, FLOORS + 1):
                floor = Floor(building_id=building.id, name=f"{f}F")
                s.add(floor)
                s.flush()
                for r in range(1, ROOMS_PER_FLOOR + 1):
                    if len(room_rows) < n_meters:
                        room_rows.append({"site_id": site.id, "floor_id": floor.id, "number": f"{b}-{f:02d}{r:02d}"})
        room_ids = s.scalars(insert(Room).returning(Room.id, sort_by_parameter_order=True), room_rows).all()
        tenant_ids = s.scalars(insert(Tenant).returning(Tenant.id, sort_by_parameter_order=True),
                               [{"site_id": site.id, "name": f"商户{i}", "phone": f"139{i:08d}", "notify_channels": []}
                                for i in range(n_meters)]).all()
        now = utcnow()
        accounts, meters = [], []
        for i in range(n_meters):
            x, y = rnd.random(), rnd.random()
            mode = "prepaid-platform" if x < 0.8 else ("postpaid" if x < 0.9 else "prepaid-meter")
            plan = "bench-flat" if y < 0.6 else ("bench-tiered" if y < 0.8 else "bench-tou")
            meters.append((plan == "bench-tou" and rnd.random() < 0.5, mode))
            accounts.append({"site_id": site.id, "room_id": room_ids[i], "tenant_id": tenant_ids[i],
                             "billing_mode": mode, "electricity_plan_id": plan_ids[plan], "status": "open",
                             "opened_at": now})
        account_ids = s.scalars(insert(Account).returning(Account.id, sort_by_parameter_order=True), accounts).all()
        open_wallets(s, account_ids, OPENING_FEN)
        meter_ids = s.scalars(insert(Meter).returning(Meter.id, sort_by_parameter_order=True), [
            {"serial": f"RPT{i:06d}", "site_id": site.id, "room_id": room_ids[i], "account_id": account_ids[i],
             "kind": "electricity", "profile": "acrel-ddsy1352", "address": str(i % 247 + 1), "ct_ratio": 1}
            for i in range(n_meters)]).all()
        return {"site_id": site.id, "site": site.name, "accounts": list(account_ids),
                "meters": [(m, regs) for m, (regs, _mode) in zip(meter_ids, meters)]}


class Series:
    """Each meter's registers, moved on hour by hour (usage 0-3 kWh an hour, more by day)."""

    def __init__(self, meters: list[tuple[int, bool]], seed: int):
        self.rnd = random.Random(seed)
        self.meters = meters
        self.total = [Decimal(self.rnd.randint(0, 500_000)) / 100 for _ in meters]
        self.regs = [[t / 4 for _ in range(4)] for t in self.total]

    def day(self, day: date, *, skip: float = 0.0005):
        """One day's readings of every meter (24 an hour apart), meter by meter; a few are missing."""
        from core.billing import RawReading
        from core.tariffs.plan import PERIODS
        rnd = self.rnd
        rows = []
        hours = [datetime(day.year, day.month, day.day, h, tzinfo=SH) for h in range(24)]
        for i, (mid, registers) in enumerate(self.meters):
            if rnd.random() < skip:  # a meter silent for the day: a gap in its reports
                continue
            total, regs = self.total[i], self.regs[i]
            for h, at in enumerate(hours):
                used = Decimal(rnd.randint(0, 300 if 8 <= h < 22 else 80)) / 100
                total += used
                p = 2 if h < 8 else (1 if h < 22 else 3)
                regs[p] += used
                periods = ({PERIODS[k]: regs[k].quantize(Decimal("0.01")) for k in range(4)}
                           if registers else None)
                rows.append(RawReading(mid, at, total.quantize(Decimal("0.01")), periods, "import"))
            self.total[i] = total
        return rows


def _ingest_day(series: Series, day: date, *, commit: bool = True) -> tuple[int, float]:
    """Ingest one day of readings; ``commit=False``: time it, then roll it back (the database is
    left as it was, so measuring never leaves rollups out of step)."""
    from core.billing import ingest_batch
    from core.db import new_session
    rows = series.day(day)
    session = new_session()
    try:
        t0 = time.perf_counter()
        ingest_batch(session, rows, validated=True, detail=False)
        session.flush()
        if commit:
            session.commit()
        secs = time.perf_counter() - t0
        if not commit:
            session.rollback()
    finally:
        session.close()
    return len(rows), secs


def _payments(built: dict, month: date, rnd: random.Random) -> int:
    """A recharge per account this month (desk or online, paid at a random time) and a few refunds."""
    from core.db import session_scope
    from core.errors import InsufficientFunds
    from core.ledger import cashdesk
    from core.payments import orders
    from core.payments.provider import PaymentReport
    n = 0
    accounts = built["accounts"]
    for k in range(0, len(accounts), 250):
        with session_scope() as s:
            for a in accounts[k:k + 250]:
                fen = rnd.choice((30_000, 50_000, 80_000))
                paid = datetime(month.year, month.month, rnd.randint(1, 28), rnd.randint(0, 23), rnd.randint(0, 59),
                                tzinfo=SH)
                if rnd.random() < 0.5:
                    cashdesk.desk_recharge(s, a, fen, key=f"bench:desk:{a}:{month:%Y-%m}")
                else:
                    channel = rnd.choice(("wechat", "alipay"))
                    order = orders.create_order(s, a, fen, channel)
                    orders.settle(s, PaymentReport(channel=channel, order_no=order.order_no, state="paid",
                                                   txn_id=f"T{order.order_no}", amount_fen=fen, paid_at=paid))
                n += 1
                if rnd.random() < 0.02:
                    try:
                        with s.begin_nested():
                            cashdesk.refund(s, a, 5_000, key=f"bench:refund:{a}:{month:%Y-%m}")
                        n += 1
                    except InsufficientFunds:  # a refund never overdraws: none for this tenant this month
                        pass
    return n


def _months(start: date, n: int) -> list[date]:
    out, d = [], start
    for _ in range(n):
        out.append(d)
        d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
    return out


def build(n_meters: int, months: int, seed: int, say: Callable[[str], None], *, resume: bool = False) -> dict:
    """Build the site and ingest ``months`` of readings; ``resume``: go on from where an interrupted
    build of this database stopped (the site, meters and each meter's registers read back)."""
    t0 = time.perf_counter()
    built = _resumed() if resume else _build_site(n_meters, seed)
    series = Series(built["meters"], seed + (built.get("resumed_day") is not None))
    if resume:
        series.total = [Decimal(t) for t in built.pop("totals")]
        series.regs = [[Decimal(r) for r in regs] for regs in built.pop("registers")]
    rnd = random.Random(seed + 1)
    rows = entries = 0
    ingest_s = 0.0
    month_starts = _months(START, months)
    end = _months(month_starts[-1], 2)[1]
    day = date.fromisoformat(built["resumed_day"]) if resume else START
    while day < end:
        if day.day == 1:
            entries += _payments(built, day, rnd)
            say(f"  {day:%Y-%m}: {rows:,} readings so far, {ingest_s:.0f} s ingesting "
                f"({rows / ingest_s if ingest_s else 0:,.0f}/s)")
        n, secs = _ingest_day(series, day)
        rows += n
        ingest_s += secs
        day += timedelta(days=1)
    built.update(readings=built.get("readings", 0) + rows, payments=built.get("payments", 0) + entries,
                 build_seconds=round(built.get("build_seconds", 0) + time.perf_counter() - t0, 1),
                 ingest_seconds=round(built.get("ingest_seconds", 0) + ingest_s, 1), first_day=START.isoformat(),
                 end_day=end.isoformat(), series_state={"total": [str(t) for t in series.total]},
                 run_readings=rows, run_ingest_seconds=round(ingest_s, 1))
    return built


def _resumed() -> dict:
    """What an interrupted build left: the site, its accounts and meters in id order, each meter's
    last registers, and the day to go on from (the day after the last reading)."""
    from sqlalchemy import func, select

    from core.db import session_scope
    from core.models import Account, Meter, Reading, Site
    from core.models.billing import MeterBillingState
    from core.tariffs.plan import PERIODS
    with session_scope() as s:
        site = s.scalar(select(Site).where(Site.name.like("报表基准%")))
        if site is None:
            raise SystemExit("nothing to resume: no bench site in this database")
        accounts = list(s.scalars(select(Account.id).where(Account.site_id == site.id).order_by(Account.id)))
        states = {m: (t, p) for m, t, p in s.execute(
            select(MeterBillingState.meter_id, MeterBillingState.last_total, MeterBillingState.last_periods))}
        meters = list(s.scalars(select(Meter.id).where(Meter.site_id == site.id).order_by(Meter.id)))
        last = s.scalar(select(func.max(MeterBillingState.last_taken_at)))
        n_readings = s.scalar(select(func.count()).select_from(Reading))
        totals, registers, flags = [], [], []
        for m in meters:
            total, periods = states[m]
            totals.append(str(total))
            registers.append([str(periods[p]) if periods else str(Decimal(total) / 4) for p in PERIODS[:4]])
            flags.append(periods is not None)
        return {"site_id": site.id, "site": site.name, "accounts": accounts, "meters": list(zip(meters, flags)),
                "totals": totals, "registers": registers, "readings": n_readings,
                "resumed_day": (last.astimezone(SH).date() + timedelta(days=1)).isoformat()}


# --- naive baselines (raw rows, no rollups) ----------------------------------------------------------

def naive_energy(session, site_id: int, month: date) -> dict[int, tuple[Decimal, int]]:
    """Per account: quantity and fee of the month from the billed usage rows themselves."""
    from sqlalchemy import select

    from core.models import Meter
    from core.models.billing import BilledUsage
    t0 = datetime(month.year, month.month, 1, tzinfo=SH)
    t1 = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=SH)
    out: dict[int, list] = defaultdict(lambda: [Decimal(0), 0])
    q = (select(BilledUsage.account_id, BilledUsage.quantity, BilledUsage.amount_fen, BilledUsage.lines)
         .join(Meter, Meter.id == BilledUsage.meter_id)
         .where(Meter.site_id == site_id, BilledUsage.ended_at >= t0, BilledUsage.ended_at < t1))
    for account_id, quantity, fen, _lines in session.execute(q):
        row = out[account_id or 0]
        row[0] += Decimal(quantity)
        row[1] += int(fen)
    return {a: (v[0], v[1]) for a, v in out.items()}


def naive_month_readings(session, site_id: int, month: date) -> int:
    """A scan of the month's raw readings: each meter's first and last register of the month."""
    from sqlalchemy import text
    t0 = datetime(month.year, month.month, 1, tzinfo=SH)
    t1 = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=SH)
    return len(session.execute(text(
        "SELECT r.meter_id, min(r.total), max(r.total) FROM readings r JOIN meters m ON m.id = r.meter_id "
        "WHERE m.site_id = :s AND r.taken_at >= :a AND r.taken_at < :b AND r.status <> 'anomaly' "
        "GROUP BY r.meter_id"), {"s": site_id, "a": t0, "b": t1}).all())


def naive_yoy(session, site_id: int, year: int) -> int:
    """Two years of raw readings: each meter's last register per month (the usage is the differences)."""
    from sqlalchemy import text
    rows = session.execute(text(
        "SELECT r.meter_id, date_trunc('month', r.taken_at AT TIME ZONE :tz) AS month, max(r.total) "
        "FROM readings r JOIN meters m ON m.id = r.meter_id WHERE m.site_id = :s AND r.status <> 'anomaly' "
        "AND r.taken_at >= :a AND r.taken_at < :b GROUP BY 1, 2"),
        {"tz": TZ, "s": site_id, "a": datetime(year - 1, 1, 1, tzinfo=SH) - timedelta(days=1),
         "b": datetime(year + 1, 1, 1, tzinfo=SH)}).all()
    return len(rows)


def naive_meter_days(session, meter, month: date) -> list[dict]:
    """The meter's daily report from its raw readings (the same rule as the report)."""
    from sqlalchemy import select

    from core.models import Reading
    from core.reports.base import qty
    t0 = datetime(month.year, month.month, 1, tzinfo=SH)
    t1 = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=SH)
    prev = session.scalar(select(Reading.total).where(Reading.meter_id == meter.id, Reading.taken_at < t0,
                                                      Reading.status != "anomaly")
                          .order_by(Reading.taken_at.desc()).limit(1))
    rows = session.execute(select(Reading.taken_at, Reading.total, Reading.status)
                           .where(Reading.meter_id == meter.id, Reading.taken_at >= t0, Reading.taken_at < t1)
                           .order_by(Reading.taken_at)).all()
    by_day: dict[date, list] = defaultdict(list)
    for r in rows:
        by_day[r.taken_at.astimezone(SH).date()].append(r)
    out = []
    d = t0.date()
    while d < t1.date():
        day_rows = by_day.get(d, [])
        good = [r for r in day_rows if r.status != "anomaly"]
        usage = None
        if good:
            base = prev if prev is not None else good[0].total
            usage = good[-1].total - base
            prev = good[-1].total
        flag = "gap" if not day_rows else ("anomaly" if len(good) < len(day_rows) or (usage or 0) < 0 else None)
        out.append({"period": d.isoformat(), "usage": qty(usage, meter.kind), "flag": flag})
        d += timedelta(days=1)
    return out


def naive_income(session, site_id: int, year: int) -> int:
    """Revenue of the year from the postings, each dated through its entry (usage by its billed
    interval's end, payments by the order's paid time, else the entry's time): total fen."""
    from sqlalchemy import text
    return int(session.execute(text(
        "SELECT coalesce(sum(p.amount_fen), 0) FROM postings p "
        "JOIN ledger_accounts la ON la.id = p.ledger_account_id AND la.kind = 'revenue' "
        "JOIN journal_entries e ON e.id = p.entry_id JOIN accounts a ON a.id = e.account_id AND a.site_id = :s "
        "LEFT JOIN billed_usage bu ON bu.entry_id = e.id "
        "LEFT JOIN payment_orders po ON po.order_no = (e.meta ->> 'order_no') "
        "WHERE date(coalesce(bu.ended_at, po.paid_at, e.created_at) AT TIME ZONE :tz) BETWEEN :a AND :b"),
        {"s": site_id, "tz": TZ, "a": date(year, 1, 1), "b": date(year, 12, 31)}).scalar())


def _timed(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def measure(built: dict, repeat: int, say: Callable[[str], None]) -> dict:
    from sqlalchemy import select

    from core.db import new_session
    from core.models import Meter, Site
    from core.reports import energy, finance
    out: dict = {}
    site_id = built["site_id"]
    first = date.fromisoformat(built["first_day"])
    month = date(first.year, 6, 1)
    year = first.year
    last_month = date.fromisoformat(built["end_day"]) - timedelta(days=1)
    with new_session() as s:
        site = s.get(Site, site_id)
        meter = s.scalar(select(Meter).where(Meter.site_id == site_id).order_by(Meter.id).limit(1))

        secs, rep = _timed(lambda: energy.energy(s, site, month.strftime("%Y-%m")), repeat)
        base_s, naive = _timed(lambda: naive_energy(s, site_id, month), 1)
        raw_s, _ = _timed(lambda: naive_month_readings(s, site_id, month), 1)
        got = {(r.account_id or 0): (r.quantity["total"], r.fee["total"]) for r in rep.rows}
        if got != naive:
            fail("the energy report differs from the billed usage rows")
        out["energy"] = {"seconds": round(secs, 4), "billed_usage_scan_seconds": round(base_s, 3),
                         "raw_readings_scan_seconds": round(raw_s, 3), "rows": len(rep.rows)}
        say(f"energy report {month:%Y-%m}: {secs * 1000:.0f} ms (billed usage scan {base_s:.2f} s, "
            f"raw readings scan {raw_s:.2f} s)")

        yoy_year = last_month.year
        secs, rep_y = _timed(lambda: energy.yoy(s, site, yoy_year, by="room"), repeat)
        base_s, _ = _timed(lambda: naive_yoy(s, site_id, yoy_year), 1)
        out["yoy"] = {"seconds": round(secs, 4), "raw_readings_scan_seconds": round(base_s, 3),
                      "rows": len(rep_y.rows), "year": yoy_year}
        say(f"yoy by room {yoy_year}: {secs * 1000:.0f} ms (raw readings scan {base_s:.2f} s)")

        secs, rep_m = _timed(lambda: energy.meter_report(s, meter, "day", month.strftime("%Y-%m")), repeat)
        base_s, naive_m = _timed(lambda: naive_meter_days(s, meter, month), repeat)
        if rep_m.rows != naive_m:
            fail("the meter's daily report differs from its raw readings")
        out["meter_day"] = {"seconds": round(secs, 4), "raw_readings_seconds": round(base_s, 4)}
        say(f"meter daily report: {secs * 1000:.1f} ms (raw readings {base_s * 1000:.1f} ms)")

        secs, rep_i = _timed(lambda: finance.income(s, site, date(year, 1, 1), date(year, 12, 31), "day"), repeat)
        base_s, naive_i = _timed(lambda: naive_income(s, site_id, year), 1)
        if rep_i.total.income.get("total", 0) != naive_i:
            fail(f"income {rep_i.total.income.get('total', 0)} differs from the postings {naive_i}")
        out["income"] = {"seconds": round(secs, 4), "postings_scan_seconds": round(base_s, 3), "rows": len(rep_i.rows),
                         "income_fen": naive_i}
        say(f"income by day {year}: {secs * 1000:.0f} ms (postings scan {base_s:.2f} s)")

        secs, rep_o = _timed(lambda: finance.orders(s, site, month, date(month.year, month.month, 28)), 1)
        out["orders"] = {"seconds": round(secs, 3), "rows": len(rep_o.rows)}
    return out


def ingest_rates(built: dict, rounds: int, seed: int, say: Callable[[str], None]) -> dict:
    """The day after the built range ingested with the rollups on and off in turn, each time rolled
    back (nothing stays): readings per second of each (median)."""
    from core.reports import rollups
    series = Series(built["meters"], seed + 99)
    series.total = [Decimal(t) for t in built["series_state"]["total"]]
    series.regs = [[t / 4 for _ in range(4)] for t in series.total]
    day = date.fromisoformat(built["end_day"])
    rates: dict[bool, list[float]] = {True: [], False: []}
    try:
        for k in range(rounds * 2):
            on = k % 2 == 1  # off first: a cold first round counts against the old way, not the new
            rollups.ENABLED = on
            n, secs = _ingest_day(series, day, commit=False)
            rates[on].append(n / secs)
    finally:
        rollups.ENABLED = True
    on, off = statistics.median(rates[True]), statistics.median(rates[False])
    say(f"ingest (a day: {len(built['meters']) * 24:,} readings per batch, rolled back): {on:,.0f}/s with rollups, "
        f"{off:,.0f}/s without ({on / off:.2f}x)")
    return {"with_rollups_per_second": round(on), "without_rollups_per_second": round(off),
            "ratio": round(on / off, 3), "rounds": rounds, "all": {"with": [round(r) for r in rates[True]],
                                                                  "without": [round(r) for r in rates[False]]}}


def _save(built: dict) -> None:
    """Keep what the build made in the database, for ``--reuse``."""
    from sqlalchemy import text

    from core.db import session_scope
    with session_scope() as s:
        s.execute(text("CREATE TABLE IF NOT EXISTS bench_reports_state (value text)"))
        s.execute(text("DELETE FROM bench_reports_state"))
        s.execute(text("INSERT INTO bench_reports_state VALUES (:v)"), {"v": json.dumps(built)})


def _mute() -> dict:
    from bench.billing import _mute_listeners
    return _mute_listeners()


@click.command("reports")
@click.option("--meters", "n_meters", type=click.IntRange(min=10), default=2000, show_default=True)
@click.option("--months", type=click.IntRange(min=2, max=36), default=13, show_default=True)
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--ingest-rounds", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--keep", is_flag=True, help="keep the scratch database and print its URL (for --reuse)")
@click.option("--reuse", default=None, metavar="URL", help="a database an earlier --keep run built: measure only")
@click.option("--resume", default=None, metavar="URL", help="a database whose build stopped: finish, measure")
@click.option("--json", "as_json", is_flag=True, help="print only the JSON result")
@friendly_errors
def bench_reports(n_meters: int, months: int, repeat: int, ingest_rounds: int, seed: int, keep: bool,
                  reuse: str | None, resume: str | None, as_json: bool) -> None:
    """Reports on a year of hourly readings (2,000 meters: ~19M rows) against naive scans; ingest with and without
    the rollups."""
    from bench.billing import _restore_listeners
    from core.config import get_settings, reset_settings
    from core.db import reset_engine, session_scope
    from core.ledger.check import validate
    from core.migrate import upgrade
    from core.reports.check import validate as validate_rollups
    say = (lambda *a: None) if as_json else (lambda msg: click.echo(msg, err=True))
    configured = get_settings().database_url
    if not reuse and not configured.startswith("postgresql"):
        fail("meterpay bench reports needs PostgreSQL (METERPAY_DATABASE_URL=postgresql://...)")
    reuse = reuse or None
    given = reuse or resume
    url, drop = (given, lambda: None) if given else scratch_database(configured, "bench_reports")
    os.environ["METERPAY_DATABASE_URL"] = url
    reset_settings()
    reset_engine()
    muted = _mute()
    try:
        upgrade(url)
        if reuse:
            from sqlalchemy import text

            from core.db import get_engine
            with get_engine().connect() as conn:
                built = json.loads(conn.execute(text("SELECT value FROM bench_reports_state")).scalar())
            say(f"reusing {url.rsplit('/', 1)[-1]}: {built['readings']:,} readings")
        else:
            say(f"resuming the build of {url.rsplit('/', 1)[-1]}" if resume else
                f"building {n_meters} meters x {months} months of hourly readings on a scratch database")
            built = build(n_meters, months, seed, say, resume=bool(resume))
            _save(built)
            say(f"built in {built['build_seconds']:.0f} s: {built['readings']:,} readings (this run "
                f"{built['run_readings']:,} at {built['run_readings'] / max(built['run_ingest_seconds'], 1e-9):,.0f}/s "
                f"ingesting), {built['payments']:,} payments")
        from sqlalchemy import text
        with session_scope() as s:
            counts = {t: s.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in (
                "readings", "billed_usage", "journal_entries", "postings", "ledger_days", "usage_days", "usage_months",
                "reading_days")}
            s.execute(text("ANALYZE"))
        result = {"database": "postgresql", "meters": len(built["meters"]), "counts": counts,
                  "build_seconds": built.get("build_seconds"), "build_ingest_seconds": built.get("ingest_seconds")}
        result.update(measure(built, repeat, say))
        result["ingest"] = ingest_rates(built, ingest_rounds, seed, say)
        t0 = time.perf_counter()
        with session_scope() as s:
            problems = validate(s) + validate_rollups(s)
        result["check"] = {"seconds": round(time.perf_counter() - t0, 2), "problems": len(problems)}
        say(f"ledger check: {result['check']['seconds']:.1f} s, {len(problems)} problem(s)")
        result["targets_met"] = {"energy": result["energy"]["seconds"] < 1, "yoy": result["yoy"]["seconds"] < 1,
                                 "meter_day": result["meter_day"]["seconds"] < 0.1,
                                 "income": result["income"]["seconds"] < 1}
        if keep and not given:
            result["kept"] = url
            say(f"kept: --reuse {url}")
        click.echo(json.dumps(result))
        if problems:
            raise SystemExit(1)
    finally:
        _restore_listeners(muted)
        if not keep and not given:
            drop()
        os.environ["METERPAY_DATABASE_URL"] = configured
        reset_settings()
        reset_engine()
