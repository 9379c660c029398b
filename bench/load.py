"""``meterpay bench load``: tenants' mini-program traffic on one ``meterpay serve`` while polling and
billing run, side by side with the same traffic on the idle system, in the same run.

Set up (all real processes, on a scratch PostgreSQL database and a private redis-server):

- the site: ``--gateways`` x ``--meters-per-gateway`` meters on accounts built as ``bench billing``
  builds them (80% platform prepaid, flat/tiered/TOU plans, 2,000 yuan each), served by
  ``meterpay simulate`` over TCP; ``--import-meters`` more accounts whose readings arrive by file;
  ``--clients`` tenants bound to accounts (one each), who log in with a code the sandbox knows;
- the sandbox app of ``meterpay sandbox`` (WeChat login, WeChat Pay v3: signs its answers and
  callbacks), under gunicorn (one process, 32 threads) so that the fake internet is not the
  bottleneck;
- ``meterpay serve`` (gunicorn, ``--web-workers`` x ``--threads``) in sandbox mode, with Redis;
- ``--job-workers`` ``meterpay worker`` processes on every queue (poll rounds, the callbacks'
  follow-ups, alarms);

then measures, with ``--clients`` keep-alive connections sending back to back for ``--seconds``:

1. *idle*: the trivial endpoint ``GET /api/v1/ping``, then the tenant mix;
2. *busy*: the same two while a poll round of every gateway is enqueued every ``--poll-interval``
   seconds (60 by default: the issue's "a poll round every minute"; shorter for short runs) and a
   billing process imports the next 15 minutes of readings of the import meters
   (``core.billing.csv_import``, as ``meterpay readings import``) every ``--billing-interval``.

The tenant mix (``MIX``, or ``--mix``), weights per request a client sends: balance 70 (``GET
/accounts/<id>/balance``), usage 10 (the last 30 days by day), order 8 (``GET /orders/<no>`` of
the client's last order), login 10 (``POST /auth/login``: the server asks the sandbox's
jscode2session), recharge 2 (``POST /accounts/<id>/recharge`` of 1.00 yuan by WeChat Pay: the
server prepares it with the sandbox's WeChat Pay; the client then pays in the sandbox, which
answers at once and posts the signed ``TRANSACTION.SUCCESS`` callback to ``/pay/wechat/notify``
afterwards, as WeChat Pay does). ``rps`` counts the requests clients send to the server (the
callbacks are served too, not counted); every paid order must end credited. Target (the busy
side): balance p99 < 50 ms and the mix's rate >= 0.5x the trivial endpoint's rate measured the
same way (``ratio``).

``--paced-rps R`` adds a measurement beside that definition (which it does not change, nor
``meets_target``): the same mix, idle and busy, with the clients together sending R requests a
second, each on its own schedule, a request that starts late counting its lateness (``paced``).
With clients sending back to back the latency is the queue (Little's law: 50 clients / rate),
so the closed loop measures capacity; the paced mix measures the latency at a given load.
"""
from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime, timedelta
from decimal import Decimal

import click

from bench.scaleout import (
    _stage,
    _wait_up_port,
    cpu_of,
    free_port,
    loadavg,
    worker_processes,
)
from meterpay.cli.base import friendly_errors

# Per 100 requests of tenants using the mini-program: a login per session (a token lasts two hours),
# the balance looked at and refreshed, now and then the usage chart, two recharges, each followed by
# the app asking for the order's state until it is paid.
MIX = (("balance", 70), ("usage", 10), ("order", 8), ("login", 10), ("recharge", 2))
CODE = "bench-tenant-{}"
USAGE_SPAN = f"start={datetime.now() - timedelta(days=30):%Y-%m-%d}&end={datetime.now():%Y-%m-%d}"


def openid_of(code: str) -> str:
    """The openid the sandbox's jscode2session gives for ``code`` (miniapp_api/sandbox.py)."""
    import hashlib
    return "osbx" + hashlib.sha256(code.encode()).hexdigest()[:24]


# --- seeding ----------------------------------------------------------------------------------

def seed(gateways: int, per_gateway: int, import_meters: int, clients: int, port_base: int) -> dict:
    """Accounts and meters (bench billing's site), the first G x K hung on gateways, the rest read
    by file; ``clients`` tenants bound to the first accounts. Returns ids and the import serials."""
    from sqlalchemy import insert, select, update

    from bench.billing import _build_site
    from core.db import session_scope
    from core.models import Account, Gateway, Meter, TenantBinding
    from hardware.simulator.build import meter_address
    polled = gateways * per_gateway
    _build_site(polled + import_meters, seed=11)
    with session_scope() as s:
        rows = s.execute(select(Meter.id, Meter.site_id, Meter.serial, Meter.account_id).order_by(Meter.id)).all()
        site_id = rows[0].site_id
        gw_ids = s.scalars(insert(Gateway).returning(Gateway.id, sort_by_parameter_order=True),
                           [{"site_id": site_id, "name": f"bench-gw-{g}", "url": f"tcp://127.0.0.1:{port_base + g}",
                             "protocol": "modbus-rtu"} for g in range(gateways)]).all()
        s.execute(update(Meter), [{"id": r.id, "gateway_id": gw_ids[i // per_gateway],
                                   "address": meter_address("modbus-rtu", i % per_gateway + 1)}
                                  for i, r in enumerate(rows[:polled])])
        tenants = dict(s.execute(select(Account.id, Account.tenant_id)).all())
        accounts = [r.account_id for r in rows[:clients]]
        s.execute(insert(TenantBinding), [{"openid": openid_of(CODE.format(i)), "account_id": a,
                                           "tenant_id": tenants[a]} for i, a in enumerate(accounts)])
    return {"gateway_ids": list(gw_ids), "accounts": accounts, "import_serials": [r.serial for r in rows[polled:]]}


# --- billing: a process importing readings files --------------------------------------------

def write_import_files(directory: str, serials: list[str], batches: int) -> list[str]:
    """``batches`` CSV files, each the next 15 minutes of every import meter (totals only)."""
    rnd = random.Random(5)
    totals = [Decimal(rnd.randint(0, 500_000)) / 100 for _ in serials]
    start = datetime.fromisoformat("2026-07-01T00:00:00+08:00")
    paths = []
    for b in range(batches):
        path = os.path.join(directory, f"readings-{b:03d}.csv")
        at = (start + timedelta(minutes=15 * b)).isoformat()
        with open(path, "w", encoding="utf-8") as fh:
            fh.write("meter_serial,taken_at,total\n")
            for i, serial in enumerate(serials):
                if b:
                    totals[i] += Decimal(rnd.randint(0, 300)) / 100
                fh.write(f"{serial},{at},{totals[i]:.2f}\n")
        paths.append(path)
    return paths


def billing_loop(directory: str, interval: float, stop_file: str, report: str) -> None:
    """Child process: import the next readings file every ``interval`` seconds until ``stop_file``
    exists (an import under way is finished first); writes what it did to ``report`` (JSON), and
    ``report + ".ready"`` once it is about to start the first import."""
    from core.billing.csv_import import import_csv
    from core.signals import load_listeners
    load_listeners()
    done = []
    files = sorted(f for f in os.listdir(directory) if f.endswith(".csv"))
    open(report + ".ready", "w").close()  # imported and about to start the first file
    next_at = time.monotonic()
    for name in files:
        while time.monotonic() < next_at:
            if os.path.exists(stop_file):
                break
            time.sleep(0.05)
        if os.path.exists(stop_file):
            break
        t0, c0 = time.perf_counter(), time.process_time()
        with open(os.path.join(directory, name), "rb") as fh:
            summary = import_csv(fh)
        done.append({"file": name, "seconds": round(time.perf_counter() - t0, 3),
                     "cpu_s": round(time.process_time() - c0, 3), **summary.as_json()})
        next_at += interval
        with open(report, "w") as fh:
            json.dump(done, fh)


# --- HTTP clients -----------------------------------------------------------------------------

class Conn:
    """One keep-alive HTTP/1.1 connection (reconnects when the server closes it)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict | None = None,
                      body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        if body is not None:
            extra += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{extra}\r\n".encode()
                          + (body or b""))
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close = 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        data = await self.reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Tally:
    """Latencies and errors by request kind."""

    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = {}
        self.errors: dict[str, int] = {}
        self.paid: list[str] = []

    def add(self, kind: str, seconds: float, ok: bool) -> None:
        self.lat.setdefault(kind, []).append(seconds)
        if not ok:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def summary(self, elapsed: float) -> dict:
        total = sum(len(v) for v in self.lat.values())
        out = {"requests": total, "rps": round(total / elapsed, 1), "errors": sum(self.errors.values()),
               "seconds": round(elapsed, 2), "by_kind": {}}
        for kind, values in sorted(self.lat.items()):
            v = sorted(values)
            out["by_kind"][kind] = {"requests": len(v), "p50_ms": _pct(v, 0.50), "p99_ms": _pct(v, 0.99),
                                    "errors": self.errors.get(kind, 0)}
        everything = sorted(x for v in self.lat.values() for x in v)
        out["p50_ms"], out["p99_ms"] = _pct(everything, 0.5), _pct(everything, 0.99)
        return out


def _pct(values: list[float], q: float) -> float | None:
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 2) if values else None


async def _ping_client(port: int, stop_at: float, tally: Tally) -> None:
    conn = Conn("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            status, _ = await conn.request("GET", "/api/v1/ping")
            tally.add("ping", time.perf_counter() - t0, status == 200)
    except (asyncio.IncompleteReadError, ConnectionError):
        tally.add("ping", 0.0, False)
    finally:
        conn.close()


class Tenant:
    def __init__(self, index: int, account_id: int, port: int, sandbox_port: int, seed: int,
                 mix: tuple = MIX):
        self.code, self.account_id = CODE.format(index), account_id
        self.port, self.sandbox_port = port, sandbox_port
        self.conn = Conn("127.0.0.1", port)
        self.token: str | None = None
        self.order_no: str | None = None
        self.rnd = random.Random(seed)
        self.lag = 0.0  # paced: how late this request started after its scheduled time (counted in)
        self.kinds = [k for k, _ in mix]
        self.weights = [w for _, w in mix]

    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"}

    async def login(self, tally: Tally) -> None:
        t0 = time.perf_counter()
        status, data = await self.conn.request("POST", "/api/v1/auth/login", body=json.dumps({"code": self.code})
                                               .encode())
        ok = status == 200
        if ok:
            self.token = json.loads(data)["token"]
        tally.add("login", time.perf_counter() - t0 + self.lag, ok)

    async def one(self, tally: Tally) -> None:
        kind = self.rnd.choices(self.kinds, self.weights)[0]
        if kind == "login" or self.token is None:
            await self.login(tally)
            return
        a = self.account_id
        if kind == "order" and self.order_no is None:
            kind = "balance"
        if kind == "recharge":
            await self.recharge(tally)
            return
        path = {"balance": f"/api/v1/accounts/{a}/balance", "usage": f"/api/v1/accounts/{a}/usage?by=day&{USAGE_SPAN}",
                "order": f"/api/v1/orders/{self.order_no}"}[kind]
        t0 = time.perf_counter()
        status, _ = await self.conn.request("GET", path, self.auth())
        tally.add(kind, time.perf_counter() - t0 + self.lag, status == 200)

    async def recharge(self, tally: Tally) -> None:
        t0 = time.perf_counter()
        status, data = await self.conn.request("POST", f"/api/v1/accounts/{self.account_id}/recharge", self.auth(),
                                               json.dumps({"amount": "1.00", "channel": "wechat"}).encode())
        tally.add("recharge", time.perf_counter() - t0 + self.lag, status == 200)
        if status != 200:
            return
        order = json.loads(data)
        self.order_no = order["order_no"]
        # the tenant pays in the sandbox; it posts the signed callback to the server (not counted here)
        pay = Conn("127.0.0.1", self.sandbox_port)
        try:
            pstatus, _ = await pay.request("POST", f"/_sandbox/pay/{self.order_no}?notify=later", body=b"{}")
        finally:
            pay.close()
        if pstatus == 200:
            tally.paid.append(self.order_no)

    async def run(self, stop_at: float, tally: Tally, pace: float | None = None) -> None:
        """Back to back; or, ``pace`` seconds apart (a schedule from a random start): a request
        that starts late, because the one before took longer than ``pace``, counts its lateness in
        its latency (what a tenant arriving on time would have waited)."""
        try:
            next_at = time.perf_counter() + (self.rnd.random() * pace if pace else 0.0)
            while time.perf_counter() < stop_at:
                if pace:
                    now = time.perf_counter()
                    if now < next_at:
                        await asyncio.sleep(next_at - now)
                    self.lag = max(0.0, time.perf_counter() - next_at)
                    next_at += pace
                    if next_at - pace >= stop_at:
                        break
                await self.one(tally)
        except (asyncio.IncompleteReadError, ConnectionError):
            tally.add("connection", 0.0, False)
        finally:
            self.conn.close()


def run_phase(kind: str, port: int, sandbox_port: int, accounts: list[int], seconds: float, serve_pids: list[int],
              seed: int = 1, mix: tuple = MIX, rate: float | None = None) -> dict:
    """``kind`` "ping" or "mix" with one client per account for ``seconds``; plus the server's CPU.
    ``rate`` (mix only): the clients together send that many requests a second, each on its own
    schedule (``Tenant.run``'s pace), instead of back to back."""
    tally = Tally()

    async def main():
        stop_at = time.perf_counter() + seconds
        if kind == "ping":
            await asyncio.gather(*[_ping_client(port, stop_at, tally) for _ in accounts])
        else:
            tenants = [Tenant(i, a, port, sandbox_port, seed * 100_003 + i, mix) for i, a in enumerate(accounts)]
            pace = len(tenants) / rate if rate else None
            await asyncio.gather(*[t.run(stop_at, tally, pace) for t in tenants])
    c0 = sum(cpu_of(p) for p in serve_pids)
    t0 = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - t0
    out = tally.summary(elapsed)
    if out["requests"]:
        out["server_cpu_ms_per_request"] = round((sum(cpu_of(p) for p in serve_pids) - c0) * 1000 / out["requests"],
                                                 3)
    out["paid_orders"] = tally.paid
    return out


# --- the background: polling ------------------------------------------------------------------

class PollDriver(threading.Thread):
    """Enqueues a poll round of every gateway (``poll_gateways`` shards, as ``poll_due`` does) every
    ``interval`` seconds until stopped."""

    def __init__(self, gateway_ids: list[int], interval: float, shard: int):
        super().__init__(daemon=True)
        self.parts = [gateway_ids[i:i + shard] for i in range(0, len(gateway_ids), shard)]
        self.interval = interval
        self.stop = threading.Event()
        self.rounds: list[list[str]] = []

    def run(self) -> None:
        from core.jobs import enqueue
        while not self.stop.is_set():
            self.rounds.append([enqueue("hardware.poller.poll_gateways", part, queue="meters", timeout=900)
                                for part in self.parts])
            self.stop.wait(self.interval)

    def report(self, redis_url: str) -> list[dict]:
        from redis import Redis
        from rq.job import Job
        redis = Redis.from_url(redis_url)
        out = []
        for ids in self.rounds:
            jobs = [j for j in Job.fetch_many([i for i in ids if i], connection=redis) if j is not None]
            results = [r for r in (j.return_value() for j in jobs if j.is_finished) if isinstance(r, dict)]
            out.append({"jobs": len(ids), "finished": len(results),
                        "ok": sum(r.get("ok", 0) for r in results), "failed": sum(r.get("failed", 0) for r in results),
                        "round_s_max": max((r.get("seconds", 0) for r in results), default=None)})
        return out


def _credited(orders: list[str]) -> int:
    from sqlalchemy import func, select

    from core.db import session_scope
    from core.models import PaymentOrder
    if not orders:
        return 0
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(PaymentOrder).where(PaymentOrder.order_no.in_(orders),
                                                                            PaymentOrder.state == "paid")) or 0


def _wait_credited(orders: list[str], timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = _credited(orders)
        if n == len(orders) or time.monotonic() > deadline:
            return n
        time.sleep(0.2)


def _children(pid: int) -> list[int]:
    out = [pid]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(p))
            except OSError:
                pass
    return out


def _sandbox_env(port: int) -> dict:
    from meterpay.cli.serve import SANDBOX_ENV
    return {k: v.format(port=port) for k, v in SANDBOX_ENV.items()}


def _start(args: list[str], env: dict, log: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "meterpay.cli.__main__", *args], env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def load_test(*, clients: int, seconds: float, gateways: int, per_gateway: int, import_meters: int,
              poll_interval: float, billing_interval: float, web_workers: int, threads: int | None,
              job_workers: int, port_base: int, database_url: str | None, redis_url: str | None,
              baud: int = 9600, mix: tuple = MIX, paced_rps: float = 0.0) -> dict:
    import secrets

    from bench.hardware_engine import simulator_process
    from hardware import settings as hw_settings
    work = tempfile.mkdtemp(prefix="mp-bench-load-")
    with _stage(database_url, redis_url, "bench_load") as stage, ExitStack() as stack:
        t0 = time.perf_counter()
        seeded = seed(gateways, per_gateway, import_meters, clients, port_base)
        batches = max(2, int(2 * seconds / max(billing_interval, 0.1)) + 3)
        files_dir = os.path.join(work, "readings")
        os.makedirs(files_dir)
        write_import_files(files_dir, seeded["import_serials"], batches)
        seed_s = time.perf_counter() - t0
        port, sandbox_port = free_port(), free_port()
        env = {**stage["env"], **_sandbox_env(sandbox_port), "METERPAY_PORT": str(port),
               "METERPAY_PUBLIC_URL": f"http://127.0.0.1:{port}", "METERPAY_SECRET_KEY": secrets.token_urlsafe(48),
               "METERPAY_SANDBOX_KEY_DIR": os.path.join(work, "keys")}
        if threads:
            env["METERPAY_WEB_THREADS"] = str(threads)
        # The sandbox plays WeChat and WeChat Pay: under gunicorn (one process, as its orders are kept in
        # memory; many threads, as it waits on our callbacks) so the internet edge is not the bottleneck.
        sandbox = subprocess.Popen([sys.executable, "-m", "gunicorn", "meterpay.sandbox:create_sandbox_app()",
                                    "--bind", f"127.0.0.1:{sandbox_port}", "--workers", "1", "--threads", "32",
                                    "--worker-class", "gthread", "--log-level", "warning"], env=env,
                                   stdout=open(os.path.join(work, "sandbox.log"), "w"), stderr=subprocess.STDOUT)
        stack.callback(_stop, sandbox)
        _wait_up_port(sandbox_port, sandbox)
        serve = _start(["serve", "--workers", str(web_workers)], env, os.path.join(work, "serve.log"))
        stack.callback(_stop, serve)
        _wait_up_port(port, serve)
        stack.enter_context(worker_processes(job_workers, env, queues="meters,payments,billing,notify,default",
                                             logdir=work))
        sim = stack.enter_context(simulator_process(gateways, per_gateway, port_base, baud, 5.0))
        serve_pids = _children(serve.pid)
        accounts = seeded["accounts"]
        time.sleep(1.0)
        run_phase("ping", port, sandbox_port, accounts, min(2.0, seconds), serve_pids)   # warm-up
        run_phase("mix", port, sandbox_port, accounts, min(2.0, seconds), serve_pids, seed=9, mix=mix)
        load0 = loadavg()
        idle = {"ping": run_phase("ping", port, sandbox_port, accounts, seconds, serve_pids),
                "mix": run_phase("mix", port, sandbox_port, accounts, seconds, serve_pids, seed=2, mix=mix),
                "loadavg": [load0, loadavg()]}
        if paced_rps:
            idle["mix_paced"] = run_phase("mix", port, sandbox_port, accounts, seconds, serve_pids, seed=4, mix=mix,
                                          rate=paced_rps)
        # the background: poll rounds and the billing process
        poll = PollDriver(seeded["gateway_ids"], poll_interval, hw_settings.poll_shard_gateways())
        stop_file, billing_report = os.path.join(work, "stop"), os.path.join(work, "billing.json")
        billing = subprocess.Popen([sys.executable, "-c", "from bench.load import billing_loop; import sys; "
                                    "billing_loop(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4])",
                                    files_dir, str(billing_interval), stop_file, billing_report], env=stage["env"],
                                   stdout=open(os.path.join(work, "billing.log"), "w"), stderr=subprocess.STDOUT)
        stack.callback(_stop, billing)
        deadline = time.monotonic() + 120
        while not os.path.exists(billing_report + ".ready"):  # the busy side starts with billing under way
            if billing.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the billing process did not start (see {work}/billing.log)")
            time.sleep(0.05)
        poll.start()
        time.sleep(min(1.0, poll_interval / 2))  # the first round is under way
        load1 = loadavg()
        busy = {"ping": run_phase("ping", port, sandbox_port, accounts, seconds, serve_pids),
                "mix": run_phase("mix", port, sandbox_port, accounts, seconds, serve_pids, seed=3, mix=mix),
                "loadavg": [load1, loadavg()]}
        if paced_rps:
            busy["mix_paced"] = run_phase("mix", port, sandbox_port, accounts, seconds, serve_pids, seed=5, mix=mix,
                                          rate=paced_rps)
            busy["loadavg"].append(loadavg())
        poll.stop.set()
        open(stop_file, "w").close()
        billing.wait(120)
        poll.join(5)
        from bench.scaleout import wait_done
        wait_done(stage["redis_url"], [i for ids in poll.rounds for i in ids if i], timeout=600)
        rounds = poll.report(stage["redis_url"])
        try:
            with open(billing_report) as fh:
                imports = json.load(fh)
        except (OSError, ValueError):
            imports = []
        paid = idle["mix"].pop("paid_orders") + busy["mix"].pop("paid_orders")
        for side in (idle, busy):
            if "mix_paced" in side:
                paid += side["mix_paced"].pop("paid_orders")
        idle["ping"].pop("paid_orders")
        busy["ping"].pop("paid_orders")
        credited = _wait_credited(paid)
        sim_cpu = cpu_of(sim.pid)
    balance_p99 = busy["mix"]["by_kind"].get("balance", {}).get("p99_ms")
    ratio = round(busy["mix"]["rps"] / busy["ping"]["rps"], 3) if busy["ping"]["rps"] else 0.0
    errors = sum(side[k]["errors"] for side in (idle, busy) for k in ("ping", "mix"))
    paced = None
    if paced_rps:  # an extra measurement beside the definition (docs/miniapp.md): not in meets_target
        sides = (("idle", idle["mix_paced"]), ("busy", busy["mix_paced"]))
        paced = {"offered_rps": paced_rps, "rps": {k: m["rps"] for k, m in sides},
                 "balance_p99_ms": {k: m["by_kind"].get("balance", {}).get("p99_ms") for k, m in sides},
                 "errors": sum(m["errors"] for _, m in sides)}
    return {
        "bench": "load", "clients": clients, "seconds": seconds, "cpus": os.cpu_count(),
        "server": f"meterpay serve (gunicorn, {web_workers} workers x "
                  f"{threads or env.get('METERPAY_WEB_THREADS') or 'default'} threads)",
        "job_workers": job_workers, "site": {"polled_meters": gateways * per_gateway, "gateways": gateways,
                                             "import_meters": import_meters, "seed_s": round(seed_s, 1)},
        "mix_weights": dict(mix), "idle": idle, "busy": busy,
        "background": {"poll_interval_s": poll_interval, "poll_rounds": rounds, "billing_interval_s": billing_interval,
                       "billing_imports": imports, "simulator_cpu_s": round(sim_cpu, 2)},
        "recharges": {"paid": len(paid), "credited": credited},
        "ratio": ratio,
        "ratio_idle": round(idle["mix"]["rps"] / idle["ping"]["rps"], 3) if idle["ping"]["rps"] else 0.0,
        "ratio_busy_vs_idle_ping": round(busy["mix"]["rps"] / idle["ping"]["rps"], 3) if idle["ping"]["rps"] else 0.0,
        "balance_p99_ms": {"idle": idle["mix"]["by_kind"].get("balance", {}).get("p99_ms"), "busy": balance_p99},
        "target": {"balance_p99_ms_max": 50, "ratio_min": 0.5},
        **({"paced": paced} if paced else {}),
        "meets_target": bool(balance_p99 is not None and balance_p99 < 50 and ratio >= 0.5 and errors == 0
                             and credited == len(paid) and any(r["finished"] for r in rounds)),
        "errors": errors,
    }


@click.command("load")
@click.option("--clients", type=int, default=50, show_default=True, help="concurrent tenants (keep-alive connections)")
@click.option("--seconds", type=float, default=20.0, show_default=True, help="per measurement (4 of them)")
@click.option("--gateways", type=int, default=200, show_default=True, help="polled gateways")
@click.option("--meters-per-gateway", type=int, default=25, show_default=True)
@click.option("--import-meters", type=int, default=5000, show_default=True,
              help="meters whose readings a billing process imports every --billing-interval")
@click.option("--poll-interval", type=float, default=60.0, show_default=True,
              help="seconds between poll rounds of every gateway (shorter for short runs)")
@click.option("--billing-interval", type=float, default=None, help="seconds between imports (default: poll's)")
@click.option("--web-workers", type=int, default=2, show_default=True, help="gunicorn workers of `meterpay serve`")
@click.option("--threads", type=int, default=None, help="threads per gunicorn worker (METERPAY_WEB_THREADS)")
@click.option("--job-workers", type=int, default=1, show_default=True, help="`meterpay worker` processes")
@click.option("--mix", default=None,
              help="request weights, e.g. balance=70,usage=10,order=8,login=10,recharge=2 (the default)")
@click.option("--paced-rps", type=float, default=0.0, show_default=True,
              help="also measure the mix with the clients together sending this many requests a second (each on "
                   "its own schedule, lateness counted), idle and busy; 0: not measured")
@click.option("--port-base", type=int, default=26000, show_default=True, help="first simulator gateway port")
@click.option("--database-url", default=None, help="PostgreSQL (a scratch database beside it); default: configured")
@click.option("--redis-url", default=None, help="default: a private redis-server on a free port")
@friendly_errors
def bench_load(clients, seconds, gateways, meters_per_gateway, import_meters, poll_interval, billing_interval,
               web_workers, threads, job_workers, mix, paced_rps, port_base, database_url, redis_url):
    """Tenant traffic on `meterpay serve` while polling and billing run, next to the idle system."""
    from core.errors import ValidationError
    if not 1 <= clients <= 500 or not 0.5 <= seconds <= 600 or not 1 <= gateways <= 5000 \
            or not 1 <= meters_per_gateway <= 247 or import_meters < 0 or poll_interval <= 0 \
            or clients > gateways * meters_per_gateway + import_meters or paced_rps < 0:
        raise ValidationError("--clients 1-500 (at most one per meter), --seconds 0.5-600, --gateways 1-5000, "
                              "--meters-per-gateway 1-247, --import-meters >= 0, --poll-interval > 0")
    weights = MIX
    if mix:
        try:
            weights = tuple((k.strip(), int(v)) for k, v in (part.split("=") for part in mix.split(",")))
        except ValueError:
            raise ValidationError("--mix: kind=weight,... e.g. balance=60,usage=15") from None
        unknown = {k for k, _ in weights} - {k for k, _ in MIX}
        if unknown or not any(w > 0 for _, w in weights) or any(w < 0 for _, w in weights):
            raise ValidationError(f"--mix: kinds are {', '.join(k for k, _ in MIX)}, weights >= 0, one > 0")
    print(json.dumps(load_test(clients=clients, seconds=seconds, gateways=gateways, per_gateway=meters_per_gateway,
                               import_meters=import_meters, poll_interval=poll_interval,
                               billing_interval=billing_interval or poll_interval, web_workers=web_workers,
                               threads=threads, job_workers=job_workers, port_base=port_base,
                               database_url=database_url, redis_url=redis_url, mix=weights, paced_rps=paced_rps)))


