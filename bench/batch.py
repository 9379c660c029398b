"""``meterpay bench batch``: batch tasks end to end against the RS485 wire bound.

Two tasks over the same rooms, ``relay_off`` and ``set_meter_prices`` (N items each), on G
simulated DL/T 645 gateways at the given baud (``meterpay simulate`` in its own process), driven by
``--engines`` batch engines in worker processes of their own, each driving both tasks on its share
of the gateways (``hardware.batch_engine.drive_tasks(shard=...)``: one lane per gateway carries both
tasks' commands), with the bus lock in Redis when one is given (as production runs several workers).

- **Bound**: the frames one relay command and one price setting put on the wire (request, reply,
  turnaround, read-back included) are measured on a one-meter simulator with the same profile and
  baud; a bus must carry its share of both tasks, so the bound is the busiest bus's sum. Gateways
  work in parallel, so a perfect engine ends in that time; ``ratio`` = end to end / bound.
- **Latency**: half-way through (by confirmed items), one single relay command to a meter on the
  first gateway (not in the tasks) goes through the outbox and the executor as a manager's click
  does; its time from request to confirmed is reported.
- **Memory**: each engine process reports its peak resident memory (``ru_maxrss``); **CPU**: the
  engine's, the simulator's, the scratch database's PostgreSQL backends' and Redis's CPU seconds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import click

from meterpay.cli.base import friendly_errors, print_json

ENGINE = r"""
import json, resource, sys
shard = (int(sys.argv[1]), int(sys.argv[2]))
tasks = [int(t) for t in sys.argv[3:]]
from hardware import batch_engine
from core.db import get_engine
get_engine()
sys.stdout.write("ready\n"); sys.stdout.flush()
sys.stdin.readline()
stats = batch_engine.drive_tasks(tasks, shard=shard)
ru = resource.getrusage(resource.RUSAGE_SELF)
stats["max_rss_mb"] = round(ru.ru_maxrss / 1024, 1)
stats["cpu_s"] = round(ru.ru_utime + ru.ru_stime, 2)
sys.stdout.write(json.dumps(stats) + "\n")
"""


ENGINE_STATS = ("tasks", "fed", "attempts", "confirmed", "failed", "expired", "feed_s", "claim_s", "finish_s",
                "finishes", "cpu_s", "lanes_cpu_s", "finisher_cpu_s", "main_cpu_s")


@click.command("batch")
@click.option("--rooms", type=int, default=10000, show_default=True, help="items per task")
@click.option("--gateways", type=int, default=200, show_default=True)
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--turnaround-ms", type=float, default=5.0, show_default=True)
@click.option("--port-base", type=int, default=18300, show_default=True)
@click.option("--database-url", default=None,
              help="a scratch database is made beside it (default: METERPAY_DATABASE_URL if PostgreSQL, else SQLite)")
@click.option("--redis-url", default=None, help="bus locks in Redis (default: METERPAY_REDIS_URL, else per process)")
@click.option("--engines", type=int, default=2, show_default=True,
              help="engine processes, each driving both tasks on its share of the gateways")
@click.option("--no-probe", is_flag=True, help="skip the single command sent half-way")
@friendly_errors
def bench_batch(rooms, gateways, baud, turnaround_ms, port_base, database_url, redis_url, engines, no_probe):
    """relay_off + set_meter_prices over ROOMS rooms on G gateways vs the wire bound (target <= 1.3x)."""
    print_json(run(rooms, gateways, baud, turnaround_ms, port_base, database_url, redis_url, probe=not no_probe,
                   engines=engines))


def wire_per_command(baud: int, turnaround_ms: float) -> dict[str, float]:
    """Seconds of wire one relay_off and one set_prices (4 periods) take with their read-back,
    measured on a one-meter simulator (the simulator adds up each exchange's wire time)."""
    import asyncio

    from hardware import profiles
    from hardware.simulator import SimGateway, Simulator, make_meter
    from hardware.simulator.meters import SimClock
    from hardware.transports import open_link
    gw = SimGateway(0, "dlt645", [make_meter("dlt645-2007", "000000000001", SimClock(1.0))], baud=baud,
                    turnaround=turnaround_ms / 1000)
    sim = Simulator([gw]).start_in_thread()
    profile = profiles.get("dlt645-2007")
    out = {}
    try:
        for kind, params in (("relay_off", {}), ("set_prices", PRICES)):
            async def one(kind=kind, params=params):
                link = open_link(f"tcp://127.0.0.1:{gw.port}", "dlt645")
                try:
                    await profile.read(link, "000000000001")  # as the engine: memo of refused DIs settled
                    before = gw.busy_seconds
                    await profile.send(link, "000000000001", kind, params)
                    ok, _v, seen = await profile.verify(link, "000000000001", kind, params)
                    assert ok, seen
                    return gw.busy_seconds - before
                finally:
                    await link.close()
            out[kind] = asyncio.run(one())
    finally:
        sim.stop_thread()
    return out


PRICES = {"prices": {"sharp": "1.2000", "peak": "1.0000", "flat": "0.6000", "valley": "0.3000"}}


def run(rooms: int = 10000, gateways: int = 200, baud: int = 9600, turnaround_ms: float = 5.0,
        port_base: int = 18300, database_url: str | None = None, redis_url: str | None = None, *,
        probe: bool = True, engines: int = 2) -> dict:
    from bench.common import scratch_database
    from bench.hardware_engine import simulator_process
    from core.config import reset_settings
    from core.db import reset_engine
    from core.migrate import upgrade
    per_gateway = -(-rooms // gateways)
    base = database_url or os.environ.get("METERPAY_DATABASE_URL") or ""
    url, drop = scratch_database(base if base.startswith("postgresql") else "sqlite://", "batch")
    redis_url = redis_url if redis_url is not None else os.environ.get("METERPAY_REDIS_URL")
    saved = {k: os.environ.get(k) for k in ("METERPAY_DATABASE_URL", "METERPAY_REDIS_URL")}
    os.environ["METERPAY_DATABASE_URL"] = url
    if redis_url:
        os.environ["METERPAY_REDIS_URL"] = redis_url
    else:
        os.environ.pop("METERPAY_REDIS_URL", None)
    reset_settings()
    reset_engine()
    try:
        upgrade(url)
        wire = wire_per_command(baud, turnaround_ms)
        bound = per_gateway * (wire["relay_off"] + wire["set_prices"])
        t0 = time.perf_counter()
        site_id, probe_meter = _fixture(rooms, gateways, per_gateway, port_base)
        setup_s = time.perf_counter() - t0
        with simulator_process(gateways, per_gateway + 1, port_base, baud, turnaround_ms, protocol="dlt645",
                               profile="dlt645-2007") as sim:
            result = _race(site_id, probe_meter, rooms, probe, sim.pid, max(1, engines))
        return {"benchmark": "batch", "rooms": rooms, "gateways": gateways, "baud": baud,
                "turnaround_ms": turnaround_ms, "database": url.split(":", 1)[0], "bus_locks": "redis" if redis_url
                else "per process", "engines": max(1, engines), "items": 2 * rooms,
                "wire_s_per_command": {k: round(v, 4) for k, v in wire.items()}, "bound_s": round(bound, 3),
                "target_ratio": 1.3, "setup_s": round(setup_s, 2), **result,
                "ratio": round(result["total_s"] / bound, 3)}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()
        drop()


def _fixture(rooms: int, gateways: int, per_gateway: int, port_base: int) -> tuple[int, int]:
    """A site of ``rooms`` rooms (building A, 50 a floor) each with one DL/T 645 meter, spread over
    the gateways; plus one probe meter on the first gateway in no room. Rows in bulk (no accounts:
    meter actions need none)."""
    from sqlalchemy import insert, select

    from core.db import session_scope
    from core.models import Building, Floor, Gateway, Meter, Room, Site
    from hardware.simulator.build import meter_address
    stamp = int(time.time())
    with session_scope() as s:
        site = Site(name=f"bench-batch-{stamp}", settings={})
        s.add(site)
        s.flush()
        b = Building(site_id=site.id, name="A")
        s.add(b)
        s.flush()
        floors = []
        for f in range(-(-rooms // 50)):
            fl = Floor(building_id=b.id, name=str(f + 1))
            s.add(fl)
            floors.append(fl)
        s.flush()
        gw_ids = []
        for g in range(gateways):
            gw = Gateway(site_id=site.id, name=f"bench-batch-{stamp}-{g}", url=f"tcp://127.0.0.1:{port_base + g}",
                         protocol="dlt645")
            s.add(gw)
            s.flush()
            gw_ids.append(gw.id)
        s.execute(insert(Room), [{"site_id": site.id, "floor_id": floors[i // 50].id, "number": f"{i + 1:05d}"}
                                 for i in range(rooms)])
        room_ids = list(s.scalars(select(Room.id).where(Room.site_id == site.id).order_by(Room.number)))
        # room i on gateway i % G (neighbouring rooms on different buses), address by its place there
        s.execute(insert(Meter), [{"serial": f"bb{stamp}-{i}", "site_id": site.id, "room_id": rid,
                                   "gateway_id": gw_ids[i % gateways], "kind": "electricity", "profile": "dlt645-2007",
                                   "address": meter_address("dlt645", i // gateways + 1), "status": "active"}
                                  for i, rid in enumerate(room_ids)])
        probe = Meter(serial=f"bb{stamp}-probe", site_id=site.id, gateway_id=gw_ids[0], kind="electricity",
                      profile="dlt645-2007", address=meter_address("dlt645", per_gateway + 1), status="active")
        s.add(probe)
        s.flush()
        return site.id, probe.id


def _race(site_id: int, probe_meter: int, rooms: int, probe: bool, sim_pid: int, n_engines: int) -> dict:
    from sqlalchemy import func, select

    from core.batch import tasks
    from core.db import session_scope
    from core.models import BatchItem
    with session_scope() as s:
        relay = tasks.create_task(s, site_id=site_id, action="relay_off", selection={"all": True}, actor="bench",
                                  front="cli", confirmed=True, kick_engine=False).id
        prices = tasks.create_task(s, site_id=site_id, action="set_meter_prices", selection={"all": True},
                                   params=PRICES, actor="bench", front="cli", confirmed=True,
                                   kick_engine=False).id
    # each engine process drives both tasks on its share of the gateways (one lane per gateway
    # carries both tasks' commands; no two engines on one bus)
    engines = [_spawn((k, n_engines), relay, prices) for k in range(n_engines)]
    from core.db import get_engine
    db_cpu = _DbCpu(get_engine().url.database or "")
    sim_cpu0 = _cpu(sim_pid)
    t0 = time.perf_counter()
    for p in engines:
        p.stdin.write("go\n")
        p.stdin.flush()
    latency: dict = {}
    if probe:
        threading.Thread(target=_probe, args=(probe_meter, rooms, t0, latency), daemon=True).start()
    outs = []
    for p in engines:
        out, err = p.communicate(timeout=3600)
        if p.returncode != 0:
            raise RuntimeError(f"engine failed: {err[-2000:]}")
        outs.append(json.loads(out.strip().splitlines()[-1]))
    total = time.perf_counter() - t0
    services = db_cpu.stop()
    with session_scope() as s:
        counts = dict(s.execute(select(BatchItem.state, func.count()).group_by(BatchItem.state)).all())
    return {"total_s": round(total, 3), "items_by_state": counts, "single_command": latency,
            "engines_peak_rss_mb": [o["max_rss_mb"] for o in outs],
            "engine_stats": [{k: o[k] for k in ENGINE_STATS} for o in outs],
            "simulator_cpu_s": round(_cpu(sim_pid) - sim_cpu0, 2),
            "services_cpu_s": services}


class _DbCpu:
    """CPU seconds of the PostgreSQL backends serving the scratch database (its name is in their
    process title), sampled every second until ``stop`` (a backend's last second may be missed),
    and of Redis (all of it: other users count too)."""

    def __init__(self, db: str):
        self.db = db.encode()
        self.seen: dict[int, float] = {}
        self.redis0 = self._redis()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @staticmethod
    def _stat(pid: str) -> float:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _redis(self) -> float:
        total = 0.0
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().startswith("redis"):
                        total += self._stat(pid)
            except (OSError, IndexError, ValueError):
                pass
        return total

    def _sample(self) -> None:
        for pid in (p for p in os.listdir("/proc") if p.isdigit()):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    title = f.read()
                if title.startswith(b"postgres:") and self.db in title:
                    self.seen[int(pid)] = self._stat(pid)
            except (OSError, IndexError, ValueError):
                pass

    def _run(self) -> None:
        while not self.done.wait(1.0):
            self._sample()

    def stop(self) -> dict[str, float]:
        self._sample()
        self.done.set()
        self.thread.join(5)
        return {"postgres": round(sum(self.seen.values()), 1), "redis": round(self._redis() - self.redis0, 1)}


def _cpu(pid: int) -> float:
    from bench.hardware_engine import _cpu_of
    return _cpu_of(pid)


def _spawn(shard: tuple[int, int], *task_ids: int) -> subprocess.Popen:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    p = subprocess.Popen([sys.executable, "-c", ENGINE, *map(str, shard), *map(str, task_ids)], cwd=root, env=env,
                         stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        raise RuntimeError(f"engine did not start: {line} {p.stderr.read()[-2000:] if p.stderr else ''}")
    return p


def _probe(meter_id: int, rooms: int, t0: float, out: dict) -> None:
    """Half-way, a manager's single relay command: outbox row, then the executor (a "meters" worker)."""
    from sqlalchemy import func, select

    from core.db import session_scope
    from core.models import BatchItem, MeterCommand
    from core.supply import commands
    from hardware import executor
    while True:
        with session_scope() as s:
            done = s.scalar(select(func.count()).select_from(BatchItem).where(BatchItem.state == "confirmed"))
        if done >= rooms:  # half of the 2 x rooms items
            break
        time.sleep(0.2)
    start = time.perf_counter()
    with session_scope() as s:
        cmd_id = commands.request(s, meter_id, "relay_off", {"reason": "probe"}, actor="bench", front="cli",
                                  enqueue=False).id
    state = executor.execute_command(cmd_id)
    tries = 1
    while state == "pending" and tries < 20:  # a retry as the periodic job would make it
        time.sleep(0.2)
        state, tries = executor.execute_command(cmd_id), tries + 1
    with session_scope() as s:
        cmd = s.get(MeterCommand, cmd_id)
        out.update(state=cmd.state, latency_s=round(time.perf_counter() - start, 3), attempts=cmd.attempts,
                   sent_at_s=round(start - t0, 1))
