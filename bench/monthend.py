"""``meterpay bench month-end``: one site's whole month-end run, against a COPY of as many entries.

Builds on a scratch PostgreSQL database (a new database beside the configured one, dropped after):
one site of N accounts (default 100,000; every room with an area, every account a wallet with
2,000.00 and an electricity meter), half of them postpaid with a month of billed usage (two
readings and one ``billed_usage`` row each, ``billing_mode`` postpaid, ``bill_id`` NULL: what the
bills step consumes); three charge schemes (物业费 per m² with proration by days, 服务费 fixed, 房租
quarterly); R apportionment rules (default 20) of S rooms each (default 5,000), by area, ratio and
usage in turn, each over a master meter priced by its own plan with readings covering the month.

Then, in the same run:

1. ``run``: ``core.monthend.run.run_month_end`` for January 2026 (every scheme falls due), in a
   child process, so its time and peak memory (maximum resident set) are the run's alone -- as the
   schedule runs it (no line per item in the result);
2. ``rerun``: the same again (0 entries), and ``rerun_with_lines``: again with a line per item in
   the result, as ``meterpay month-end --json`` prints;
3. ``copy``: a COPY of as many journal entries (and two postings each) as the run posted into
   tables shaped like ``journal_entries`` and ``postings`` (with their indexes): the floor;
4. the ledger, payments and rollup checks of ``meterpay ledger check``.

The bills step is whatever ``core.bills.generate`` is in the tree (a placeholder until the bills
branch lands, then real bill generation). The other areas' ``balance_changed`` listeners are muted
in the child (as ``bench billing`` does): their job runs after commit, apart from the run.
"""
from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import click

from bench.common import scratch_database
from meterpay.cli.base import fail, friendly_errors

PERIOD = "2026-01"
TZ = ZoneInfo("Asia/Shanghai")
OPENING_FEN = 200_000
SCHEMES = [
    {"name": "物业费", "code": "property", "basis": "per_m2", "amount": "2.5", "every": "month", "day": 1,
     "mode": "deduct", "prorate": "days", "start": "2025-01-01", "scope": "all"},
    {"name": "服务费", "code": "service", "basis": "fixed", "amount": "20.00", "every": "month", "day": 1,
     "mode": "deduct", "prorate": "none", "start": "2025-01-01", "scope": "all"},
    {"name": "房租", "code": "rent", "basis": "fixed", "amount": "3000.00", "every": "quarter", "day": 1,
     "mode": "bill", "prorate": "days", "start": "2025-01-01", "scope": "all"},
]
BASES = ("area", "ratio", "usage")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=TZ)


def build_site(n: int, rules: int, rule_size: int, seed: int) -> str:
    """The site (see the module); returns its name."""
    from core import ledger
    from core.billing import RawReading, ingest_batch
    from core.bulk_sql import copy_rows, next_ids
    from core.db import session_scope, utcnow
    from core.models import Building, Floor, Site
    from core.monthend.rules import add_rule
    from core.monthend.schemes import add_scheme
    from core.tariffs.store import add_plan
    rnd = random.Random(seed)
    now = utcnow()
    opened = _at("2025-06-01 00:00")
    name = f"Bench month-end {uuid.uuid4().hex[:6]}"
    with session_scope() as s:
        site = Site(name=name, timezone="Asia/Shanghai", settings={})
        s.add(site)
        s.flush()
        plan = add_plan(s, "bench-flat", {"kind": "flat", "unit": "kWh", "price": "0.6"}, site_id=site.id)[0]
        master_plan = add_plan(s, "bench-common", {"kind": "flat", "unit": "kWh", "price": "1.0"}, site_id=site.id)[0]
        b = Building(site_id=site.id, name="A")
        s.add(b)
        s.flush()
        floors = []
        for k in range(max(1, n // 1000) + 1):
            f = Floor(building_id=b.id, name=str(k + 1))
            s.add(f)
            floors.append(f)
        s.flush()
        room_ids = next_ids(s, "rooms", n + rules)
        copy_rows(s, "COPY rooms (id, site_id, floor_id, number, area_m2) FROM STDIN", (
            (rid, site.id, floors[i // 1000].id if i < n else floors[-1].id, f"R{i:06d}" if i < n else f"COMMON{i - n}",
             Decimal(rnd.randint(1500, 15000)) / 100 if i < n else None) for i, rid in enumerate(room_ids)))
        tenant_ids = next_ids(s, "tenants", n)
        copy_rows(s, "COPY tenants (id, site_id, name, phone, notify_channels, created_at) FROM STDIN", (
            (t, site.id, f"Tenant {i}", f"139{i:08d}", "[]", now) for i, t in enumerate(tenant_ids)))
        account_ids = next_ids(s, "accounts", n)
        postpaid = [i % 2 == 1 for i in range(n)]
        copy_rows(s, "COPY accounts (id, site_id, room_id, tenant_id, billing_mode, electricity_plan_id, status, "
                     "keep_power, opened_at) FROM STDIN", (
                         (a, site.id, room_ids[i], tenant_ids[i], "postpaid" if postpaid[i] else "prepaid-platform",
                          plan.id, "open", False, opened) for i, a in enumerate(account_ids)))
        equity = ledger.system_account(s, "equity:opening-balances")
        wallet_ids = next_ids(s, "ledger_accounts", n)
        copy_rows(s, "COPY ledger_accounts (id, code, kind, account_id, balance_fen, created_at) FROM STDIN", (
            (w, f"wallet:{a}", "wallet", a, OPENING_FEN, now) for w, a in zip(wallet_ids, account_ids)))
        entry_ids = next_ids(s, "journal_entries", n)
        copy_rows(s, "COPY journal_entries (id, idempotency_key, kind, account_id, memo, actor, front, meta, "
                     "created_at) FROM STDIN", ((e, f"opening:{a}", "opening", a, "opening balance", "bench", "system",
                                                 "{}", now) for e, a in zip(entry_ids, account_ids)))
        copy_rows(s, "COPY postings (entry_id, ledger_account_id, amount_fen) FROM STDIN", (
            row for e, w in zip(entry_ids, wallet_ids) for row in ((e, w, OPENING_FEN), (e, equity.id, -OPENING_FEN))))
        meter_ids = next_ids(s, "meters", n + rules)
        copy_rows(s, "COPY meters (id, serial, site_id, room_id, account_id, kind, profile, address, ct_ratio, "
                     "tariff_plan_id, status, online, consecutive_failures, relay_state, valve_state, keep_power, "
                     "live, installed_at) FROM STDIN", (
                         (m, f"BME{i:06d}" if i < n else f"BME-COMMON{i - n}", site.id, room_ids[i],
                          account_ids[i] if i < n else None, "electricity", "acrel-ddsy1352", str(i % 247 + 1), 1,
                          None if i < n else master_plan.id, "active", False, 0, "unknown", "unknown", False, "{}", now)
                         for i, m in enumerate(meter_ids)))
        # a month of billed usage for the postpaid half: two readings and one interval each
        post = [i for i in range(n) if postpaid[i]]
        reading_ids = next_ids(s, "readings", 2 * len(post))
        start, end = _at("2026-01-01 00:00"), _at("2026-01-31 12:00")
        totals = [Decimal(rnd.randint(1000, 60000)) / 100 for _ in post]
        copy_rows(s, "COPY readings (id, meter_id, taken_at, total, source, status, created_at) FROM STDIN", (
            row for k, i in enumerate(post) for row in (
                (reading_ids[2 * k], meter_ids[i], start, Decimal(0), "import", "ok", now),
                (reading_ids[2 * k + 1], meter_ids[i], end, totals[k], "import", "ok", now))))
        copy_rows(s, "COPY billed_usage (meter_id, account_id, billing_mode, from_reading_id, to_reading_id, "
                     "started_at, ended_at, quantity, amount, amount_fen, lines, plan_id, created_at) FROM STDIN", (
                         (meter_ids[i], account_ids[i], "postpaid", reading_ids[2 * k], reading_ids[2 * k + 1], start,
                          end, totals[k], totals[k] * Decimal("0.6"), int((totals[k] * 60).to_integral_value()),
                          json.dumps([{"quantity": str(totals[k]), "price": "0.6",
                                       "amount": str(totals[k] * Decimal("0.6"))}]), plan.id, now)
                         for k, i in enumerate(post)))
        s.flush()
        for spec in SCHEMES:
            add_scheme(s, site.id, spec, actor="bench")
    # master meters: readings covering the month, billed by billing itself (one batch per time: a
    # batch bills a meter's readings as one interval)
    times = ("2025-12-31 23:00", "2026-01-16 08:00", "2026-01-31 22:00", "2026-02-01 01:00")
    steps = [Decimal(0), Decimal("1000.00"), Decimal("5000.00"), Decimal("9000.00")]
    bases = [Decimal(rnd.randint(0, 10000)) + Decimal(rnd.randint(0, 99)) / 100 for _ in range(rules)]
    for when, step in zip(times, steps):
        with session_scope() as s:
            ingest_batch(s, [RawReading(meter_ids[n + r], _at(when), bases[r] + step + Decimal(r))
                             for r in range(rules)])
    with session_scope() as s:  # the rollups of the usage and readings written by COPY above
        from core.reports.derive import rebuild
        rebuild(s)
    with session_scope() as s:
        for r in range(rules):
            rooms = [f"R{(r * rule_size + k) % n:06d}" for k in range(min(rule_size, n))]
            basis = BASES[r % len(BASES)]
            accounts: object = ({room: 1 + (k % 3) for k, room in enumerate(rooms)} if basis == "ratio" else rooms)
            add_rule(s, site.id, {"name": f"公区 {r + 1}", "master": f"BME-COMMON{r}", "basis": basis,
                                  "accounts": accounts, "mode": "deduct" if r % 2 == 0 else "bill"}, actor="bench")
    return name


def copy_baseline(entries: int) -> float:
    """Seconds to COPY ``entries`` journal entries and two postings each into tables shaped like
    ``journal_entries`` and ``postings`` (their indexes and unique key included), in one transaction."""
    from sqlalchemy import text

    from core.db import get_engine
    with get_engine().begin() as conn:
        conn.execute(text("CREATE TABLE bench_entries (LIKE journal_entries INCLUDING DEFAULTS INCLUDING INDEXES)"))
        conn.execute(text("CREATE TABLE bench_postings (LIKE postings INCLUDING DEFAULTS INCLUDING INDEXES)"))
    now = datetime.now(TZ).isoformat()
    t0 = time.perf_counter()
    with get_engine().begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            with cur.copy("COPY bench_entries (id, idempotency_key, kind, account_id, memo, actor, front, meta, "
                          "created_at) FROM STDIN") as copy:
                for k in range(entries):
                    copy.write(f"{k + 1}\tcharge:1:{k}:{PERIOD}\tcharge\t{k}\tcharge {PERIOD}\tbench\tjob\t"
                               f'{{"period": "{PERIOD}"}}\t{now}\n')
            with cur.copy("COPY bench_postings (id, entry_id, ledger_account_id, amount_fen) FROM STDIN") as copy:
                for k in range(entries):
                    copy.write(f"{2 * k + 1}\t{k + 1}\t{k}\t-100\n{2 * k + 2}\t{k + 1}\t1\t100\n")
    elapsed = time.perf_counter() - t0
    with get_engine().begin() as conn:
        conn.execute(text("DROP TABLE bench_entries; DROP TABLE bench_postings"))
    return elapsed


def child(site: str, lines: bool = False) -> None:
    """In the child process: the run of ``site``'s January, listeners muted; one JSON line out.
    ``lines``: also build the result's line per item (what ``meterpay month-end --json`` prints;
    the scheduled run does without)."""
    from core import signals
    from core.db import session_scope
    from core.models.site import site_named
    from core.monthend.run import run_month_end
    for event in ("balance_changed",):
        for fn in list(signals._listeners.get(event, ())):
            signals.disconnect(event, fn)
    with session_scope() as s:
        site_id = site_named(s, site).id
    t0 = time.perf_counter()
    result = run_month_end(site_id, PERIOD, actor="bench", front="cli", with_lines=lines)
    elapsed = time.perf_counter() - t0
    print(json.dumps({"seconds": round(elapsed, 3), "entries": result.entries, "items": result.items,
                      "lines": len(result.lines), "charges_fen": result.charges_fen,
                      "apportioned_fen": result.apportioned_fen, "bills": result.bills,
                      "problems": len(result.problems),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def _run_child(site: str, env: dict, lines: bool = False) -> dict:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", f"from bench.monthend import child; child({site!r}, {lines!r})"],
                         env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise click.ClickException(f"the month-end run failed: {out.stderr.strip()[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = round(wall, 3)
    return result


@click.command("month-end")
@click.option("--accounts", "n", type=click.IntRange(min=2), default=100_000, show_default=True)
@click.option("--rules", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--rule-size", type=click.IntRange(min=1), default=5000, show_default=True,
              help="rooms per apportionment rule")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print only the JSON result")
@friendly_errors
def bench_month_end(n: int, rules: int, rule_size: int, seed: int, as_json: bool) -> None:
    """A whole month-end run of one big site, its re-run, and a COPY of as many entries."""
    from core.config import get_settings, reset_settings
    from core.db import reset_engine, session_scope
    from core.ledger.check import validate
    from core.migrate import upgrade
    from core.payments import checks as payment_checks
    from core.reports.check import validate as validate_rollups

    configured = get_settings().database_url
    if not configured.startswith("postgresql"):
        fail("bench month-end needs PostgreSQL (METERPAY_DATABASE_URL)")
    url, drop = scratch_database(configured, "bench_monthend")
    os.environ["METERPAY_DATABASE_URL"] = url
    reset_settings()
    reset_engine()
    say = (lambda *a: None) if as_json else (lambda msg: click.echo(msg, err=True))
    try:
        upgrade(url)
        t0 = time.perf_counter()
        say(f"building a site of {n} accounts, {rules} rules of {rule_size} rooms")
        site = build_site(n, rules, rule_size, seed)
        say(f"built in {time.perf_counter() - t0:.1f} s")
        env = {**os.environ, "METERPAY_DATABASE_URL": url}
        first = _run_child(site, env)
        say(f"run: {first['seconds']} s ({first['entries']} entries, {first['items']} items), "
            f"peak {first['peak_rss_mb']} MB")
        second = _run_child(site, env)
        say(f"re-run: {second['seconds']} s ({second['entries']} entries)")
        third = _run_child(site, env, lines=True)
        say(f"re-run with a line per item (as `meterpay month-end --json`): {third['seconds']} s, "
            f"{third['lines']} lines, peak {third['peak_rss_mb']} MB")
        copy_s = copy_baseline(first["entries"])
        say(f"COPY of {first['entries']} entries: {copy_s:.2f} s")
        with session_scope() as s:
            problems = validate(s) + payment_checks.validate(s) + validate_rollups(s)
        result = {
            "database": "postgresql", "accounts": n, "rules": rules, "rule_size": rule_size, "period": PERIOD,
            "run": first, "rerun": second, "rerun_with_lines": third, "copy_seconds": round(copy_s, 3),
            "run_vs_copy": round(first["seconds"] / copy_s, 2) if copy_s else None,
            "rerun_vs_copy": round(second["seconds"] / copy_s, 2) if copy_s else None,
            "ledger_problems": len(problems),
            "targets_met": {"run_under_60s": first["seconds"] < 60, "peak_under_500mb": first["peak_rss_mb"] < 500,
                            "rerun_under_10s": second["seconds"] < 10, "rerun_no_entries": second["entries"] == 0},
            "note": "bills step: core.bills.generate as in this tree (a placeholder before the bills branch)",
        }
        if problems:
            result["ledger_problem_sample"] = [str(p) for p in problems[:5]]
        click.echo(json.dumps(result))
        if problems or second["entries"] or third["entries"]:
            raise SystemExit(1)
    finally:
        drop()
        os.environ["METERPAY_DATABASE_URL"] = configured
        reset_settings()
        reset_engine()
