"""``meterpay bench bills``: bill generation and confirmation for many postpaid accounts (issue 12).

On a scratch PostgreSQL database: one site with N postpaid accounts (one TOU electricity meter each)
and a month of billed usage (K intervals per account, three priced TOU lines each), plus one
bill-mode charge item per account. Then, timed in one run:

- ``preview``: ``generate_for_period(preview=True)`` (writes nothing);
- ``generate``: the real run (claims the usage and items, writes N bills and their lines), committed;
- ``rerun``: the same period again (creates nothing);
- ``confirm``: every draft confirmed, N receivable entries (COPY path), committed;
- ``baseline``: the same run's time to COPY N journal entries with 2 postings each into scratch copies
  of those tables -- the floor any posting path stands on.

Peak memory is the process's peak RSS from after the build to the end of the confirmation
(``peak_rss_mb``; ``rss_before_mb`` is where it started). ``measure(session,
site_id, period)`` is the bare timing of one generation, for the month-end benchmark to call.
"""
from __future__ import annotations

import json
import os
import random
import resource
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import click

from bench.common import scratch_database
from meterpay.cli.base import fail

PERIOD = "2026-04"
LINES = (("peak", "1.02"), ("flat", "0.6"), ("valley", "0.228"))


def build(session, n_accounts: int, intervals: int, seed: int) -> int:
    """The data set in the session's database (PostgreSQL); returns the site id. Committed."""
    from sqlalchemy import insert

    from core.bulk_sql import copy_rows, next_ids
    from core.models import Account, Building, Floor, LedgerAccount, Meter, MonthItem, Room, Site, Tenant
    rnd = random.Random(seed)
    site = Site(name=f"bench-bills-{uuid.uuid4().hex[:6]}", timezone="Asia/Shanghai", settings={})
    session.add(site)
    session.flush()
    building = Building(site_id=site.id, name="A")
    session.add(building)
    session.flush()
    floor = Floor(building_id=building.id, name="1")
    session.add(floor)
    session.flush()
    n = n_accounts
    room_ids = next_ids(session, "rooms", n)
    tenant_ids = next_ids(session, "tenants", n)
    account_ids = next_ids(session, "accounts", n)
    meter_ids = next_ids(session, "meters", n)
    session.execute(insert(Room.__table__), [{"id": r, "site_id": site.id, "floor_id": floor.id, "number": f"{i:05d}",
                                             "area_m2": Decimal(rnd.randint(20, 200))}
                                            for i, r in enumerate(room_ids)])
    session.execute(insert(Tenant.__table__), [{"id": t, "site_id": site.id, "name": f"T{i}", "phone": "13800000000",
                                               "notify_channels": []} for i, t in enumerate(tenant_ids)])
    session.execute(insert(Account.__table__), [{"id": a, "site_id": site.id, "room_id": r, "tenant_id": t,
                                                "billing_mode": "postpaid", "status": "open"}
                                               for a, r, t in zip(account_ids, room_ids, tenant_ids)])
    session.execute(insert(LedgerAccount.__table__), [{"code": f"wallet:{a}", "kind": "wallet", "account_id": a,
                                                      "balance_fen": 0} for a in account_ids])
    session.execute(insert(Meter.__table__), [{"id": m, "serial": f"BB{site.id}-{i:06d}", "site_id": site.id,
                                              "room_id": r, "account_id": a, "kind": "electricity",
                                              "profile": "acrel-ddsy1352", "address": "1"}
                                             for i, (m, r, a) in enumerate(zip(meter_ids, room_ids, account_ids))])
    start = datetime(2026, 3, 31, 16, 0, tzinfo=UTC)  # 00:00 on 1 April in Shanghai
    step = timedelta(days=30) / intervals
    reading_ids = next_ids(session, "readings", n * (intervals + 1))
    now = datetime.now(UTC)
    copy_rows(session, "COPY readings (id, meter_id, taken_at, total, source, status, created_at) FROM STDIN",
              ((reading_ids[i * (intervals + 1) + k], m, start + step * k - timedelta(minutes=1), Decimal(k * 3),
                "poll", "ok", now) for i, m in enumerate(meter_ids) for k in range(intervals + 1)))

    def lines(k: int) -> str:
        return json.dumps([{"period": p, "quantity": "1", "price": price, "amount": price} for p, price in LINES])
    line_json = lines(0)  # 1 kWh in each period: 1.848 yuan per interval
    copy_rows(session, "COPY billed_usage (meter_id, account_id, billing_mode, from_reading_id, to_reading_id, "
                       "started_at, ended_at, quantity, amount, amount_fen, lines, plan_id, created_at) FROM STDIN",
              ((m, a, "postpaid", reading_ids[i * (intervals + 1) + k], reading_ids[i * (intervals + 1) + k + 1],
                start + step * k - timedelta(minutes=1), start + step * (k + 1) - timedelta(minutes=1), Decimal(3),
                Decimal("1.848"), 185 if k % 5 == 0 else 184, line_json, None, now)
               for i, (m, a) in enumerate(zip(meter_ids, account_ids)) for k in range(intervals)))
    session.execute(insert(MonthItem.__table__), [
        {"site_id": site.id, "account_id": a, "kind": "charge", "source_id": 1, "code": "property", "name": "物业费",
         "period": PERIOD, "period_start": date(2026, 4, 1), "period_end": date(2026, 4, 30), "amount_fen": 5000,
         "mode": "bill", "key": f"charge:1:{a}:{PERIOD}", "revenue_code": "revenue:charge:property", "meta": {},
         "created_at": now} for a in account_ids])
    from core.reports.derive import rebuild
    rebuild(session)  # the usage and reading rollups of the rows written above (billing would have kept them)
    session.commit()
    return site.id


def measure(session, site_id: int, period: str = PERIOD) -> dict:
    """Time one real generation (committed) in the session's database: ``{"bills", "seconds"}``."""
    from core.bills.generate import generate_for_period
    t0 = time.perf_counter()
    res = generate_for_period(session, site_id, period, preview=False, actor="bench", front="bench")
    session.commit()
    return {"bills": res.count, "seconds": round(time.perf_counter() - t0, 2)}


def copy_baseline(session, n: int) -> float:
    """Seconds to COPY ``n`` journal entries and ``2n`` postings into scratch copies of those tables."""
    from sqlalchemy import text

    from core.bulk_sql import copy_lines
    session.execute(text("CREATE TEMP TABLE bench_entries (LIKE journal_entries INCLUDING ALL)"))
    session.execute(text("CREATE TEMP TABLE bench_postings (LIKE postings INCLUDING ALL)"))
    now = datetime.now(UTC).isoformat()
    t0 = time.perf_counter()
    copy_lines(session, "COPY bench_entries (id, idempotency_key, kind, account_id, memo, actor, front, meta, "
                        "created_at) FROM STDIN",
               (f"{i}\tbill:B-{i}\tconsumption\t{i}\tbill B-{i}\tbench\tbench\t{{}}\t{now}\n" for i in range(1, n + 1)))
    copy_lines(session, "COPY bench_postings (id, entry_id, ledger_account_id, amount_fen) FROM STDIN",
               (f"{2 * i}\t{i}\t1\t-100\n{2 * i + 1}\t{i}\t2\t100\n" for i in range(1, n + 1)))
    session.commit()
    return time.perf_counter() - t0


def peak_rss_mb() -> float:
    """The process's peak RSS since the last ``reset_peak`` (Linux VmHWM), else its lifetime peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> None:
    """Start measuring the peak RSS afresh (Linux: ``5`` to /proc/self/clear_refs), so the data set's
    build does not count."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


@click.command("bills")
@click.option("--accounts", "n_accounts", type=click.IntRange(min=1), default=50000, show_default=True)
@click.option("--intervals", type=click.IntRange(min=1), default=30, show_default=True,
              help="billed intervals per account in the month")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print only the JSON result")
def bench_bills(n_accounts: int, intervals: int, seed: int, as_json: bool) -> None:
    """Generate and confirm a month of postpaid bills for N accounts, against a COPY of N entries."""
    from sqlalchemy import func, select, text

    from core.bills import service
    from core.bills.generate import generate_for_period
    from core.config import get_settings, reset_settings
    from core.db import new_session, reset_engine
    from core.ledger.check import validate
    from core.migrate import upgrade
    from core.models import Bill, BillLine
    from core.reports.check import validate as validate_rollups
    say = (lambda *a: None) if as_json else (lambda msg: click.echo(msg, err=True))
    configured = get_settings().database_url
    if not configured.startswith("postgresql"):
        fail("meterpay bench bills needs PostgreSQL (METERPAY_DATABASE_URL=postgresql://...)")
    url, drop = scratch_database(configured, "bench_bills")
    os.environ["METERPAY_DATABASE_URL"] = url
    reset_settings()
    reset_engine()
    try:
        upgrade(url)
        t0 = time.perf_counter()
        with new_session() as s:
            site_id = build(s, n_accounts, intervals, seed)
            s.execute(text("ANALYZE"))
            s.commit()
        built = time.perf_counter() - t0
        say(f"built {n_accounts:,} accounts x {intervals} intervals in {built:.1f} s")
        import gc
        gc.collect()
        reset_peak()
        rss_before = peak_rss_mb()
        result: dict = {"accounts": n_accounts, "intervals": intervals, "usage_rows": n_accounts * intervals,
                        "build_seconds": round(built, 1)}
        with new_session() as s:
            t = time.perf_counter()
            preview = generate_for_period(s, site_id, PERIOD, preview=True, actor="bench", front="bench")
            s.rollback()
            result["preview"] = {"bills": preview.count, "seconds": round(time.perf_counter() - t, 2)}
            say(f"preview: {preview.count:,} bills in {result['preview']['seconds']} s")
            del preview
            result["generate"] = measure(s, site_id)
            say(f"generate: {result['generate']['bills']:,} bills in {result['generate']['seconds']} s")
            t = time.perf_counter()
            again = generate_for_period(s, site_id, PERIOD, preview=False, actor="bench", front="bench")
            s.commit()
            result["rerun"] = {"bills": again.count, "seconds": round(time.perf_counter() - t, 2)}
            say(f"re-run: {again.count} bills in {result['rerun']['seconds']} s")
            t = time.perf_counter()
            done = service.confirm(s, site_id, PERIOD, actor="bench", front="bench")
            s.commit()
            result["confirm"] = {"bills": done.count, "seconds": round(time.perf_counter() - t, 2)}
            say(f"confirm: {done.count:,} bills in {result['confirm']['seconds']} s")
            result["lines"] = s.scalar(select(func.count()).select_from(BillLine))
            result["total_fen"] = int(s.scalar(select(func.sum(Bill.total_fen))) or 0)
        result["peak_rss_mb"] = round(peak_rss_mb(), 1)
        result["rss_before_mb"] = round(rss_before, 1)
        with new_session() as s:
            result["baseline_copy_seconds"] = round(copy_baseline(s, n_accounts), 2)
        say(f"baseline: COPY of {n_accounts:,} entries + {2 * n_accounts:,} postings in "
            f"{result['baseline_copy_seconds']} s")
        t = time.perf_counter()
        with new_session() as s:
            problems = validate(s) + validate_rollups(s)
        result["check"] = {"seconds": round(time.perf_counter() - t, 2), "problems": len(problems)}
        say(f"ledger check: {len(problems)} problem(s) in {result['check']['seconds']} s")
        click.echo(json.dumps(result))
        if problems:
            raise SystemExit(1)
    finally:
        drop()
        os.environ["METERPAY_DATABASE_URL"] = configured
        reset_settings()
        reset_engine()
