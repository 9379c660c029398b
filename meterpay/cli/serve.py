"""Processes: ``serve`` (web, production style), ``worker`` (jobs), ``scheduler`` (periodic jobs),
``sandbox`` (local payment/WeChat fakes) and ``run`` (everything at once, for the demo)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import click

from core import config
from meterpay import settings as _declared  # noqa: F401  (declares the process variables)
from meterpay.cli.base import cli, fail, friendly_errors


def _settings():
    from core.config import get_settings
    return get_settings()


def _check_secret_key(*, demo: bool) -> None:
    """Refuse to serve with a secret key anyone could know (unset, the documented default, short):
    it signs the managers' session cookies. The demo (`run --demo`) only warns."""
    problem = config.secret_key_problem(config.raw("METERPAY_SECRET_KEY"))
    if problem is None:
        return
    if not demo:
        fail(f"{problem}; {config.secret_key_advice()} (only `meterpay run --demo` starts without it)")
    click.echo(f"warning: {problem}: fine for the local demo, never for a site people use; "
               f"{config.secret_key_advice()}", err=True)


@cli.command()
@click.option("--workers", type=int, default=None, help="gunicorn workers (METERPAY_WEB_WORKERS, default 2)")
@click.option("--host", default=None, help="bind address (METERPAY_HOST, default 127.0.0.1)")
def serve(workers: int | None, host: str | None) -> None:
    """The web app alone, production style (gunicorn) on METERPAY_PORT.

    Refuses to start (exit 2) when METERPAY_SECRET_KEY is unset, the documented default or shorter
    than 32 characters."""
    _check_secret_key(demo=False)
    settings = _settings()
    workers = workers or config.get("METERPAY_WEB_WORKERS")
    host = host or config.get("METERPAY_HOST")
    # Worker class, keep-alive and the access log (off unless METERPAY_ACCESS_LOG=1) are in the config.
    args = [sys.executable, "-m", "gunicorn", "-c", "python:meterpay.gunicorn_conf", "meterpay.wsgi:app",
            "--bind", f"{host}:{settings.port}", "--workers", str(workers),
            "--threads", str(config.get("METERPAY_WEB_THREADS"))]
    os.execv(sys.executable, args)


@cli.command()
@click.option("--queues", default="meters,payments,billing,notify,default", show_default=True)
@click.option("--burst", is_flag=True, help="exit when the queues are empty")
@click.option("--name", default=None, help="worker name prefix (default: RQ's host.pid)")
@friendly_errors
def worker(queues: str, burst: bool, name: str | None) -> None:
    """Run jobs from Redis (RQ). Start several on several machines to scale out.

    Rides out Redis and PostgreSQL outages of any length (meterpay/worker.py says how); SIGTERM
    stops it after the running job. Run it under a supervisor all the same (deploy/)."""
    settings = _settings()
    if not settings.redis_url:
        fail("METERPAY_REDIS_URL is not set: without Redis, jobs run inside `meterpay run`")
    from core.jobs import QUEUES
    names = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = [q for q in names if q not in QUEUES]
    if unknown or not names:
        fail(f"unknown queue(s) {', '.join(unknown) or '(none given)'}; the queues are {', '.join(QUEUES)}")
    from meterpay import logs, metrics
    logs.configure("worker")
    metrics.configure("worker")
    from core.signals import load_listeners
    from meterpay.worker import run_worker
    load_listeners()
    metrics.install()
    try:
        run_worker(names, burst=burst, name=name)
    finally:
        metrics.process_exit()


@cli.command()
@friendly_errors
def scheduler() -> None:
    """Enqueue the periodic jobs (meterpay/periodic.py) on Redis with RQ's CronScheduler.

    Running two is harmless: each job slot runs once (a Redis key per slot decides). Rides out
    Redis outages of any length, logging the outage once when it starts and once when it ends;
    writes a heartbeat every METERPAY_SCHEDULER_HEARTBEAT seconds (`/healthz`, `meterpay status`).
    """
    settings = _settings()
    if not settings.redis_url:
        fail("METERPAY_REDIS_URL is not set: without Redis, periodic jobs run inside `meterpay run`")
    from meterpay import logs, metrics
    logs.configure("scheduler")
    metrics.configure("scheduler")
    from core.jobs import run_cron
    from meterpay.periodic import periodic_jobs
    try:
        run_cron(periodic_jobs(), heartbeat=config.get("METERPAY_SCHEDULER_HEARTBEAT"))
    finally:
        metrics.process_exit()


@cli.command()
@click.option("--port", type=int, default=lambda: config.get("METERPAY_SANDBOX_PORT"),
              show_default="5055")
@click.option("--host", default="127.0.0.1", show_default=True)
def sandbox(port: int, host: str) -> None:
    """Local stand-ins for WeChat, WeChat Pay, Alipay, SMS and voice (demo and tests only)."""
    from werkzeug.serving import run_simple

    from meterpay.sandbox import create_sandbox_app
    click.echo(f"SANDBOX payment/WeChat fakes on http://{host}:{port} (not real money)")
    run_simple(host, port, create_sandbox_app(), threaded=True, use_reloader=False)


SANDBOX_ENV = {
    "METERPAY_SANDBOX": "1",
    "METERPAY_WECHAT_API_BASE": "http://127.0.0.1:{port}",
    "METERPAY_WXPAY_API_BASE": "http://127.0.0.1:{port}",
    "METERPAY_ALIPAY_GATEWAY": "http://127.0.0.1:{port}/gateway.do",
    # the sandbox's SMS and voice stand-ins (bot/sandbox.py), so the demo's alarms are delivered
    "METERPAY_SMS_URL": "http://127.0.0.1:{port}/sandbox/sms/send",
    "METERPAY_VOICE_URL": "http://127.0.0.1:{port}/sandbox/voice/call",
}


def apply_sandbox_env(port: int | None = None) -> None:
    """Point this process at the local sandbox (`meterpay sandbox` on METERPAY_SANDBOX_PORT), as the
    demo does; variables set explicitly are kept."""
    port = port or config.get("METERPAY_SANDBOX_PORT")
    for k, v in SANDBOX_ENV.items():
        os.environ.setdefault(k, v.format(port=port))
    config.reset_settings()


@cli.command()
@click.option("--demo/--no-demo", default=False, help="also start the meter simulator and the payment sandbox")
@click.option("--host", default=None, help="bind address (METERPAY_HOST, default 127.0.0.1)")
def run(demo: bool, host: str | None) -> None:
    """Everything in the foreground: web app, job runner, periodic jobs (and with --demo the meter
    simulator and the sandbox). Without Redis the jobs run in this process; with Redis this starts
    an RQ worker and the scheduler as child processes.

    Without --demo it refuses to start (exit 2) when METERPAY_SECRET_KEY is unset, the documented
    default or shorter than 32 characters; with --demo it warns and goes on."""
    from core.signals import load_listeners

    _check_secret_key(demo=demo)

    children: list[subprocess.Popen] = []
    sandbox_port = config.get("METERPAY_SANDBOX_PORT")
    exe = [sys.executable, "-m", "meterpay.cli.__main__"]
    if demo:
        apply_sandbox_env(sandbox_port)
        children.append(subprocess.Popen(exe + ["sandbox", "--port", str(sandbox_port)]))
        children.append(subprocess.Popen(exe + ["simulate", "--from-db"]))
    settings = _settings()
    if settings.redis_url:
        children.append(subprocess.Popen(exe + ["worker"]))
        # batch tasks on a worker of their own: a long task never holds up single commands and polls
        children.append(subprocess.Popen(exe + ["worker", "--queues", "batch"]))
        children.append(subprocess.Popen(exe + ["scheduler"]))
        scheduler_thread = None
    else:
        from core.jobs import InProcessScheduler
        from meterpay.periodic import periodic_jobs
        scheduler_thread = InProcessScheduler(periodic_jobs())
        scheduler_thread.start()

    def stop(*_):
        for c in children:
            if c.poll() is None:
                c.terminate()
        for c in children:
            try:
                c.wait(timeout=5)
            except subprocess.TimeoutExpired:
                c.kill()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    load_listeners()
    from werkzeug.serving import make_server

    from meterpay.app import create_app
    host = host or config.get("METERPAY_HOST")
    server = make_server(host, settings.port, create_app(), threaded=True)
    click.echo(f"meterpay on http://{host}:{settings.port}/  (admin: /admin/, health: /healthz)")
    if demo:
        from core.sites.demo import DEMO_MANAGER
        click.echo(f"demo manager sign-in: {DEMO_MANAGER[0]} / {DEMO_MANAGER[1]}")
        click.echo(f"SANDBOX mode: payments and WeChat are local fakes on http://127.0.0.1:{sandbox_port}")
    jobs = "RQ worker + scheduler" if settings.redis_url else "in-process job runner"
    click.echo(f"jobs: {jobs}; press Ctrl+C to stop")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if scheduler_thread:
            scheduler_thread.stop()
        stop()
