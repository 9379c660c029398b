"""The simulator serves what the database holds; one bus answers one request at a time."""
from __future__ import annotations

import asyncio
import socket
import time

import pytest
from sqlalchemy import select

from core.models import Gateway
from core.sites.accounts import MeterSpec
from hardware import field
from hardware.buslock import BusBusy, bus_lock
from hardware.simulator import Simulator, wire_time
from hardware.simulator.build import from_database, generated


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_simulate_from_db_serves_exactly_the_database_gateways_and_meters(session, factory):
    p1, p2 = free_port(), free_port()
    site = factory.site()
    factory.account(room=factory.room(site, building="X"), meters=(MeterSpec(serial="DB-1", profile="acrel-ddsy1352", gateway=f"tcp://127.0.0.1:{p1}",
                                      address="3"),))
    factory.account(meters=(MeterSpec(serial="DB-2", profile="dlt645-2007", gateway=f"tcp://127.0.0.1:{p2}",
                                      address="000000005678"),))
    factory.account(room=factory.room(site, building="Y"), meters=(MeterSpec(serial="DB-3", kind="water", profile="modbus-valve-water",
                                      gateway=f"tcp://127.0.0.1:{p1}", address="4"),))
    gws = from_database()
    assert sorted((g.port, g.protocol, sorted(g.meters)) for g in gws) == sorted(
        [(p1, "modbus-rtu", ["3", "4"]), (p2, "dlt645", ["000000005678"])])
    sim = Simulator(gws).start_in_thread()
    try:
        assert field.read(f"tcp://127.0.0.1:{p1}", "modbus-rtu", "3").relay == "on"
        assert field.read(f"tcp://127.0.0.1:{p1}", "modbus-rtu", "4", "modbus-valve-water").valve == "open"
        assert field.read(f"tcp://127.0.0.1:{p2}", "dlt645", "000000005678").purchase_count >= 1
    finally:
        sim.stop_thread()
    assert {g.url for g in session.scalars(select(Gateway))} == {f"tcp://127.0.0.1:{p1}", f"tcp://127.0.0.1:{p2}"}


def test_simulate_cli_needs_a_size_or_from_db():
    from click.testing import CliRunner

    from meterpay.cli import cli
    res = CliRunner().invoke(cli, ["simulate", "--gateways", "2"])
    assert res.exit_code != 0 and "--from-db" in res.output
    res = CliRunner().invoke(cli, ["simulate", "--gateways", "1", "--meters-per-gateway", "300", "--port-base", "1"])
    assert res.exit_code != 0 and "247" in res.output


def test_generated_meters_start_plausible_and_consume_unless_tripped():
    gws = generated(1, 3, 0, protocol="modbus-rtu", speed=3600)
    meters = list(gws[0].meters.values())
    assert all(800 <= m.total_kwh <= 6000 for m in meters)
    a, b = meters[0], meters[1]
    b.relay_on = False
    a0, b0 = a.total_kwh, b.total_kwh
    time.sleep(0.2)
    a.advance(), b.advance()
    assert a.total_kwh > a0 and b.total_kwh == b0


def test_a_reply_takes_its_serial_time_on_the_bus(simulator):
    gw = simulator("modbus-rtu", [("acrel-ddsy1352", "1")], baud=2400, turnaround=0.0)
    field.read(gw.url, "modbus-rtu", "1")  # warm up
    t = time.perf_counter()
    field.read(gw.url, "modbus-rtu", "1")
    took = time.perf_counter() - t
    bound = wire_time(8, 39, 2400, 0) + wire_time(8, 9, 2400, 0)
    assert took >= bound * 0.95


def test_two_clients_on_one_gateway_are_served_one_request_at_a_time(simulator):
    gw = simulator("modbus-rtu", [("acrel-ddsy1352", "1"), ("acrel-ddsy1352", "2")], baud=2400, turnaround=0.0)
    one = wire_time(8, 39, 2400, 0) + wire_time(8, 9, 2400, 0)
    from concurrent.futures import ThreadPoolExecutor
    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda a: field.read(gw.url, "modbus-rtu", a), ["1", "2"]))
    assert time.perf_counter() - t >= 2 * one * 0.95


def _hold_twice(url: str, hold: float) -> list[tuple[float, float]]:
    spans = []

    async def holder():
        async with bus_lock(url):
            start = time.monotonic()
            await asyncio.sleep(hold)
            spans.append((start, time.monotonic()))

    async def both():
        await asyncio.gather(holder(), holder())
    asyncio.run(both())
    return spans


def test_the_in_process_bus_lock_serializes_one_gateway():
    (a0, a1), (b0, b1) = sorted(_hold_twice("tcp://10.0.0.1:1", 0.1))
    assert b0 >= a1


def test_the_redis_bus_lock_serializes_one_gateway_across_processes(redis_url):
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        spans = sorted(s for r in pool.starmap(_hold_in_process, [(redis_url, 0.3)] * 2) for s in r)
    (a0, a1), (b0, b1) = spans
    assert b0 >= a1 - 0.01


def _hold_in_process(redis_url: str, hold: float):
    import os
    import time as t
    os.environ["METERPAY_REDIS_URL"] = redis_url
    from core.config import reset_settings
    reset_settings()

    async def one():
        async with bus_lock("tcp://10.0.0.9:502"):
            start = t.time()
            await asyncio.sleep(hold)
            return start, t.time()
    return [asyncio.run(one())]


def test_different_gateways_do_not_wait_for_each_other(redis_url):
    async def main():
        async def hold(url):
            async with bus_lock(url):
                await asyncio.sleep(0.2)
        t = time.monotonic()
        await asyncio.gather(hold("tcp://10.0.0.1:1"), hold("tcp://10.0.0.2:1"))
        return time.monotonic() - t
    assert asyncio.run(main()) < 0.35


def test_a_round_of_more_gateways_than_redis_connections_takes_every_bus_lock(redis_url):
    """One poll shard reads hundreds of gateways at once: the bus locks share a bounded pool of
    Redis connections and wait for a free one (redis-py's own pool raised "Too many connections"
    past 100 and failed the whole shard)."""
    async def main():
        async def hold(url):
            async with bus_lock(url):
                await asyncio.sleep(0.05)
        await asyncio.gather(*(hold(f"tcp://10.1.{i // 250}.{i % 250}:1") for i in range(300)))
    asyncio.run(main())


def test_a_bus_held_too_long_is_a_clear_error(redis_url):
    async def main():
        async with bus_lock("tcp://10.0.0.3:1"):
            with pytest.raises(BusBusy, match="stayed busy"):
                async with bus_lock("tcp://10.0.0.3:1", wait=0.1):
                    pass
    asyncio.run(main())


def _run(*args, timeout=60):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-c", "from meterpay.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_meterpay_simulate_serves_every_protocol_on_its_ports():
    import json
    import subprocess
    import sys
    base = free_port()
    while True:  # two consecutive free ports
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", base))
                b.bind(("127.0.0.1", base + 1))
            break
        except OSError:
            base = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from meterpay.cli import main; main()", "simulate",
                             "--gateways", "2", "--meters-per-gateway", "3", "--port-base", str(base)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", base + 1), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        gw = f"tcp://127.0.0.1:{base + 1}"
        out = _run("meter", "read", "--gateway", gw, "--protocol", "modbus-rtu", "--address", "3", "--profile",
                   "acrel-ddsy1352", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["relay"] == "on"
        out = _run("meter", "read", "--gateway", gw, "--protocol", "modbus-tcp", "--address", "2", "--json")
        assert out.returncode == 0 and "total_kwh" in json.loads(out.stdout), out.stderr
        out = _run("meter", "recharge", "--gateway", gw, "--protocol", "dlt645", "--address", "000000000001",
                   "--profile", "dlt645-2007", "--amount", "50.00", "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["confirmed"] is True, out.stderr
        out = _run("meter", "valve", "--gateway", gw, "--protocol", "cjt188", "--address", "00000000000002",
                   "--profile", "cjt188-water", "close", "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["values"]["valve"] == "closed", out.stderr
        out = _run("meter", "relay", "--gateway", f"tcp://127.0.0.1:{base}", "--protocol", "dlt645",
                   "--address", "1", "off", "--json")
        assert out.returncode == 0 and json.loads(out.stdout)["values"]["relay"] == "off", out.stderr
        out = _run("meter", "read", "--gateway", gw, "--protocol", "dlt645", "--address", "000000000009", "--json",
                   "--timeout", "0.3")
        assert out.returncode != 0 and out.stderr.startswith("error: ") and "Traceback" not in out.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_redis_bus_lock_works_across_many_event_loops(redis_url):
    async def once():
        async with bus_lock("tcp://10.0.0.4:1"):
            return True
    assert all(asyncio.run(once()) for _ in range(20))


def test_simulate_from_db_resumes_registers_relays_and_balance(session, factory):
    """A restarted ``simulate --from-db`` carries on where the meters were (issue 14, item 6)."""
    from datetime import UTC, datetime, timedelta
    from decimal import Decimal

    from core import billing
    from core.models import Meter, MeterCommand, MeterEvent, Reading
    from hardware import poller

    p1, p2, p3 = free_port(), free_port(), free_port()
    site = factory.site()

    def meter(serial, mode="prepaid-platform", **spec):
        acct = factory.account(room=factory.room(site, building=serial), meters=(MeterSpec(serial=serial, **spec),),
                               billing_mode=mode, balance_fen=100000)
        return session.query(Meter).filter_by(account_id=acct.id).one()

    acrel = meter("R-ACREL", profile="acrel-ddsy1352", gateway=f"tcp://127.0.0.1:{p1}", address="3")
    water = meter("R-WATER", kind="water", profile="modbus-valve-water", gateway=f"tcp://127.0.0.1:{p1}",
                  address="4")
    dlt = meter("R-DLT", mode="prepaid-meter", profile="dlt645-2007", gateway=f"tcp://127.0.0.1:{p2}", address="000000005678")
    cjt = meter("R-CJT", kind="water", profile="cjt188-water", gateway=f"tcp://127.0.0.1:{p3}",
                address="00000000000009")
    t0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    # registers far above anything a fresh simulator starts with (800-6000 kWh, 10-400 m3)
    billing.ingest(session, acrel.id, t0, Decimal("9000.00"), {"sharp": Decimal("450.00"),
                                                                "peak": Decimal("2970.00"),
                                                                "flat": Decimal("3330.01"),
                                                                "valley": Decimal("2249.99")})
    billing.ingest(session, acrel.id, t0 + timedelta(hours=1), Decimal("9012.34"),
                   {"sharp": Decimal("450.00"), "peak": Decimal("2975.00"), "flat": Decimal("3335.00"),
                    "valley": Decimal("2252.34")})
    billing.ingest(session, dlt.id, t0, Decimal("7777.77"))
    billing.ingest(session, water.id, t0, Decimal("654.321"))
    billing.ingest(session, cjt.id, t0, Decimal("555.55"))
    # confirmed commands: the Acrel and CJ/T 188 meters were cut; the mirror still says on/open
    # (the value a poll read before the cut would have left there)
    for m, kind in ((acrel, "relay_off"), (cjt, "valve_close"), (water, "valve_close"), (water, "valve_open")):
        session.add(MeterCommand(meter_id=m.id, kind=kind, state="confirmed", idempotency_key=f"t:{m.id}:{kind}",
                                 deadline=t0 + timedelta(days=1), finished_at=t0 + timedelta(minutes=1)))
        session.flush()
    acrel.relay_state, cjt.valve_state = "on", "open"
    dlt.remaining_fen, dlt.purchase_count, dlt.relay_state = 4321, 37, "on"
    session.commit()

    gws = {g.port: g for g in from_database()}
    sim_acrel, sim_water = gws[p1].meter("3"), gws[p1].meter("4")
    sim_dlt, sim_cjt = gws[p2].meter("000000005678"), gws[p3].meter("00000000000009")
    assert int(sim_acrel.total_kwh * 100) >= 901234
    assert {p: int(sim_acrel.kwh[p] * 100) for p in sim_acrel.kwh} == {
        "sharp": 45000, "peak": 297500, "flat": 333500, "valley": 225234}
    assert sim_acrel.relay_on is False and sim_cjt.valve_open is False and sim_water.valve_open is True
    assert int(sim_dlt.total_kwh * 100) == 777777 and sim_dlt.relay_on is True
    assert (sim_dlt.balance_fen, sim_dlt.purchase_count) == (4321, 37)
    assert int(sim_water.m3 * 1000) == 654321 and int(sim_cjt.m3 * 100) == 55555

    sim = Simulator(list(gws.values())).start_in_thread()
    try:
        report = poller.poll(meter_ids=[acrel.id, water.id, dlt.id, cjt.id])
    finally:
        sim.stop_thread()
    session.expire_all()
    assert report.as_dict()["ok"] == 4, report.as_dict()
    assert session.scalars(select(Reading).where(Reading.status != "ok")).all() == []
    assert session.scalars(select(MeterEvent).where(MeterEvent.kind == "reading_anomaly")).all() == []
    assert session.get(Meter, acrel.id).relay_state == "off"
    assert session.get(Meter, cjt.id).valve_state == "closed"
    got = session.get(Meter, dlt.id)
    assert got.purchase_count == 37 and abs(got.remaining_fen - 4321) < 100
