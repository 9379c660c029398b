"""Scale-out: the poll round and the command burst on N real ``meterpay worker`` processes.

``meterpay bench poll --workers N`` and ``meterpay bench commands --workers N`` run here. Set up,
in the same run:

- a scratch PostgreSQL database (beside ``--database-url``), migrated;
- a private ``redis-server`` on a free loopback port (no persistence), so its CPU and commands are
  the benchmark's alone (``--redis-url`` uses another Redis instead; then its CPU is not reported);
- ``meterpay simulate`` serving G gateways x K meters over TCP at the given baud;
- N ``meterpay worker`` processes (the production entry point: RQ, the outage-riding wrapper, the
  listeners), started and registered before the clock starts.

Poll: G gateways x K meters on accounts priced and billed as in ``bench billing`` (80% platform
prepaid, flat/tiered/TOU plans). A round is what ``poll_due`` enqueues: ``poll_gateways`` jobs of
``--shard-gateways`` gateways on queue ``meters``; it ends when every job, and every follow-up job
they queued (the round's ``reading_billed`` batch on ``notify``), has finished. The first round
stores every meter's first reading; later rounds price the usage since.

Commands: C relay-off commands written through the outbox, then ``execute_many`` jobs of
``--batch`` commands (what ``retry_due`` enqueues) on queue ``meters``.

CPU is measured, not estimated: user + system seconds from ``/proc/<pid>/stat`` of each worker
process, of the PostgreSQL backends serving the scratch database (``pg_stat_activity``), of the
private redis-server and of the simulator, before and after each round.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.common import scratch_database
from hardware.simulator.build import meter_address
from hardware.simulator.bus import wire_time

QUEUES = "meters,notify"  # the poll/command jobs and the follow-ups they queue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of one process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _wait_up_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until something listens on ``port``; raises if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[3:5]} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on port {port}") from None
            time.sleep(0.1)


@contextmanager
def private_redis() -> Iterator[tuple[str, subprocess.Popen]]:
    """``redis-server`` on a free loopback port in a temp dir, without persistence."""
    if not shutil.which("redis-server"):
        raise RuntimeError("redis-server is not installed; pass --redis-url")
    workdir = tempfile.mkdtemp(prefix="mp-bench-redis-")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", workdir, "--logfile", os.path.join(workdir, "redis.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def worker_processes(n: int, env: dict, queues: str = QUEUES, logdir: str | None = None) -> Iterator[list]:
    """N ``meterpay worker --queues ...`` processes, returned once all N are registered in Redis."""
    from redis import Redis
    from rq import Worker
    logdir = logdir or tempfile.mkdtemp(prefix="mp-bench-workers-")
    procs: list[subprocess.Popen] = []
    logs = []
    try:
        for i in range(n):
            log = open(os.path.join(logdir, f"worker-{i}.log"), "w")
            logs.append(log)
            procs.append(subprocess.Popen([sys.executable, "-m", "meterpay.cli.__main__", "worker", "--queues", queues,
                                           "--name", f"bench{i}"], env=env, stdout=log, stderr=subprocess.STDOUT))
        redis = Redis.from_url(env["METERPAY_REDIS_URL"])
        deadline = time.monotonic() + 60
        while len(Worker.all(connection=redis)) < n:
            dead = [p for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                tail = open(logs[0].name).read()[-1500:]
                raise RuntimeError(f"workers did not start (see {logdir}): {tail}")
            time.sleep(0.1)
        warm_workers(env["METERPAY_REDIS_URL"], n)
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()


def warm_up() -> None:
    """Job: import what the measured jobs run, so no worker pays its imports inside a round."""
    import core.billing  # noqa: F401
    import hardware.executor
    import hardware.poller  # noqa: F401
    time.sleep(0.3)


def warm_workers(redis_url: str, n: int) -> None:
    from core.jobs import enqueue
    wait_done(redis_url, [enqueue("bench.scaleout.warm_up", queue="meters") for _ in range(2 * n)])


def pg_backends(url: str) -> dict[int, float]:
    """CPU seconds of every PostgreSQL backend connected to ``url``'s database, by pid."""
    import sqlalchemy as sa
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            pids = conn.execute(sa.text("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                        "AND pid <> pg_backend_pid()")).scalars().all()
    finally:
        engine.dispose()
    return {pid: cpu_of(pid) for pid in pids}


def pg_cpu_since(url: str, before: dict[int, float]) -> float:
    """CPU the database's backends used since ``before`` (new backends count from zero)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in pg_backends(url).items())


def wait_done(redis_url: str, job_ids: list[str], queues: str = QUEUES, timeout: float = 1800) -> list:
    """Wait until every job in ``job_ids`` has ended and ``queues`` are empty with nothing started;
    returns the jobs (with their results). Raises on timeout."""
    from redis import Redis
    from rq import Queue
    from rq.job import Job
    from rq.registry import StartedJobRegistry
    redis = Redis.from_url(redis_url)
    names = queues.split(",")
    deadline = time.monotonic() + timeout
    while True:
        jobs = Job.fetch_many(job_ids, connection=redis)
        ended = all(j is not None and (j.is_finished or j.is_failed) for j in jobs)
        if ended and all(Queue(q, connection=redis).count == 0 and StartedJobRegistry(q, connection=redis).count == 0
                         for q in names):
            return jobs
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs still running after {timeout:g}s")
        time.sleep(0.02)


@contextmanager
def _stage(database_url: str | None, redis_url: str | None, prefix: str) -> Iterator[dict]:
    """Scratch PostgreSQL database and a Redis, this process pointed at both; yields the env."""
    from core.config import get_settings, reset_settings
    from core.db import reset_engine
    from core.migrate import upgrade
    base = database_url or get_settings().database_url
    if not base.startswith("postgresql"):
        from core.errors import ValidationError
        raise ValidationError("--workers needs PostgreSQL: pass --database-url postgresql://...")
    from core import jobs
    url, drop = scratch_database(base, prefix)
    saved = {k: os.environ.get(k) for k in ("METERPAY_DATABASE_URL", "METERPAY_REDIS_URL")}
    jobs.set_eager(False)  # the jobs go to the workers (the tests' default is eager; their fixture resets it)
    try:
        with (private_redis() if redis_url is None else _given_redis(redis_url)) as (rurl, rproc):
            os.environ["METERPAY_DATABASE_URL"] = url
            os.environ["METERPAY_REDIS_URL"] = rurl
            reset_settings()
            reset_engine()
            upgrade(url)
            env = {**os.environ, "METERPAY_DATABASE_URL": url, "METERPAY_REDIS_URL": rurl,
                   "METERPAY_LOG_LEVEL": "WARNING"}
            env.pop("METERPAY_METRICS_DIR", None)
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
            yield {"env": env, "url": url, "redis_url": rurl, "redis_pid": rproc.pid if rproc else None}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        drop()
        reset_settings()
        reset_engine()


@contextmanager
def _given_redis(url: str):
    from redis import Redis
    Redis.from_url(url).flushdb()
    yield url, None


def _measure(stage: dict, workers: list, sim, enqueue) -> dict:
    """Run one round: ``enqueue()`` returns job ids; returns wall time and CPU of every process."""
    w0 = [cpu_of(p.pid) for p in workers]
    pg0 = pg_backends(stage["url"])
    r0 = cpu_of(stage["redis_pid"]) if stage["redis_pid"] else None
    s0 = cpu_of(sim.pid)
    t0 = time.perf_counter()
    job_ids = enqueue()
    jobs = wait_done(stage["redis_url"], job_ids)
    wall = time.perf_counter() - t0
    worker_cpu = [round(cpu_of(p.pid) - c, 3) for p, c in zip(workers, w0)]
    out = {"wall_s": round(wall, 3), "worker_cpu_s": worker_cpu, "workers_cpu_s": round(sum(worker_cpu), 3),
           "postgres_cpu_s": round(pg_cpu_since(stage["url"], pg0), 3),
           "redis_cpu_s": None if r0 is None else round(cpu_of(stage["redis_pid"]) - r0, 3),
           "simulator_cpu_s": round(cpu_of(sim.pid) - s0, 3), "jobs": len(job_ids),
           "failed_jobs": sum(1 for j in jobs if j.is_failed)}
    failed = [j for j in jobs if j.is_failed]
    if failed:
        info = failed[0].latest_result()
        out["first_failure"] = (getattr(info, "exc_string", None) or "")[-1500:]
    out["results"] = [j.return_value() for j in jobs if j.is_finished]
    return out


def _per(out: dict, n: int, unit: str) -> dict:
    """CPU milliseconds per ``unit`` (meter read, command) of each kind of process."""
    if not n:
        return {}
    ms = {k: round(out[f"{k}_cpu_s"] * 1000 / n, 3) for k in ("workers", "postgres", "redis", "simulator")
          if out.get(f"{k}_cpu_s") is not None}
    return {f"cpu_ms_per_{unit}": ms}


def _seed_poll(gateways: int, per_gateway: int, port_base: int) -> list[int]:
    """Accounts and meters as ``bench billing`` builds them, hung on G gateways (K units each)."""
    from sqlalchemy import insert, select, update

    from bench.billing import _build_site
    from core.db import session_scope
    from core.models import Gateway, Meter
    _build_site(gateways * per_gateway, seed=7)
    with session_scope() as s:
        site_id, meter_ids = None, []
        for mid, sid in s.execute(select(Meter.id, Meter.site_id).order_by(Meter.id)):
            site_id = sid
            meter_ids.append(mid)
        gw_ids = s.scalars(insert(Gateway).returning(Gateway.id, sort_by_parameter_order=True),
                           [{"site_id": site_id, "name": f"bench-gw-{g}", "url": f"tcp://127.0.0.1:{port_base + g}",
                             "protocol": "modbus-rtu"} for g in range(gateways)]).all()
        s.execute(update(Meter), [{"id": mid, "gateway_id": gw_ids[i // per_gateway],
                                   "address": meter_address("modbus-rtu", i % per_gateway + 1)}
                                  for i, mid in enumerate(meter_ids)])
    return list(gw_ids)


def poll_workers(gateways: int, per_gateway: int, baud: int, port_base: int, turnaround_ms: float, rounds: int,
                 workers: int, shard: int | None, database_url: str | None, redis_url: str | None) -> dict:
    from bench.hardware_engine import modbus_exchange_bytes, simulator_process
    from core.jobs import enqueue
    profile = "acrel-ddsy1352"
    exchanges = modbus_exchange_bytes(profile)
    per_meter = sum(wire_time(q, r, baud, turnaround_ms / 1000) for q, r in exchanges)
    # as production splits a round (METERPAY_POLL_SHARD_GATEWAYS, 100), but enough jobs for every worker
    shard = shard or min(100, -(-gateways // workers))
    meters = gateways * per_gateway
    runs = []
    with _stage(database_url, redis_url, "bench_scale_poll") as stage:
        t0 = time.perf_counter()
        gw_ids = _seed_poll(gateways, per_gateway, port_base)
        seed_s = time.perf_counter() - t0
        parts = [gw_ids[i:i + shard] for i in range(0, len(gw_ids), shard)]
        with simulator_process(gateways, per_gateway, port_base, baud, turnaround_ms, profile=profile) as sim, \
                worker_processes(workers, stage["env"]) as procs:
            for r in range(rounds):
                load_before = loadavg()
                out = _measure(stage, procs, sim, lambda: [
                    enqueue("hardware.poller.poll_gateways", part, queue="meters", timeout=1800) for part in parts])
                results = out.pop("results")
                shards = [x for x in results if isinstance(x, dict)]
                ok = sum(x.get("ok", 0) for x in shards)
                billing: dict[str, int] = {}
                for x in shards:
                    for k, v in (x.get("billing") or {}).items():
                        billing[k] = billing.get(k, 0) + v
                run = {"round": r + 1, **out, "ok": ok, "failed": sum(x.get("failed", 0) for x in shards),
                       "billing": billing, "meters_per_s": round(ok / out["wall_s"], 1),
                       "shard_read_s_max": round(max((x.get("read_seconds", 0) for x in shards), default=0), 3),
                       "shard_store_s_max": round(max((x.get("store_seconds", 0) for x in shards), default=0), 3),
                       **_per(out, ok, "meter"), "loadavg_before": load_before}
                runs.append(run)
                time.sleep(1.0)  # the next round's readings are taken later
    last = runs[-1]
    return {"benchmark": "poll", "mode": "rq-workers", "workers": workers, "gateways": gateways,
            "meters_per_gateway": per_gateway, "meters": meters, "shard_gateways": shard, "jobs_per_round": len(parts),
            "baud": baud, "turnaround_ms": turnaround_ms, "bus_s_per_meter": round(per_meter, 4),
            "bound_s": round(per_meter * per_gateway, 3), "seed_s": round(seed_s, 1), "cpus": os.cpu_count(),
            "round_s": last["wall_s"], "meters_per_s": last["meters_per_s"],
            "worker_cpu_s": last["worker_cpu_s"], **_per(last, last["ok"], "meter"),
            "runs": runs, "loadavg_after": loadavg()}


def commands_workers(count: int, gateways: int, baud: int, port_base: int, turnaround_ms: float, workers: int,
                     batch: int, database_url: str | None, redis_url: str | None) -> dict:
    from sqlalchemy import insert

    from bench.hardware_engine import modbus_exchange_bytes, simulator_process
    from core.db import session_scope
    from core.jobs import enqueue
    from core.models import Gateway, Meter, Site
    from core.supply import commands as outbox
    profile = "acrel-ddsy1352"
    per_gateway = -(-count // gateways)
    per_cmd = wire_time(13, 8, baud, turnaround_ms / 1000) + sum(
        wire_time(q, r, baud, turnaround_ms / 1000) for q, r in modbus_exchange_bytes(profile))
    with _stage(database_url, redis_url, "bench_scale_cmd") as stage:
        t0 = time.perf_counter()
        with session_scope() as s:
            site = Site(name="bench-commands", settings={})
            s.add(site)
            s.flush()
            gw_ids = s.scalars(insert(Gateway).returning(Gateway.id, sort_by_parameter_order=True),
                               [{"site_id": site.id, "name": f"bench-gw-{g}", "protocol": "modbus-rtu",
                                 "url": f"tcp://127.0.0.1:{port_base + g}"} for g in range(gateways)]).all()
            rows = [{"serial": f"bench-{g}-{k}", "site_id": site.id, "gateway_id": gw_ids[g], "kind": "electricity",
                     "profile": profile, "address": meter_address("modbus-rtu", k + 1)}
                    for g in range(gateways) for k in range(per_gateway)][:count]
            meter_ids = s.scalars(insert(Meter).returning(Meter.id, sort_by_parameter_order=True), rows).all()
        with session_scope() as s:
            cmd_ids = [outbox.request(s, mid, "relay_off", {"reason": "bench"}, enqueue=False).id
                       for mid in meter_ids]
        seed_s = time.perf_counter() - t0
        jobs = [cmd_ids[i:i + batch] for i in range(0, len(cmd_ids), batch)]
        with simulator_process(gateways, per_gateway, port_base, baud, turnaround_ms, profile=profile) as sim, \
                worker_processes(workers, stage["env"]) as procs:
            load_before = loadavg()
            out = _measure(stage, procs, sim, lambda: [
                enqueue("hardware.executor.execute_many", part, queue="meters", timeout=1800) for part in jobs])
        states = [st for res in out.pop("results") if isinstance(res, list) for st in res]
    confirmed = states.count("confirmed")
    return {"benchmark": "commands", "mode": "rq-workers", "workers": workers, "commands": len(cmd_ids),
            "gateways": gateways, "commands_per_gateway": per_gateway, "batch": batch, "jobs": len(jobs),
            "baud": baud, "bound_s": round(per_cmd * per_gateway, 3), "seed_s": round(seed_s, 1),
            "cpus": os.cpu_count(), "total_s": out["wall_s"],
            "commands_per_s": round(confirmed / out["wall_s"], 1), **out, **_per(out, confirmed, "command"),
            "confirmed": confirmed, "other": len(states) - confirmed,
            "loadavg_before": load_before, "loadavg_after": loadavg()}
