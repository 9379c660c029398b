"""Fixtures of the bot area: the local WeChat/SMS/voice sandbox over real HTTP, an SMTP server,
WeChat endpoint credentials, a frozen clock, and an outbox whose executor does nothing (the
hardware simulator end-to-end test starts the real one)."""
from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from datetime import datetime

import pytest
import requests

TOKEN = "meterpay-test-token"
APPID = "wx0123456789abcdef"
AES_KEY = base64.b64encode(hashlib.sha256(b"meterpay-test").digest()).decode().rstrip("=")  # 43 characters

import core.alarms.balance  # noqa: E402  (registers the balance and device alarm listeners)
import core.supply.auto  # noqa: E402,F401


def noop_executor(command_id: int) -> None:
    """Stands in for hardware.executor.execute_command: the command row stays pending."""


@pytest.fixture(autouse=True)
def _quiet_outbox(request, monkeypatch):
    """Commands stay pending rows, unless the test runs against the simulator (``sim_gateway``)."""
    if "sim_gateway" in request.fixturenames:
        return
    from core.supply import commands
    monkeypatch.setattr(commands, "EXECUTOR", "tests.bot.conftest.noop_executor")


@pytest.fixture
def sim_gateway(monkeypatch):
    """``gw = sim_gateway("modbus-rtu", [("acrel-ddsy1352", "1")])``: a simulated RS485 gateway over
    real TCP (the hardware area's simulator), executed by the real command executor."""
    from hardware.simulator import SimGateway, Simulator, make_meter
    from hardware.simulator.meters import SimClock
    monkeypatch.setenv("METERPAY_METER_TIMEOUT", "0.5")
    monkeypatch.setenv("METERPAY_METER_RETRIES", "0")
    monkeypatch.setenv("METERPAY_COMMAND_BACKOFF", "0")
    sims = []

    def start(protocol: str, meters: list[tuple[str, str]]):
        clock = SimClock(speed=1)
        gw = SimGateway(0, protocol, [make_meter(p, a, clock, seed=i) for i, (p, a) in enumerate(meters)],
                        baud=38400, turnaround=0.002, fault_rate=0.0, slow_seconds=1.0)
        sims.append(Simulator([gw]).start_in_thread())
        gw.url = f"tcp://127.0.0.1:{gw.port}"
        return gw
    yield start
    for sim in sims:
        sim.stop_thread()


@pytest.fixture(autouse=True)
def _fresh_dedupe():
    from bot import binding, dedupe
    dedupe.forget_all()
    binding._pending.clear()
    yield
    dedupe.forget_all()
    binding._pending.clear()


@pytest.fixture(scope="session")
def sandbox_base():
    from werkzeug.serving import make_server

    from meterpay.sandbox import create_sandbox_app
    server = make_server("127.0.0.1", 0, create_sandbox_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def sandbox(sandbox_base, monkeypatch):
    """The sandbox with every bot setting pointing at it; ``sandbox.sent(kind)`` reads back."""
    env = {
        "METERPAY_WECHAT_TOKEN": TOKEN, "METERPAY_WECHAT_AES_KEY": AES_KEY, "METERPAY_WECHAT_APPID": APPID,
        "METERPAY_WECHAT_SECRET": "oa-secret", "METERPAY_WECHAT_API_BASE": sandbox_base,
        "METERPAY_WECHAT_TEMPLATE_BALANCE": "tpl-balance", "METERPAY_WECHAT_TEMPLATE_DEVICE": "tpl-device",
        "METERPAY_WECHAT_TEMPLATE_SUPPLY": "tpl-supply", "METERPAY_MINIAPP_APPID": "wxminiapp000001",
        "METERPAY_MINIAPP_SECRET": "mini-secret", "METERPAY_MINIAPP_TEMPLATE_BALANCE": "sub-balance",
        "METERPAY_SMS_URL": f"{sandbox_base}/sandbox/sms/send", "METERPAY_SMS_KEY": "sms-key",
        "METERPAY_VOICE_URL": f"{sandbox_base}/sandbox/voice/call", "METERPAY_VOICE_KEY": "voice-key",
        "METERPAY_FRIENDLY_NIGHTS": "off", "METERPAY_FRIENDLY_HOLIDAYS": "0", "METERPAY_FRIENDLY_WEEKENDS": "0",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    requests.delete(f"{sandbox_base}/_sandbox/bot/sent", timeout=5)

    class Sandbox:
        base = sandbox_base

        @staticmethod
        def sent(kind: str | None = None) -> list[dict]:
            params = {"kind": kind} if kind else {}
            return [r["payload"] for r in requests.get(f"{sandbox_base}/_sandbox/bot/sent", params=params,
                                                       timeout=5).json()]

        @staticmethod
        def fail(kind: str, times: int = 1) -> None:
            requests.post(f"{sandbox_base}/_sandbox/bot/fail", json={"kind": kind, "times": times}, timeout=5)
    yield Sandbox()
    requests.delete(f"{sandbox_base}/_sandbox/bot/sent", timeout=5)


@pytest.fixture
def smtp_server(monkeypatch):
    """A local SMTP server (aiosmtpd); ``.messages`` holds what it received."""
    from aiosmtpd.controller import Controller

    class Collect:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    handler = Collect()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    monkeypatch.setenv("METERPAY_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("METERPAY_SMTP_PORT", str(port))
    monkeypatch.setenv("METERPAY_SMTP_FROM", "alarms@meterpay.test")
    yield handler
    controller.stop()


@pytest.fixture
def clock_at():
    """``clock_at(datetime)`` freezes core.clock there (travel again by calling it again)."""
    from core import clock

    def travel(when: datetime) -> datetime:
        clock.set_now(when)
        return when
    yield travel
    clock.set_now(None)


def wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    return predicate()
