"""``meterpay bench billing``: readings per second end to end, against a raw COPY of the same rows.

Builds a site of N meters (default 5,000) on a scratch database next to the configured one
(PostgreSQL: a new database on the same server, dropped afterwards; SQLite: a temp file), writes
a CSV of R readings per meter (default 40: 200,000 rows), then in the same run:

1. baseline: ``COPY`` the CSV as it is into a table of the same columns with the unique
   (meter, time) index (PostgreSQL only);
2. import: ``core.billing.csv_import.import_csv`` on the same file, as ``meterpay readings import``
   does: parse, store, price, post, chunk by chunk;
3. replay: the same file again (every row a duplicate, nothing moves);

and checks the ledger (``core.ledger.check.validate``). Accounts: 80% prepaid-platform, 10% postpaid,
10% prepaid-meter; plans: 60% flat, 20% tiered (monthly), 20% Guangdong TOU (half of those meters
report per-period registers). Peak memory is the process's maximum resident set size. The other
areas' balance_changed listeners are loaded only with ``--listeners``.
"""
from __future__ import annotations

import csv
import json
import os
import random
import resource
import tempfile
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import click

from bench.common import scratch_database
from meterpay.cli.base import friendly_errors

PLANS = {
    "bench-flat": {"kind": "flat", "unit": "kWh", "price": "0.6"},
    "bench-tiered": {"kind": "tiered", "unit": "kWh", "cycle": "month",
                     "tiers": [{"upto": "240", "price": "0.4883"}, {"upto": "400", "price": "0.5383"},
                               {"upto": None, "price": "0.7883"}]},
    "bench-tou": {"kind": "tou", "unit": "kWh",
                  "prices": {"sharp": "1.275", "peak": "1.02", "flat": "0.6", "valley": "0.228"},
                  "day_tables": {"normal": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"],
                                            ["12:00", "flat"], ["14:00", "peak"], ["19:00", "flat"]],
                                 "summer": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"],
                                            ["11:00", "sharp"], ["12:00", "flat"], ["14:00", "peak"],
                                            ["15:00", "sharp"], ["17:00", "peak"], ["19:00", "flat"]]},
                  "calendar": [{"months": [7, 8, 9], "table": "summer"}], "default_table": "normal"},
}
TOU_PERIODS = ("sharp", "peak", "flat", "valley")
OPENING_FEN = 200_000


def open_wallets(s, account_ids, fen: int = OPENING_FEN) -> None:
    """A wallet per account holding ``fen``, each with its balanced opening entry, in bulk inserts
    (the benchmarks' sites have thousands of accounts; ``core.sites`` opens them one at a time)."""
    from sqlalchemy import insert

    from core import ledger
    from core.models import JournalEntry, LedgerAccount, Posting
    equity = ledger.system_account(s, "equity:opening-balances")
    wallet_ids = s.scalars(insert(LedgerAccount).returning(LedgerAccount.id, sort_by_parameter_order=True),
                           [{"code": f"wallet:{a}", "kind": "wallet", "account_id": a, "balance_fen": fen}
                            for a in account_ids]).all()
    entry_ids = s.scalars(insert(JournalEntry).returning(JournalEntry.id, sort_by_parameter_order=True),
                          [{"idempotency_key": f"opening:{a}", "kind": "opening", "account_id": a,
                            "memo": "opening balance", "meta": {}} for a in account_ids]).all()
    s.execute(insert(Posting), [p for e, w in zip(entry_ids, wallet_ids)
                                for p in ({"entry_id": e, "ledger_account_id": w, "amount_fen": fen},
                                          {"entry_id": e, "ledger_account_id": equity.id, "amount_fen": -fen})])


def _build_site(n_meters: int, seed: int) -> list[tuple[str, str, bool]]:
    """Site, rooms, tenants, accounts with wallets and meters, inserted in bulk.
    Returns (serial, plan name, reports registers) per meter."""
    from sqlalchemy import insert

    from core.db import session_scope, utcnow
    from core.models import Account, Building, Floor, Meter, Room, Site, Tenant
    from core.tariffs.store import add_plan
    rnd = random.Random(seed)
    out = []
    with session_scope() as s:
        site = Site(name=f"Bench campus {uuid.uuid4().hex[:6]}", timezone="Asia/Shanghai", settings={})
        s.add(site)
        s.flush()
        plan_ids = {name: add_plan(s, name, spec, site_id=site.id)[0].id for name, spec in PLANS.items()}
        b = Building(site_id=site.id, name="A")
        s.add(b)
        s.flush()
        f = Floor(building_id=b.id, name="1")
        s.add(f)
        s.flush()
        now = utcnow()
        room_ids = s.scalars(insert(Room).returning(Room.id, sort_by_parameter_order=True),
                             [{"site_id": site.id, "floor_id": f.id, "number": f"R{i:05d}"}
                              for i in range(n_meters)]).all()
        tenant_ids = s.scalars(insert(Tenant).returning(Tenant.id, sort_by_parameter_order=True),
                               [{"site_id": site.id, "name": f"Tenant {i}", "phone": f"139{i:08d}",
                                 "notify_channels": []} for i in range(n_meters)]).all()
        accounts, meters = [], []
        for i in range(n_meters):
            x = rnd.random()
            mode = "prepaid-platform" if x < 0.8 else ("postpaid" if x < 0.9 else "prepaid-meter")
            y = rnd.random()
            plan = "bench-flat" if y < 0.6 else ("bench-tiered" if y < 0.8 else "bench-tou")
            registers = plan == "bench-tou" and rnd.random() < 0.5
            accounts.append({"site_id": site.id, "room_id": room_ids[i], "tenant_id": tenant_ids[i],
                             "billing_mode": mode, "electricity_plan_id": plan_ids[plan], "status": "open",
                             "opened_at": now})
            out.append((f"BENCH{i:06d}", plan, registers))
        account_ids = s.scalars(insert(Account).returning(Account.id, sort_by_parameter_order=True),
                                accounts).all()
        open_wallets(s, account_ids)  # 2,000 yuan each, so no alarm or trip fires
        for i, a in enumerate(account_ids):
            meters.append({"serial": out[i][0], "site_id": site.id, "room_id": room_ids[i], "account_id": a,
                           "kind": "electricity", "profile": "acrel-ddsy1352", "address": str(i % 247 + 1),
                           "ct_ratio": 1})
        s.execute(insert(Meter), meters)
    return out


def _write_csv(path: str, meters: list[tuple[str, str, bool]], per_meter: int, seed: int) -> int:
    """Time-ordered rows, every 15 minutes from 2026-07-01 00:00 +08:00, as a poller export would be."""
    rnd = random.Random(seed)
    tz = ZoneInfo("Asia/Shanghai")
    start = datetime(2026, 7, 1, tzinfo=tz)
    totals = [Decimal(rnd.randint(0, 500_000)) / 100 for _ in meters]
    regs = [[t / 4] * 4 for t in totals]
    rows = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["meter_serial", "taken_at", "total", *TOU_PERIODS])
        for k in range(per_meter):
            at = (start + timedelta(minutes=15 * k)).isoformat()
            for i, (serial, _plan, registers) in enumerate(meters):
                if k:
                    used = Decimal(rnd.randint(0, 300)) / 100
                    totals[i] += used
                    regs[i][rnd.randrange(4)] += used
                w.writerow([serial, at, f"{totals[i]:.2f}",
                            *([f"{v:.2f}" for v in regs[i]] if registers else ["", "", "", ""])])
                rows += 1
    return rows


def _copy_baseline(path: str) -> float:
    """Seconds to COPY the CSV as it is into a table of the same columns with the unique index."""
    from sqlalchemy import text

    from core.db import get_engine
    with get_engine().begin() as conn:
        conn.execute(text("CREATE TABLE bench_raw_readings (meter_serial varchar(64), taken_at timestamptz, "
                          "total numeric(16,3), sharp numeric(16,3), peak numeric(16,3), flat numeric(16,3), "
                          "valley numeric(16,3), UNIQUE (meter_serial, taken_at))"))
    t0 = time.perf_counter()
    with get_engine().begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur, open(path, "rb") as fh:
            with cur.copy("COPY bench_raw_readings FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
                while chunk := fh.read(1 << 20):
                    copy.write(chunk)
    elapsed = time.perf_counter() - t0
    with get_engine().begin() as conn:
        conn.execute(text("DROP TABLE bench_raw_readings"))
    return elapsed


def _mute_listeners() -> dict:
    """Disconnect the listeners the console script loaded (the bench measures billing alone)."""
    from core import signals
    muted = {event: list(signals._listeners.get(event, ())) for event in ("balance_changed", "reading_billed")}
    for event, fns in muted.items():
        for fn in fns:
            signals.disconnect(event, fn)
    return muted


def _restore_listeners(muted: dict) -> None:
    from core import signals
    for event, fns in muted.items():
        for fn in fns:
            signals.on(event)(fn)


@click.command("billing")
@click.option("--meters", "n_meters", type=click.IntRange(min=1), default=5000, show_default=True)
@click.option("--readings", "per_meter", type=click.IntRange(min=2), default=40, show_default=True,
              help="readings per meter")
@click.option("--chunk-size", type=click.IntRange(min=1), default=None,
              help="rows per transaction (default METERPAY_IMPORT_CHUNK, else 250000 on PostgreSQL and 20000 on "
                   "SQLite; a row with registers counts as three)")
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--listeners", "with_listeners", is_flag=True,
              help="also load the other areas' balance_changed listeners (alarms, supply control): one job per "
                   "chunk runs them after the chunk commits, in the background")
@click.option("--json", "as_json", is_flag=True, help="print only the JSON result")
@friendly_errors
def bench_billing(n_meters: int, per_meter: int, chunk_size: int | None, seed: int, with_listeners: bool,
                  as_json: bool) -> None:
    """Import N x R readings end to end and compare with a raw COPY of the same rows."""
    from core import jobs
    from core.billing.csv_import import default_chunk, import_csv
    from core.config import get_settings, reset_settings
    from core.db import reset_engine, session_scope
    from core.ledger.check import validate
    from core.migrate import upgrade
    from core.signals import load_listeners

    chunk = chunk_size or default_chunk()
    muted: dict = {}
    configured = get_settings().database_url
    url, drop = scratch_database(configured, "bench_billing")
    os.environ["METERPAY_DATABASE_URL"] = url
    reset_settings()
    reset_engine()
    say = (lambda *a: None) if as_json else (lambda msg: click.echo(msg, err=True))
    workdir = tempfile.mkdtemp(prefix="mp-bench-csv-")
    path = os.path.join(workdir, "readings.csv")
    try:
        upgrade(url)
        if with_listeners:
            load_listeners()
        else:
            muted = _mute_listeners()
        is_pg = not url.startswith("sqlite")
        say(f"building a site of {n_meters} meters on a scratch {'PostgreSQL' if is_pg else 'SQLite'} database")
        meters = _build_site(n_meters, seed)
        rows = _write_csv(path, meters, per_meter, seed)
        size_mb = os.path.getsize(path) / 1e6
        say(f"wrote {rows} readings ({size_mb:.1f} MB CSV)")
        copy_s = _copy_baseline(path) if is_pg else None
        if copy_s is not None:
            say(f"raw COPY of the same rows: {copy_s:.2f} s ({rows / copy_s:,.0f} rows/s)")
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            summary = import_csv(fh, chunk_size=chunk)
        import_s = time.perf_counter() - t0
        say(f"import (parse, store, price, post): {import_s:.2f} s ({rows / import_s:,.0f} readings/s)")
        # The balance_changed listeners run as one job per chunk (in the background without Redis).
        jobs.wait_idle(timeout=3600)
        followup_s = time.perf_counter() - t0 - import_s
        if with_listeners:
            say(f"listener jobs finished {followup_s:.2f} s after the import")
        t0 = time.perf_counter()
        with open(path, "rb") as fh:
            replay = import_csv(fh, chunk_size=chunk)
        jobs.wait_idle(timeout=3600)
        replay_s = time.perf_counter() - t0
        say(f"replay of the same file (all duplicates): {replay_s:.2f} s")
        with session_scope() as s:
            problems = validate(s)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = {
            "database": "postgresql" if is_pg else "sqlite", "meters": n_meters, "readings": rows,
            "chunk_size": chunk, "import_seconds": round(import_s, 3),
            "readings_per_second": round(rows / import_s), "copy_seconds": None if copy_s is None else round(copy_s, 3),
            "ratio_vs_copy": None if copy_s is None else round(import_s / copy_s, 2),
            "replay_seconds": round(replay_s, 3), "peak_rss_mb": round(peak_mb, 1),
            "accepted": summary.accepted, "duplicates": summary.duplicates, "anomalies": summary.anomalies,
            "billed_amount": summary.as_json()["billed_amount"],
            "replay_duplicates": replay.duplicates, "replay_billed_amount": replay.as_json()["billed_amount"],
            "ledger_problems": len(problems), "listeners": with_listeners,
            "listener_jobs_after_import_seconds": round(followup_s, 3) if with_listeners else None,
        }
        click.echo(json.dumps(result))
        if problems or replay.billed_fen or summary.errors:
            raise SystemExit(1)
    finally:
        if not with_listeners:
            _restore_listeners(muted)
        if os.path.exists(path):
            os.remove(path)
        drop()
        os.environ["METERPAY_DATABASE_URL"] = configured
        reset_settings()
        reset_engine()
