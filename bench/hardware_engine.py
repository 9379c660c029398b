"""Benchmarks of the hardware path against the physical bound of an RS485 bus.

``poll_round``: one poll round over G gateways x K meters served by ``meterpay simulate`` in a
separate process. The bound is what one bus needs for its K meters: the sum of each request
and reply on the wire at the given baud plus the meter's turnaround (``wire_time``). Gateways
run in parallel, so a perfect poller finishes the round in one bus's time; the ratio says how
close we get.

``command_burst``: N relay commands through the outbox (rows, executor, read-back) spread over
G gateways, against the bound of the busiest bus.
"""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager

from hardware import profiles
from hardware.simulator.build import meter_address
from hardware.simulator.bus import wire_time


def _cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def simulator_process(gateways: int, per_gateway: int, port_base: int, baud: int, turnaround_ms: float,
                      protocol: str = "modbus-rtu", profile: str = "acrel-ddsy1352"):
    cmd = [sys.executable, "-c", "from meterpay.cli import main; main()", "simulate", "--gateways", str(gateways),
           "--meters-per-gateway", str(per_gateway), "--port-base", str(port_base), "--baud", str(baud),
           "--turnaround-ms", str(turnaround_ms), "--protocol", protocol, "--profile", profile]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        last = port_base + gateways - 1
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"simulator exited: {proc.stderr.read().decode()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", last), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("simulator did not start within 60s") from None
                time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def modbus_exchange_bytes(profile_name: str) -> list[tuple[int, int]]:
    """(request bytes, reply bytes) of every exchange one read of the profile makes (FC 03H, RTU)."""
    return [(8, 5 + 2 * count) for _start, count in profiles.get(profile_name).requests()]


def poll_round(gateways: int = 200, per_gateway: int = 32, baud: int = 9600, port_base: int = 17600,
               turnaround_ms: float = 5.0, profile: str = "acrel-ddsy1352", rounds: int = 1) -> dict:
    from hardware.poller import Target, read_all
    exchanges = modbus_exchange_bytes(profile)
    per_meter = sum(wire_time(q, r, baud, turnaround_ms / 1000) for q, r in exchanges)
    bound = per_meter * per_gateway
    targets = [Target(g * per_gateway + k, profile, meter_address("modbus-rtu", k + 1),
                      f"tcp://127.0.0.1:{port_base + g}", "modbus-rtu")
               for g in range(gateways) for k in range(per_gateway)]
    runs = []
    with simulator_process(gateways, per_gateway, port_base, baud, turnaround_ms, profile=profile) as proc:
        for _ in range(rounds):
            sim_cpu0, cpu0, t0 = _cpu_of(proc.pid), time.process_time(), time.perf_counter()
            results, stats = asyncio.run(read_all(targets))
            wall = time.perf_counter() - t0
            runs.append({"round_s": round(wall, 3), "ratio": round(wall / bound, 3),
                         "poller_cpu_s": round(time.process_time() - cpu0, 3),
                         "simulator_cpu_s": round(_cpu_of(proc.pid) - sim_cpu0, 3),
                         "ok": sum(1 for r in results if r.values is not None),
                         "failed": sum(1 for r in results if r.values is None), "link": stats.as_dict()})
    best = min(runs, key=lambda r: r["round_s"])
    return {"benchmark": "poll", "stored": False, "gateways": gateways, "meters_per_gateway": per_gateway, "baud": baud,
            "turnaround_ms": turnaround_ms, "profile": profile, "exchanges_per_meter": len(exchanges),
            "bound_s": round(bound, 3), "target_ratio": 1.3, **best, "runs": runs}


def command_burst(commands: int = 1000, gateways: int = 100, baud: int = 9600, port_base: int = 17900,
                  turnaround_ms: float = 5.0, workers: int = 1, database_url: str | None = None,
                  batch: int = 1000) -> dict:
    """Relay-off commands through the real outbox and executor; SQLite scratch DB unless told."""
    from concurrent.futures import ThreadPoolExecutor

    from core.config import reset_settings
    from core.db import reset_engine, session_scope
    from core.migrate import upgrade

    per_gateway = -(-commands // gateways)
    tmp = None
    if database_url is None:
        tmp = tempfile.mkdtemp(prefix="meterpay-bench-")
        database_url = f"sqlite:///{tmp}/bench.db"
    os.environ["METERPAY_DATABASE_URL"] = database_url
    reset_settings()
    reset_engine()
    upgrade(database_url)
    profile = "acrel-ddsy1352"
    # one command = relay write (FC 10H: 13 + 8 bytes) + the profile's read-back
    per_cmd = wire_time(13, 8, baud, turnaround_ms / 1000) + sum(
        wire_time(q, r, baud, turnaround_ms / 1000) for q, r in modbus_exchange_bytes(profile))
    bound = per_cmd * per_gateway

    from core.models import Gateway, Meter, Site
    from core.supply import commands as outbox
    from hardware import executor

    stamp = int(time.time())
    with session_scope() as s:
        site = Site(name=f"bench-{stamp}", settings={})
        s.add(site)
        s.flush()
        ids = []
        for g in range(gateways):
            url = f"tcp://127.0.0.1:{port_base + g}"
            gw = Gateway(site_id=site.id, name=f"bench-{stamp}-{g}", url=url, protocol="modbus-rtu")
            s.add(gw)
            s.flush()
            for k in range(per_gateway):
                if len(ids) >= commands:
                    break
                m = Meter(serial=f"bench-{stamp}-{g}-{k}", site_id=site.id, gateway_id=gw.id, kind="electricity",
                          profile=profile, address=meter_address("modbus-rtu", k + 1))
                s.add(m)
                s.flush()
                ids.append(m.id)
        cmd_ids = [outbox.request(s, mid, "relay_off", {"reason": "bench"}, enqueue=False).id for mid in ids]
    # jobs of ``batch`` commands (retry_due enqueues executor.execute_many in batches the same
    # way), run by ``workers`` threads standing in for RQ workers
    jobs = [cmd_ids[i:i + batch] for i in range(0, len(cmd_ids), batch)]
    with simulator_process(gateways, per_gateway, port_base, baud, turnaround_ms, profile=profile) as proc:
        sim_cpu0, cpu0, t0 = _cpu_of(proc.pid), time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(max_workers=workers) as pool:
            runs = list(pool.map(executor.run_batch, jobs))
        states = [st for run, _t in runs for st in run]
        phases = {k: round(max(t[k] for _r, t in runs), 3) for k in ("claim_s", "attempts_s", "finish_s")}
        wall = time.perf_counter() - t0
        cpu, sim_cpu = time.process_time() - cpu0, _cpu_of(proc.pid) - sim_cpu0
    return {"benchmark": "commands", "commands": len(cmd_ids), "gateways": gateways, "baud": baud,
            "mode": "in-process", "threads": workers, "batch": batch, "database": database_url.split(":", 1)[0],
            "bound_s": round(bound, 3),
            "total_s": round(wall, 3), "ratio": round(wall / bound, 3), "executor_cpu_s": round(cpu, 3),
            "simulator_cpu_s": round(sim_cpu, 3), "phases_max": phases,
            "attempts_ratio": round(phases["attempts_s"] / bound, 3), "confirmed": states.count("confirmed"),
            "other": len(states) - states.count("confirmed")}


def poll_round_stored(gateways: int = 200, per_gateway: int = 32, baud: int = 9600, port_base: int = 17600,
                      turnaround_ms: float = 5.0, rounds: int = 1, database_url: str | None = None) -> dict:
    """The poller's whole round (``hardware.poller.poll``): read every meter, then store live values,
    availability and readings through ``core.billing.ingest``, in a scratch database."""
    from core.models import Gateway, Meter, Site
    from hardware import poller
    profile = "acrel-ddsy1352"
    per_meter = sum(wire_time(q, r, baud, turnaround_ms / 1000) for q, r in modbus_exchange_bytes(profile))
    bound = per_meter * per_gateway
    _scratch_db(database_url)
    from core.db import session_scope
    stamp = int(time.time())
    with session_scope() as s:
        site = Site(name=f"bench-poll-{stamp}", settings={})
        s.add(site)
        s.flush()
        for g in range(gateways):
            gw = Gateway(site_id=site.id, name=f"bench-poll-{stamp}-{g}", url=f"tcp://127.0.0.1:{port_base + g}",
                         protocol="modbus-rtu")
            s.add(gw)
            s.flush()
            s.add_all(Meter(serial=f"bench-poll-{stamp}-{g}-{k}", site_id=site.id, gateway_id=gw.id,
                            kind="electricity", profile=profile, address=meter_address("modbus-rtu", k + 1))
                      for k in range(per_gateway))
        site_id = site.id
    runs = []
    with simulator_process(gateways, per_gateway, port_base, baud, turnaround_ms, profile=profile):
        for _ in range(rounds):
            cpu0 = time.process_time()
            report = poller.poll(site_ids=[site_id])
            runs.append({"round_s": round(report.seconds, 3), "ratio": round(report.seconds / bound, 3),
                         "read_s": round(report.read_seconds, 3), "read_ratio": round(report.read_seconds / bound, 3),
                         "store_s": round(report.store_seconds, 3), "cpu_s": round(time.process_time() - cpu0, 3),
                         "ok": report.ok, "failed": report.failed, "billing": dict(report.billing)})
            time.sleep(1.0)  # readings of the next round get a later taken_at
    best = min(runs, key=lambda r: r["round_s"])
    return {"benchmark": "poll", "stored": True, "database": _db_kind(), "gateways": gateways,
            "meters_per_gateway": per_gateway, "baud": baud, "bound_s": round(bound, 3), **best, "runs": runs}


def _scratch_db(database_url: str | None) -> None:
    from core.config import reset_settings
    from core.db import reset_engine
    from core.migrate import upgrade
    if database_url is None:
        database_url = f"sqlite:///{tempfile.mkdtemp(prefix='meterpay-bench-')}/bench.db"
    os.environ["METERPAY_DATABASE_URL"] = database_url
    reset_settings()
    reset_engine()
    upgrade(database_url)


def _db_kind() -> str:
    from core.config import get_settings
    return get_settings().database_url.split(":", 1)[0]
