"""``meterpay bench api``: the balance endpoint under load on ``meterpay serve``, next to a trivial one.

On a scratch database (PostgreSQL beside METERPAY_DATABASE_URL when it is PostgreSQL, else a temp
SQLite file) it opens one account, binds a tenant and issues its token, starts ``meterpay serve``
(gunicorn, 2 workers) on a free loopback port, and drives it with a load tool: ``wrk`` when it is
installed (C, one thread, so it leaves the cores to the server; a Lua script adds the
Authorization header and prints the numbers), else a small asyncio loader in this process.
``--concurrency`` keep-alive connections (default 50) send requests back to back for ``--seconds``.
Each run measures ``GET /api/v1/ping`` (no auth, no database: the baseline) and then
``GET /api/v1/accounts/<id>/balance`` (token check, binding check, balance read) on the same
server; ``--runs N`` repeats the pair and reports every run, the median and the spread.
It prints one JSON line: requests/s, p50/p99 latency, errors, ``ratio`` = balance / ping rps,
and the load averages before and after. Target: ratio >= 0.5 and balance p99 < 50 ms at 50 clients.
After the load a recharge is committed from this process and the server must answer the new
balance, on new connections (either worker), within 5 s (``freshness``: how long it took, and
that 40 reads after it all agree): the balance cache (``--no-balance-cache`` turns it off) may
be fast but never stale.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

import click

from bench.common import scratch_database
from bench.fixtures import one_room_account
from meterpay.cli.base import friendly_errors


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _seed(url: str) -> tuple[int, str]:
    """One site, room, account (88.00 yuan) and a tenant bound to it; returns (account id, token)."""
    from core.config import reset_settings
    from core.db import reset_engine, session_scope
    from core.migrate import upgrade
    from core.models import TenantBinding
    from miniapp_api.auth import issue_token
    os.environ["METERPAY_DATABASE_URL"] = url
    reset_settings()
    reset_engine()
    upgrade(url)
    with session_scope() as s:
        acct = one_room_account(s, site="bench", floor="1", room="101", tenant="bench", serial="BENCH-1",
                                balance_fen=8800, phone="13800000000")
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


def load_python(host: str, port: int, path: str, headers: dict, concurrency: int, seconds: float) -> dict:
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
            "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None, "errors": len(errors),
            # what went wrong, so a failed run says it: an HTTP status, or "connection" for a dropped one
            "error_kinds": dict(Counter("connection" if e == 0 else str(e) for e in errors))}



WRK_SCRIPT = r"""
local auth = os.getenv("BENCH_AUTHORIZATION")
if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    latency.mean, e.status + e.connect + e.read + e.write + e.timeout))
end
"""


def load_wrk(host: str, port: int, path: str, headers: dict, concurrency: int, seconds: float) -> dict:
    """The same measurement with wrk (one thread, ``concurrency`` connections, ``seconds`` long)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
    env = {**os.environ, "BENCH_AUTHORIZATION": headers.get("Authorization", "")}
    try:
        out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                              "-s", f.name, f"http://{host}:{port}{path}"],
                             env=env, capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    finally:
        os.remove(f.name)
    line = next(ln for ln in out.splitlines() if ln.startswith("BENCH "))
    r = json.loads(line[6:])
    return {"requests": r["requests"], "rps": round(r["requests"] / (r["duration_us"] / 1e6), 1),
            "p50_ms": round(r["p50_us"] / 1000, 2), "p99_ms": round(r["p99_us"] / 1000, 2),
            "mean_ms": round(r["mean_us"] / 1000, 2), "errors": r["errors"]}


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its children (the gunicorn master and workers); Linux only."""
    def stat(p: str) -> list[str] | None:
        try:
            with open(f"/proc/{p}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
    if not os.path.exists("/proc/self/stat"):
        return None
    ticks = 0
    for p in os.listdir("/proc"):
        if p.isdigit() and (fields := stat(p)) and (int(p) == pid or int(fields[1]) == pid):
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _measured(load, pid: int, *args) -> dict:
    """One load run, plus the server's CPU milliseconds per request (less noisy than rates on a busy box)."""
    before = _cpu_seconds(pid)
    result = load(*args)
    after = _cpu_seconds(pid)
    if before is not None and after is not None and result["requests"]:
        result["server_cpu_ms_per_request"] = round((after - before) * 1000 / result["requests"], 3)
    return result


def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _spread(runs: list[dict], side: str, key: str) -> dict:
    values = [r[side][key] for r in runs]
    return {"median": round(statistics.median(values), 2), "min": min(values), "max": max(values)}


def _get_balance(port: int, path: str, token: str) -> str | None:
    """One GET of the balance on a new connection (so either worker may answer); the yuan string."""
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())["balance"]
    except OSError:
        return None


def freshness_check(port: int, path: str, token: str, account_id: int, timeout: float = 5.0) -> dict:
    """After the load: a recharge committed here (another process than the server) must be what
    the server answers, on every worker, within ``timeout``. Returns how long it took to show."""
    from core.db import session_scope
    from core.ledger import cashdesk
    from core.ledger.money import format_fen
    with session_scope() as s:
        from core.ledger import account_balance
        before = account_balance(s, account_id)
    expected = format_fen(before + 100)
    t0 = time.perf_counter()
    with session_scope() as s:
        cashdesk.desk_recharge(s, account_id, 100, actor="bench", front="bench")
    committed = time.perf_counter()
    deadline = committed + timeout
    first = None
    while time.perf_counter() < deadline:
        if _get_balance(port, path, token) == expected:
            first = time.perf_counter()
            break
        time.sleep(0.001)
    stale = sum(1 for _ in range(40) if _get_balance(port, path, token) != expected) if first else None
    return {"recharge_visible_after_ms": None if first is None else round((first - committed) * 1000, 2),
            "commit_ms": round((committed - t0) * 1000, 2), "stale_reads_after": stale,
            "ok": first is not None and stale == 0}


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


@click.command("api")
@click.option("--concurrency", type=int, default=50, show_default=True)
@click.option("--seconds", type=float, default=5.0, show_default=True, help="per endpoint and run, after a warm-up")
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--threads", type=int, default=None,
              help="threads per worker (METERPAY_WEB_THREADS, serve's default)")
@click.option("--runs", type=int, default=1, show_default=True, help="ping+balance pairs; reports median and spread")
@click.option("--tool", type=click.Choice(["auto", "wrk", "python"]), default="auto", show_default=True,
              help="load tool: wrk if installed (auto), or the asyncio loader")
@click.option("--balance-cache/--no-balance-cache", default=True, show_default=True,
              help="the server's per-process balance cache (METERPAY_BALANCE_CACHE; PostgreSQL only)")
@friendly_errors
def bench_api(concurrency: int, seconds: float, workers: int, threads: int | None, runs: int, tool: str,
              balance_cache: bool) -> None:
    """Balance endpoint vs a trivial endpoint on `meterpay serve` (gunicorn), at N concurrent clients."""
    from core.errors import ValidationError
    if not 1 <= concurrency <= 1000 or not 0.5 <= seconds <= 120 or not 1 <= runs <= 20:
        raise ValidationError("--concurrency must be 1-1000, --seconds 0.5-120 and --runs 1-20")
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    elif tool == "wrk" and not shutil.which("wrk"):
        raise ValidationError("wrk is not installed (apt-get install wrk), or use --tool python")
    load = load_wrk if tool == "wrk" else load_python
    from core.config import get_settings, raw, reset_settings, secret_key_problem
    from core.db import reset_engine
    if secret_key_problem(raw("METERPAY_SECRET_KEY")):
        # `serve` refuses a weak key; the benchmark's server and tokens are throwaway, so use a random one
        import secrets
        os.environ["METERPAY_SECRET_KEY"] = secrets.token_urlsafe(48)
        reset_settings()
    url, drop = scratch_database(get_settings().database_url, "bench_api")
    saved_url = os.environ.get("METERPAY_DATABASE_URL")
    proc = None
    try:
        account_id, token = _seed(url)
        port = _free_port()
        env = {**os.environ, "METERPAY_DATABASE_URL": url, "METERPAY_PORT": str(port),
               "METERPAY_SECRET_KEY": get_settings().secret_key, "METERPAY_LOG_LEVEL": "WARNING"}
        env.pop("METERPAY_REDIS_URL", None)
        if threads:
            env["METERPAY_WEB_THREADS"] = str(threads)
        env["METERPAY_BALANCE_CACHE"] = "1" if balance_cache else "0"
        proc = subprocess.Popen([sys.executable, "-m", "meterpay.cli.__main__", "serve", "--workers", str(workers)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_up(port, proc)
        auth = {"Authorization": f"Bearer {token}"}
        balance_path = f"/api/v1/accounts/{account_id}/balance"
        load_before = _loadavg()
        load("127.0.0.1", port, "/api/v1/ping", {}, concurrency, min(1.0, seconds))  # warm-up
        load("127.0.0.1", port, balance_path, auth, concurrency, min(1.0, seconds))
        results = []
        for _ in range(runs):
            trivial = _measured(load, proc.pid, "127.0.0.1", port, "/api/v1/ping", {}, concurrency, seconds)
            balance = _measured(load, proc.pid, "127.0.0.1", port, balance_path, auth, concurrency, seconds)
            ratio = round(balance["rps"] / trivial["rps"], 3) if trivial["rps"] else 0.0
            results.append({"trivial": trivial, "balance": balance, "ratio": ratio})
        fresh = freshness_check(port, balance_path, token, account_id)
        median = sorted(results, key=lambda r: r["ratio"])[(len(results) - 1) // 2]
        errors = sum(r["balance"]["errors"] + r["trivial"]["errors"] for r in results)
        p99 = statistics.median(r["balance"]["p99_ms"] or 0 for r in results)
        ratio = statistics.median(r["ratio"] for r in results)
        from meterpay import gunicorn_conf
        print(json.dumps({
            "bench": "api", "tool": tool,
            "server": f"meterpay serve (gunicorn {gunicorn_conf.worker_class}, {workers} workers x "
                      f"{env.get('METERPAY_WEB_THREADS', gunicorn_conf.DEFAULT_THREADS)} threads)",
            "gil_switch_interval_ms": gunicorn_conf.switch_interval_ms,
            "access_log": gunicorn_conf.accesslog is not None, "database": url.split(":", 1)[0],
            "balance_cache": balance_cache and url.startswith("postgresql"),
            "concurrency": concurrency, "seconds": seconds,
            "trivial": {"path": "/api/v1/ping", **median["trivial"]},
            "balance": {"path": balance_path, **median["balance"]},
            "ratio": median["ratio"], "runs": results,
            "median": {"ratio": round(ratio, 3),
                       "trivial_rps": _spread(results, "trivial", "rps"),
                       "balance_rps": _spread(results, "balance", "rps"),
                       "trivial_p99_ms": _spread(results, "trivial", "p99_ms"),
                       "balance_p99_ms": _spread(results, "balance", "p99_ms")},
            "loadavg_before": load_before, "loadavg_after": _loadavg(), "cpus": os.cpu_count(),
            "target": {"ratio_min": 0.5, "p99_ms_max": 50},
            "freshness": fresh,
            "meets_target": bool(ratio >= 0.5 and p99 < 50 and errors == 0 and fresh["ok"]),
        }))
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        drop()
        if saved_url is None:  # _seed pointed this process at the scratch database; point it back
            os.environ.pop("METERPAY_DATABASE_URL", None)
        else:
            os.environ["METERPAY_DATABASE_URL"] = saved_url
        reset_settings()
        reset_engine()
