"""``meterpay bench api``: the balance endpoint under load on ``meterpay serve``, next to a trivial one.

On a scratch database (PostgreSQL beside METERPAY_DATABASE_URL when it is PostgreSQL, else a temp
SQLite file) it opens one account, binds a tenant and issues its token, starts ``meterpay serve``
(gunicorn, 2 workers) on a free loopback port, and drives it with a small asyncio load tool:
``--concurrency`` keep-alive connections (default 50), each sending requests back to back for
``--seconds``. In the same run it measures ``GET /api/v1/ping`` (no auth, no database: the
baseline) and ``GET /api/v1/accounts/<id>/balance`` (token check, binding check, balance read).
It prints one JSON line: requests/s, p50/p99 latency, errors, and ``ratio`` = balance / ping rps.
Target: ratio >= 0.5 and balance p99 < 50 ms at 50 clients.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import click

from meterpay.cli.base import friendly_errors
from meterpay.cli.bench import bench


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scratch_db(url: str):
    import sqlalchemy as sa
    if not url.startswith("postgresql"):
        path = os.path.join(tempfile.mkdtemp(prefix="mp-bench-api-"), "bench.db")
        return f"sqlite:///{path}", lambda: os.path.exists(path) and os.remove(path)
    u = sa.engine.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"mp_bench_api_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(u.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop():
        from core.db import reset_engine
        reset_engine()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return u.set(database=name).render_as_string(hide_password=False), drop


def _seed(url: str) -> tuple[int, str]:
    """One site, room, account (88.00 yuan) and a tenant bound to it; returns (account id, token)."""
    from core.accounts import MeterSpec, OpenAccountRequest, open_account
    from core.config import reset_settings
    from core.db import reset_engine, session_scope
    from core.migrate import upgrade
    from core.models import Building, Floor, Room, Site, TenantBinding
    from miniapp_api.auth import issue_token
    os.environ["METERPAY_DATABASE_URL"] = url
    reset_settings()
    reset_engine()
    upgrade(url)
    with session_scope() as s:
        site = Site(name="bench", settings={})
        s.add(site)
        s.flush()
        b = Building(site_id=site.id, name="A")
        s.add(b)
        s.flush()
        f = Floor(building_id=b.id, name="1")
        s.add(f)
        s.flush()
        room = Room(site_id=site.id, floor_id=f.id, number="101")
        s.add(room)
        s.flush()
        acct = open_account(s, OpenAccountRequest(room_id=room.id, tenant_name="bench", tenant_phone="13800000000",
                                                  meters=(MeterSpec(serial="BENCH-1"),), opening_balance_fen=8800))
        s.add(TenantBinding(openid="bench-openid", account_id=acct.id, tenant_id=acct.tenant_id))
        account_id = acct.id
    return account_id, issue_token("bench-openid")


async def _client(host: str, port: int, request: bytes, stop_at: float, latencies: list[float],
                  errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if status != 200:
                errors.append(status)
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    except (asyncio.IncompleteReadError, ConnectionError):
        errors.append(0)
    finally:
        writer.close()


def load(host: str, port: int, path: str, headers: dict, concurrency: int, seconds: float) -> dict:
    """Keep ``concurrency`` keep-alive connections busy on ``path`` for ``seconds``."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode()
    latencies: list[float] = []
    errors: list[int] = []

    async def main():
        stop_at = time.perf_counter() + seconds
        await asyncio.gather(*[_client(host, port, request, stop_at, latencies, errors)
                               for _ in range(concurrency)])
    t0 = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - t0
    lat = sorted(latencies)
    p = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2)) if lat else (lambda q: None)
    return {"requests": len(lat), "rps": round(len(lat) / elapsed, 1), "p50_ms": p(0.50), "p99_ms": p(0.99),
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None, "errors": len(errors)}


def _wait_up(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("meterpay serve exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("meterpay serve did not start")


@bench.command("api")
@click.option("--concurrency", type=int, default=50, show_default=True)
@click.option("--seconds", type=float, default=5.0, show_default=True, help="per endpoint, after a warm-up")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=None, help="threads per worker (METERPAY_WEB_THREADS, serve's default 4)")
@friendly_errors
def bench_api(concurrency: int, seconds: float, workers: int, threads: int | None) -> None:
    """Balance endpoint vs a trivial endpoint on `meterpay serve` (gunicorn), at N concurrent clients."""
    if not 1 <= concurrency <= 1000 or not 0.5 <= seconds <= 120:
        from core.errors import ValidationError
        raise ValidationError("--concurrency must be 1-1000 and --seconds 0.5-120")
    from core.config import get_settings
    url, drop = _scratch_db(get_settings().database_url)
    proc = None
    try:
        account_id, token = _seed(url)
        port = _free_port()
        env = {**os.environ, "METERPAY_DATABASE_URL": url, "METERPAY_PORT": str(port),
               "METERPAY_SECRET_KEY": get_settings().secret_key, "METERPAY_LOG_LEVEL": "WARNING"}
        env.pop("METERPAY_REDIS_URL", None)
        if threads:
            env["METERPAY_WEB_THREADS"] = str(threads)
        proc = subprocess.Popen([sys.executable, "-m", "meterpay.cli.__main__", "serve", "--workers", str(workers)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_up(port, proc)
        auth = {"Authorization": f"Bearer {token}"}
        balance_path = f"/api/v1/accounts/{account_id}/balance"
        load("127.0.0.1", port, "/api/v1/ping", {}, concurrency, min(1.0, seconds))  # warm-up
        load("127.0.0.1", port, balance_path, auth, concurrency, min(1.0, seconds))
        trivial = load("127.0.0.1", port, "/api/v1/ping", {}, concurrency, seconds)
        balance = load("127.0.0.1", port, balance_path, auth, concurrency, seconds)
        ratio = round(balance["rps"] / trivial["rps"], 3) if trivial["rps"] else None
        print(json.dumps({
            "bench": "api", "server": f"meterpay serve (gunicorn, {workers} workers x "
                                                f"{env.get('METERPAY_WEB_THREADS', '4')} threads)",
            "database": url.split(":", 1)[0], "concurrency": concurrency, "seconds": seconds,
            "trivial": {"path": "/api/v1/ping", **trivial}, "balance": {"path": balance_path, **balance},
            "ratio": ratio, "target": {"ratio_min": 0.5, "p99_ms_max": 50},
            "meets_target": bool(ratio and ratio >= 0.5 and balance["p99_ms"] is not None
                                 and balance["p99_ms"] < 50 and balance["errors"] == 0),
        }))
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop()
