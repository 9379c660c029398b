"""Fixtures for the mini-program and payment tests.

Two real HTTP servers on localhost, each a werkzeug server in a thread: the meterpay app and
the sandbox (our fakes of WeChat, WeChat Pay and Alipay, signing with keys generated for this
test session). The app's provider settings point at the sandbox and the sandbox sends its
notifications to the app, as in the demo.
"""
from __future__ import annotations

import os
import threading

import pytest
import requests
from werkzeug.serving import make_server


class Server:
    def __init__(self, app):
        self.httpd = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()


@pytest.fixture(autouse=True)
def _empty_balance_caches():
    """Tables are emptied with TRUNCATE ... RESTART IDENTITY after each test, which sends no
    notification and reuses ids: forget cached balances with them."""
    yield
    from core.ledger import balance_cache
    balance_cache.clear_all()


@pytest.fixture(scope="session", autouse=True)
def sandbox_key_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sandbox-keys")
    os.environ["METERPAY_SANDBOX_KEY_DIR"] = str(d)
    from miniapp_api import sandbox_keys
    sandbox_keys.ensure_keys(str(d))
    yield d


@pytest.fixture(scope="session")
def fake_server(sandbox_key_dir):
    from meterpay.sandbox import create_sandbox_app
    server = Server(create_sandbox_app())
    yield server
    server.stop()


@pytest.fixture(scope="session")
def app_server(database_url, sandbox_key_dir):
    from meterpay.app import create_app
    server = Server(create_app({"TESTING": True}))
    yield server
    server.stop()


@pytest.fixture
def pay_env(monkeypatch, fake_server, app_server):
    """Sandbox mode, base URLs at the fake, callbacks at the app server."""
    from miniapp_api import sandbox
    sandbox.reset()
    for name, value in {
        "METERPAY_SANDBOX": "1",
        "METERPAY_WECHAT_API_BASE": fake_server.url,
        "METERPAY_WXPAY_API_BASE": fake_server.url,
        "METERPAY_ALIPAY_GATEWAY": f"{fake_server.url}/gateway.do",
        "METERPAY_PAY_NOTIFY_BASE": app_server.url,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("METERPAY_WECHAT_APPID", "METERPAY_WECHAT_SECRET", "METERPAY_MINIAPP_APPID",
                 "METERPAY_MINIAPP_SECRET", "METERPAY_PAY_TIMEOUT", "METERPAY_WXPAY_MCHID",
                 "METERPAY_WXPAY_APIV3_KEY", "METERPAY_WXPAY_PRIVATE_KEY_FILE", "METERPAY_WXPAY_CERT_SERIAL",
                 "METERPAY_WXPAY_PUBLIC_KEY_FILE", "METERPAY_WXPAY_PUBLIC_KEY_ID", "METERPAY_ALIPAY_APPID",
                 "METERPAY_ALIPAY_PRIVATE_KEY_FILE", "METERPAY_ALIPAY_PUBLIC_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    yield {"fake": fake_server.url, "app": app_server.url}
    sandbox.reset()


class Tenant:
    """A mini-program user talking to the app over HTTP."""

    def __init__(self, base: str, code: str):
        self.base = base
        self.http = requests.Session()
        r = self.http.post(f"{base}/api/v1/auth/login", json={"code": code}, timeout=10)
        assert r.status_code == 200, r.text
        self.token = r.json()["token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def get(self, path, **kw):
        return self.http.get(f"{self.base}/api/v1{path}", timeout=30, **kw)

    def post(self, path, json=None, **kw):
        return self.http.post(f"{self.base}/api/v1{path}", json=json, timeout=30, **kw)

    def bind(self, room_id: int, last4: str = "0000"):
        from miniapp_api.qr import binding_token
        return self.post("/bindings", {"token": binding_token(room_id), "phone_last4": last4})


@pytest.fixture
def tenant_login(pay_env):
    def login(code: str = "tenant-a") -> Tenant:
        return Tenant(pay_env["app"], code)
    return login


@pytest.fixture
def bound_tenant(factory, tenant_login):
    """An account with 10.00 yuan and a tenant logged in and bound to it."""
    def make(code="tenant-a", balance_fen=1000, billing_mode="prepaid-platform", **kw):
        account = factory.account(balance_fen=balance_fen, billing_mode=billing_mode, **kw)
        tenant = tenant_login(code)
        r = tenant.bind(account.room_id)
        assert r.status_code == 200, r.text
        return tenant, account
    return make


def balance_of(account_id: int) -> int:
    from core import ledger
    from core.db import new_session
    with new_session() as s:
        return ledger.account_balance(s, account_id)


def order_row(order_no: str):
    from sqlalchemy import select

    from core.db import new_session
    from core.models import PaymentOrder
    with new_session() as s:
        return s.scalar(select(PaymentOrder).where(PaymentOrder.order_no == order_no))


def wait_for(predicate, timeout: float = 5.0, interval: float = 0.05):
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()
