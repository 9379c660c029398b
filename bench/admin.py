"""``meterpay bench monitor``: how long the room monitor of a 5,000-room site takes to render.

Builds a site of N rooms (default 5,000: 10 buildings x 20 floors x 25 rooms; 90% with an open
account and a balance posted through the ledger, every room an electricity meter, one in ten also
a water meter, a spread of online/offline and relay states; balances are balanced opening
entries inserted in bulk) on a scratch database (PostgreSQL:
a new database beside METERPAY_DATABASE_URL, dropped afterwards; otherwise a temp SQLite file).
Then, signed in through the real sign-in form, it times in the same run (median of --repeat;
the slow baseline runs once):

1. ``monitor``: GET /admin/sites/<id>/monitor, the full page (one query for the grid);
2. ``json``: GET /admin/sites/<id>/monitor.json, what the page polls every few seconds;
3. baseline: the same page with the grid loaded the naive way (walk buildings, floors and rooms
   through the ORM and ask each room for its account, wallet and meters: N+1 queries).

It prints one JSON line with the times, the query counts and ``ratio`` = monitor / baseline.
"""
from __future__ import annotations

import json
import os
import random
import re
import statistics
import time

import click

from bench.common import scratch_database
from meterpay.cli.base import friendly_errors


def build_site(session, rooms: int, seed: int = 7):
    """A site of ``rooms`` rooms with accounts, wallets (balances posted via the ledger) and meters."""
    from sqlalchemy import insert

    from core import ledger
    from core.models import Account, Building, Floor, JournalEntry, LedgerAccount, Meter, Posting, Room, Site, Tenant
    from core.sites.managers import create_manager
    rng = random.Random(seed)
    site = Site(name="基准广场", settings={})
    session.add(site)
    session.flush()
    per_floor, floors_per_building = 25, 20
    n = 0
    all_rooms = []
    b = 0
    while n < rooms:
        b += 1
        building = Building(site_id=site.id, name=f"{b}号楼")
        session.add(building)
        session.flush()
        for f in range(1, floors_per_building + 1):
            if n >= rooms:
                break
            floor = Floor(building_id=building.id, name=f"{f}F")
            session.add(floor)
            session.flush()
            for r in range(1, per_floor + 1):
                if n >= rooms:
                    break
                room = Room(site_id=site.id, floor_id=floor.id, number=f"{b}-{f:02d}{r:02d}")
                all_rooms.append(room)
                n += 1
            session.add_all(all_rooms[-per_floor:])
        session.flush()
    tenants, accounts = [], []
    for i, room in enumerate(all_rooms):
        if i % 10 == 9:
            continue
        t = Tenant(site_id=site.id, name=f"租户{i}", phone=f"139{i:08d}")
        tenants.append(t)
        accounts.append((room, t))
    session.add_all(tenants)
    session.flush()
    accts = [Account(site_id=site.id, room_id=room.id, tenant_id=t.id, status="open",
                     keep_power=(i % 97 == 0)) for i, (room, t) in enumerate(accounts)]
    session.add_all(accts)
    session.flush()
    meters = []
    acct_by_room = {a.room_id: a.id for a in accts}
    for i, room in enumerate(all_rooms):
        aid = acct_by_room.get(room.id)
        online = rng.random() < 0.9
        meters.append(Meter(serial=f"E{i:06d}", site_id=site.id, room_id=room.id, account_id=aid, kind="electricity",
                            profile="acrel-ddsy1352", address=str(i % 247 + 1), online=online,
                            relay_state="off" if rng.random() < 0.05 else ("on" if online else "unknown")))
        if i % 10 == 0:
            meters.append(Meter(serial=f"W{i:06d}", site_id=site.id, room_id=room.id, account_id=aid, kind="water",
                                profile="cjt188-water", address=f"{i:014d}", online=online,
                                valve_state="open" if online else "unknown"))
    session.add_all(meters)
    session.flush()
    # Balances: one balanced opening entry per wallet (a few also in arrears after usage), inserted in
    # bulk as core.ledger.post would write them; the cached balance is the sum of the wallet's postings.
    equity = ledger.system_account(session, "equity:opening-balances")
    revenue = ledger.system_account(session, "revenue:electricity")
    amounts = {a.id: rng.choice((50000, 20000, 8000, 3000, 1000, 100)) for a in accts}
    usage = {a.id: 60000 for a in accts[::37]}
    wallet_ids = session.scalars(insert(LedgerAccount).returning(LedgerAccount.id, sort_by_parameter_order=True), [
        {"code": f"wallet:{a.id}", "kind": "wallet", "account_id": a.id,
         "balance_fen": amounts[a.id] - usage.get(a.id, 0)} for a in accts]).all()
    wallet_of = dict(zip([a.id for a in accts], wallet_ids))
    rows = [(f"opening:{aid}", "opening", aid, fen, equity.id) for aid, fen in amounts.items()]
    rows += [(f"bench-usage:{aid}", "consumption", aid, -fen, revenue.id) for aid, fen in usage.items()]
    entry_ids = session.scalars(insert(JournalEntry).returning(JournalEntry.id, sort_by_parameter_order=True), [
        {"idempotency_key": key, "kind": kind, "account_id": aid, "memo": "bench", "meta": {}}
        for key, kind, aid, _fen, _counter in rows]).all()
    session.execute(insert(Posting), [p for eid, (_k, _kind, aid, fen, counter) in zip(entry_ids, rows) for p in (
        {"entry_id": eid, "ledger_account_id": wallet_of[aid], "amount_fen": fen},
        {"entry_id": eid, "ledger_account_id": counter, "amount_fen": -fen})])
    create_manager(session, "bench", "bench-password", all_sites=True, role="admin")
    session.flush()
    from core.ledger.check import validate
    problems = validate(session)
    if problems:
        raise RuntimeError(f"bench site ledger is inconsistent: {problems[:3]}")
    session.commit()
    return site.id, len(all_rooms), len(meters)


def naive_cells(session, site):
    """The grid the slow way (the baseline): one query or more per room."""
    from sqlalchemy import select

    from admin import monitor_data as md
    from core.alarms.status import alarm_levels, fee_status
    from core.models import Account, Meter
    cells = []
    for building in site.buildings:
        for floor in building.floors:
            for room in floor.rooms:
                cell = md.Cell(room.id, room.number, building.name, floor.name)
                account = session.scalar(select(Account).where(Account.room_id == room.id, Account.status == "open"))
                if account is not None:
                    cell.account_id, cell.tenant = account.id, account.tenant.name
                    cell.balance_fen = account.wallet.balance_fen
                    cell.fee = fee_status(cell.balance_fen, alarm_levels(account.alarm_levels, site.settings),
                                          keep_power=account.keep_power)
                for m in session.scalars(select(Meter).where(Meter.room_id == room.id, Meter.status == "active")):
                    cell.meters.append((m.kind, m.online, md._supply_state(m.kind, m.relay_state, m.valve_state)))
                if cell.meters:
                    up = [x[1] for x in cell.meters]
                    cell.online = "online" if all(up) else "offline" if not any(up) else "partial"
                    states = {x[2] for x in cell.meters}
                    cell.supply = states.pop() if len(states) == 1 else "mixed"
                cells.append(cell)
    return sorted(cells, key=lambda c: (md.natural_key(c.building), md.natural_key(c.floor),
                                        md.natural_key(c.number)))


def _timed(fn, repeat: int) -> tuple[float, object]:
    fn()  # warm up (templates compiled, caches filled)
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def _count(engine, fn) -> int:
    from sqlalchemy import event
    n = [0]

    def before(*_a):
        n[0] += 1
    event.listen(engine, "before_cursor_execute", before)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return n[0]


@click.command("monitor")
@click.option("--rooms", type=click.IntRange(min=10), default=5000, show_default=True)
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--database-url", default=None,
              help="server to make the scratch database on (default: METERPAY_DATABASE_URL; SQLite: a temp file)")
@friendly_errors
def bench_monitor(rooms: int, repeat: int, database_url: str | None) -> None:
    """Render time of the room monitor for a site of --rooms rooms vs the naive N+1 baseline."""
    from core.config import get_settings, reset_settings
    from core.db import get_engine, reset_engine, session_scope
    from core.migrate import upgrade
    old = os.environ.get("METERPAY_DATABASE_URL")
    url, drop = scratch_database(database_url or get_settings().database_url, "bench_admin")
    os.environ["METERPAY_DATABASE_URL"] = url
    reset_settings()
    reset_engine()
    try:
        upgrade(url)
        t0 = time.perf_counter()
        with session_scope() as session:
            site_id, n_rooms, n_meters = build_site(session, rooms)
        build_s = time.perf_counter() - t0
        from admin import monitor_data
        from meterpay.app import create_app
        app = create_app({"TESTING": True})
        client = app.test_client()
        page = client.get("/admin/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        client.post("/admin/login", data={"username": "bench", "password": "bench-password", "csrf_token": token})

        def get(path):
            resp = client.get(path)
            assert resp.status_code == 200, resp.status_code
            return resp.data
        html_url, json_url = f"/admin/sites/{site_id}/monitor", f"/admin/sites/{site_id}/monitor.json"
        html_ms, html = _timed(lambda: get(html_url), repeat)
        json_ms, body = _timed(lambda: get(json_url), repeat)
        engine = get_engine()
        q_monitor = _count(engine, lambda: get(html_url))
        fast = monitor_data.site_cells
        monitor_data.site_cells = naive_cells
        try:
            # The baseline is slow: timed once (templates are warm already), counting its queries meanwhile.
            t0 = time.perf_counter()
            q_base = _count(engine, lambda: get(html_url))
            base_ms = (time.perf_counter() - t0) * 1000
        finally:
            monitor_data.site_cells = fast
        result = {
            "rooms": n_rooms, "meters": n_meters, "database": engine.dialect.name, "repeat": repeat,
            "monitor_ms": round(html_ms, 1), "monitor_json_ms": round(json_ms, 1),
            "baseline_n_plus_1_ms": round(base_ms, 1), "ratio": round(html_ms / base_ms, 3),
            "queries_monitor": q_monitor, "queries_baseline": q_base,
            "html_bytes": len(html), "json_bytes": len(body), "build_s": round(build_s, 1),
        }
        click.echo(json.dumps(result))
    finally:
        reset_engine()
        drop()
        if old is None:
            os.environ.pop("METERPAY_DATABASE_URL", None)
        else:
            os.environ["METERPAY_DATABASE_URL"] = old
        reset_settings()
