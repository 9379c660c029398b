"""/metrics (prometheus_client) counts requests by route, jobs by queue and outcome, poll rounds,
commands by kind and outcome, payments and alarms, added up across processes; logs can be JSON;
ProxyFix takes the client's address from METERPAY_PROXY_HOPS proxies."""
from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from flask import request

from core import jobs, signals
from tests.core.throwaway import free_port

ROOT = Path(__file__).resolve().parents[2]


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_by_route(client):
    before = sample(client.get("/metrics").text, "meterpay_http_requests_total", route="/healthz", status="200")
    for _ in range(3):
        client.get("/healthz")
    text = client.get("/metrics").text
    assert sample(text, "meterpay_http_requests_total", route="/healthz", method="GET", status="200") == before + 3
    assert sample(text, "meterpay_http_request_seconds_count", route="/healthz", method="GET") >= 3
    assert 'meterpay_health_ok{check="database"} 1.0' in text


def test_metrics_count_jobs_poll_rounds_and_enqueue_failures(client):
    from meterpay import metrics
    metrics.install()
    jobs.observe("job_finished", queue="meters", func="core.jobs.run_periodic",
                 args=("meters-poll", "hardware.poller.poll_due", 60), outcome="ok", seconds=2.0,
                 result={"meters": 10, "ok": 9, "failed": 1, "seconds": 1.5})
    jobs.observe("job_finished", queue="notify", func="bot.delivery.deliver", args=(999999,), outcome="failed",
                 seconds=0.1)
    jobs.observe("enqueue_failed", queue="meters", func="hardware.executor.execute_command")
    jobs.observe("poll_gateway", gateway="gw-7", meters=5, failed=2, seconds=0.8)
    text = client.get("/metrics").text
    assert sample(text, "meterpay_jobs_total", queue="meters", job="periodic:meters-poll", outcome="ok") >= 1
    assert sample(text, "meterpay_poll_rounds_total", outcome="ok") >= 1
    assert sample(text, "meterpay_poll_meters_total", outcome="failed") >= 1
    assert sample(text, "meterpay_poll_round_seconds_count") >= 1
    assert sample(text, "meterpay_alarms_total", channel="?", outcome="error") >= 1
    assert sample(text, "meterpay_enqueue_failures_total", queue="meters") >= 1
    assert sample(text, "meterpay_poll_gateway_reads_total", gateway="gw-7", outcome="failed") >= 2


def test_metrics_count_commands_by_kind_and_payments_by_channel(client, session, factory):
    from core.db import session_scope
    from core.models import MeterCommand, PaymentOrder
    from core.sites.accounts import MeterSpec
    from core.supply import commands
    from meterpay import metrics
    metrics.install()
    account = factory.account(meters=(MeterSpec(serial="MX-1"),))
    before = sample(client.get("/metrics").text, "meterpay_commands_total", kind="relay_off", state="failed")
    cmd = commands.request(session, account.meters[0].id, "relay_off", key="mx:1", enqueue=False)
    session.commit()
    with session_scope() as s:
        commands.transition(s, s.get(MeterCommand, cmd.id), "failed", "refused")
    order = PaymentOrder(order_no="MX-ORDER-1", account_id=account.id, channel="alipay", amount_fen=2500,
                         state="paid")
    session.add(order)
    session.commit()
    signals.dispatch("payment_settled", order_id=order.id)
    text = client.get("/metrics").text
    assert sample(text, "meterpay_commands_total", kind="relay_off", state="failed") == before + 1
    assert sample(text, "meterpay_command_seconds_count", kind="relay_off", state="failed") >= 1
    assert sample(text, "meterpay_payments_total", channel="alipay", outcome="paid") >= 1
    assert sample(text, "meterpay_payment_fen_total", channel="alipay", outcome="paid") >= 2500
    # settle's payload names the channel and amount: counted without reading the order
    paid = sample(text, "meterpay_payment_fen_total", channel="alipay", outcome="paid")
    signals.dispatch("payment_settled", order_id=10**12, channel="alipay", amount_fen=300)
    assert sample(client.get("/metrics").text, "meterpay_payment_fen_total", channel="alipay", outcome="paid") == paid + 300


WORKER_SCRIPT = """
import sys
from meterpay import metrics
metrics.configure("worker")
metrics.install()
from core import jobs
for _ in range(int(sys.argv[1])):
    jobs.observe("job_finished", queue="meters", func="x.y", args=(), outcome="ok", seconds=0.5)
print("counted", flush=True)
sys.stdin.readline()
metrics.process_exit()
"""


@pytest.mark.slow
def test_metrics_add_up_gunicorn_workers_and_rq_workers_and_forget_a_worker_that_exits(tmp_path):
    port = free_port()
    env = {**os.environ, "METERPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}", "METERPAY_PORT": str(port),
           "METERPAY_METRICS_DIR": str(tmp_path / "metrics"), "PYTHONPATH": str(ROOT)}
    env.pop("METERPAY_REDIS_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([sys.executable, "-m", "meterpay.cli", "db", "upgrade"], env=env, check=True, capture_output=True,
                   timeout=120)
    rq_worker = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, "4"], env=env, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
    assert rq_worker.stdout.readline().strip() == "counted"
    web = subprocess.Popen([sys.executable, "-m", "meterpay.cli", "serve", "--workers", "2"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def get(path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as resp:
            return resp.read().decode()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                get("/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or web.poll() is not None:
                    raise
                time.sleep(0.3)
        healthz_count = {"route": "/healthz", "method": "GET", "status": "200"}
        before = sample(get("/metrics"), "meterpay_http_requests_total", **healthz_count)
        for _ in range(20):
            get("/healthz")
        text = get("/metrics")
        # 20 more, whichever of the two gunicorn workers answered each (one new connection each)
        assert sample(text, "meterpay_http_requests_total", **healthz_count) == before + 20
        assert sample(text, "meterpay_jobs_total", queue="meters", job="x.y", outcome="ok") == 4
        rq_worker.communicate("\n", timeout=30)
        assert not list((tmp_path / "metrics").glob("worker-*")), "an RQ worker's files are removed when it exits"
        text = get("/metrics")
        assert sample(text, "meterpay_jobs_total", queue="meters", job="x.y", outcome="ok") == 0
        assert sample(text, "meterpay_http_requests_total", **healthz_count) == before + 20
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=30)
        if rq_worker.poll() is None:
            rq_worker.kill()


def test_json_logs_are_one_object_per_line(settings_env, capsys):
    from meterpay import logs
    settings_env(METERPAY_LOG_FORMAT="json")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        logs.configure("worker", "INFO", force=True)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("meterpay.test").exception("job %s failed", 42, extra={"queue": "meters"})
        line = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "meterpay.test" and entry["message"] == "job 42 failed"
    assert entry["process"] == "worker" and entry["queue"] == "meters" and "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("+00:00")


def test_proxy_hops_take_the_client_address_and_scheme_from_the_proxy(settings_env):
    from meterpay.app import create_app
    headers = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "pay.example.cn"}

    def seen(app):
        app.add_url_rule("/_seen", "seen", lambda: f"{request.remote_addr} {request.scheme} {request.host}")
        return app.test_client().get("/_seen", headers=headers).text
    assert seen(create_app({"TESTING": True})) == "127.0.0.1 http localhost"
    settings_env(METERPAY_PROXY_HOPS="1")
    assert seen(create_app({"TESTING": True})) == "203.0.113.5 https pay.example.cn"


def test_a_command_event_that_carries_its_kind_and_times_is_counted_without_a_query(client):
    from datetime import UTC, datetime, timedelta

    from meterpay import metrics
    metrics.install()
    before = sample(client.get("/metrics").text, "meterpay_command_seconds_count", kind="recharge", state="confirmed")
    now = datetime.now(UTC)
    signals.dispatch("command_finished", command_id=-1, state="confirmed", kind="recharge",
                     requested_at=now - timedelta(seconds=42), finished_at=now)
    text = client.get("/metrics").text
    assert sample(text, "meterpay_command_seconds_count", kind="recharge", state="confirmed") == before + 1
    assert sample(text, "meterpay_command_seconds_bucket", kind="recharge", state="confirmed", le="60.0") >= 1


def test_the_metric_objects_are_made_once_when_threads_ask_for_them_together(tmp_path):
    """A web worker's first requests arrive on several threads at once: each asks for the metrics,
    and a second registration would raise (a 500 on that request)."""
    code = (
        "import sys, threading\n"
        "sys.setswitchinterval(1e-6)\n"
        "from meterpay import metrics\n"
        "errors, start = [], threading.Barrier(16)\n"
        "def go():\n"
        "    start.wait()\n"
        "    try:\n"
        "        metrics.m()\n"
        "    except Exception as exc:\n"
        "        errors.append(repr(exc))\n"
        "threads = [threading.Thread(target=go) for _ in range(16)]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(len(errors))\n")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": "", "METERPAY_METRICS_DIR": str(tmp_path)}
    env.pop("PROMETHEUS_MULTIPROC_DIR")
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "0", out.stdout
