"""The mini-program and the official account are two WeChat apps with two app ids (issue 17, item 9).

METERPAY_MINIAPP_APPID/_SECRET: the mini-program (login, its WeChat Pay orders); METERPAY_WECHAT_APPID/_SECRET:
the official account (the bot, template messages, JSAPI pay inside it). An order records the app id of the
front the tenant pays from, and a callback naming another app id is flagged, not credited.
"""
from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from miniapp_api import sandbox_sign as sign
from tests.miniapp.conftest import balance_of, order_row

MINI, OA = "wxmini000000000001", "wxoa0000000000001"


@pytest.fixture
def two_apps(pay_env, monkeypatch):
    for name, value in {"METERPAY_MINIAPP_APPID": MINI, "METERPAY_MINIAPP_SECRET": "mini-secret",
                        "METERPAY_WECHAT_APPID": OA, "METERPAY_WECHAT_SECRET": "oa-secret"}.items():
        monkeypatch.setenv(name, value)
    return pay_env


def logins():
    from miniapp_api import sandbox
    return [c["appid"] for c in sandbox.CALLS if c["api"] == "wechat.jscode2session"]


def test_login_uses_the_mini_program_app_id(two_apps, tenant_login):
    tenant_login("tenant-a")
    assert logins() == [MINI]


def test_a_mini_program_order_is_prepaid_and_signed_with_the_mini_program_app_id(two_apps, bound_tenant):
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    from miniapp_api import sandbox, sandbox_keys
    tenant, account = bound_tenant()
    r = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "30.00", "channel": "wechat"})
    assert r.status_code == 200, r.text
    out = r.json()
    no, pay = out["order_no"], out["wechat"]["request_payment"]
    assert sandbox.WX_ORDERS[no]["appid"] == MINI and pay["appId"] == MINI
    assert (order_row(no).app_id, order_row(no).front) == (MINI, "miniapp")
    merchant = serialization.load_pem_private_key(sandbox_keys.read("wxpay_merchant_key.pem").encode(), None)
    message = f"{MINI}\n{pay['timeStamp']}\n{pay['nonceStr']}\n{pay['package']}\n".encode()
    merchant.public_key().verify(base64.b64decode(pay["paySign"]), message, padding.PKCS1v15(), hashes.SHA256())
    requests.post(out["sandbox_pay_url"], timeout=10).raise_for_status()
    assert balance_of(account.id) == 1000 + 3000


def test_an_official_account_order_uses_the_official_account_app_id(two_apps, factory):
    from miniapp_api import recharge, sandbox
    account = factory.account(balance_fen=1000)
    result = recharge.start(account.id, 3000, "wechat", openid="o-official-account-openid",
                            front="official_account")
    no = result["order"].order_no
    assert result["params"]["request_payment"]["appId"] == OA and sandbox.WX_ORDERS[no]["appid"] == OA
    assert (order_row(no).app_id, order_row(no).front) == (OA, "official_account")
    sandbox.wx_pay(no)
    assert order_row(no).state == "paid" and balance_of(account.id) == 4000


def test_a_callback_with_the_other_app_id_is_flagged(two_apps, bound_tenant):
    from tests.miniapp.test_callbacks import post_wx, wx_resource
    tenant, account = bound_tenant()
    no = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "50.00", "channel": "wechat"}).json()["order_no"]
    headers, body = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(no, appid=OA))
    assert post_wx(two_apps, headers, body).status_code == 204  # believed (signed), acknowledged, not credited
    order = order_row(no)
    assert order.state == "flagged" and OA in order.flag_reason and MINI in order.flag_reason
    assert balance_of(account.id) == 1000


def test_an_unknown_front_or_a_missing_app_id_is_refused_before_any_order(two_apps, factory, monkeypatch):
    from core.db import new_session
    from core.errors import ValidationError
    from core.models import PaymentOrder
    from miniapp_api import recharge
    from miniapp_api.settings import NotConfigured, WxPaySettings
    account = factory.account(balance_fen=1000)
    with pytest.raises(ValidationError, match="front"):
        recharge.start(account.id, 3000, "wechat", openid="o1", front="h5")
    s = WxPaySettings(MINI, None, "1900000109", "k" * 32, "key", "serial", None, None, "https://x", "n", "r")
    with pytest.raises(NotConfigured, match="METERPAY_WECHAT_APPID"):
        s.app_id_for("official_account")
    s = WxPaySettings(None, OA, "1900000109", "k" * 32, "key", "serial", None, None, "https://x", "n", "r")
    with pytest.raises(NotConfigured, match="METERPAY_MINIAPP_APPID"):
        s.app_id_for("miniapp")
    with new_session() as session:
        assert session.query(PaymentOrder).count() == 0


def test_the_old_one_app_configuration_keeps_working_and_is_warned_about(pay_env, monkeypatch, bound_tenant):
    """Before the two were apart, METERPAY_WECHAT_APPID/_SECRET served the mini-program too: a deployment that
    sets only those keeps logging in and paying with them, and `meterpay config check` says what to change."""
    from core import config
    from meterpay.cli.base import cli
    from miniapp_api import sandbox
    monkeypatch.setenv("METERPAY_WECHAT_APPID", "wxonlyone00000001")
    monkeypatch.setenv("METERPAY_WECHAT_SECRET", "the-one-secret")
    tenant, account = bound_tenant()
    assert logins() == ["wxonlyone00000001"]
    no = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "5.00", "channel": "wechat"}).json()["order_no"]
    assert sandbox.WX_ORDERS[no]["appid"] == "wxonlyone00000001" == order_row(no).app_id
    assert any("METERPAY_MINIAPP_APPID" in w for w in config.warnings())
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 0 and "warning: METERPAY_WECHAT_APPID also serves" in result.stderr
    monkeypatch.setenv("METERPAY_MINIAPP_APPID", MINI)
    monkeypatch.setenv("METERPAY_MINIAPP_SECRET", "mini-secret")
    assert config.warnings() == []


def test_a_mini_program_secret_without_its_app_id_is_a_configuration_error(monkeypatch):
    from meterpay.cli.base import cli
    monkeypatch.delenv("METERPAY_MINIAPP_APPID", raising=False)
    monkeypatch.setenv("METERPAY_MINIAPP_SECRET", "mini-secret")
    result = CliRunner().invoke(cli, ["config", "check"])
    assert result.exit_code == 2 and "METERPAY_MINIAPP_SECRET: set without METERPAY_MINIAPP_APPID" in result.stderr


def test_each_app_id_variable_is_declared_once_in_the_wechat_area():
    from core import config
    from meterpay.settings import load_all
    load_all()
    areas = {v.name: v.area for v in config.variables()}
    names = ("METERPAY_WECHAT_APPID", "METERPAY_WECHAT_SECRET", "METERPAY_WECHAT_API_BASE",
             "METERPAY_MINIAPP_APPID", "METERPAY_MINIAPP_SECRET")
    assert {n: areas[n] for n in names} == dict.fromkeys(names, "wechat")
    root = Path(__file__).resolve().parents[2]
    declared = {}
    for path in root.glob("[a-z]*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        for name in re.findall(r'Var\(\s*"(METERPAY_(?:WECHAT|MINIAPP)_(?:APPID|SECRET))"', path.read_text("utf-8")):
            declared.setdefault(name, []).append(str(path.relative_to(root)))
    assert declared == {n: ["core/config.py"] for n in names if n != "METERPAY_WECHAT_API_BASE"}
