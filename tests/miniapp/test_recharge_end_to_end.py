"""A tenant scans, logs in, recharges and pays; the sandbox calls back over real HTTP; the wallet grows once."""
from __future__ import annotations

import requests

from tests.miniapp.conftest import balance_of, order_row


def test_wechat_recharge_is_credited_once_over_real_http(bound_tenant, pay_env):
    tenant, account = bound_tenant()
    r = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "50.00", "channel": "wechat"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["state"] == "pending" and body["amount_fen"] == 5000 and body["sandbox"] is True
    pay = body["wechat"]["request_payment"]
    assert pay["package"].startswith("prepay_id=") and pay["signType"] == "RSA" and pay["paySign"]

    paid = requests.post(body["sandbox_pay_url"], timeout=10).json()
    assert paid["notified"] == 204
    assert balance_of(account.id) == 1000 + 5000
    order = tenant.get(f"/orders/{body['order_no']}").json()
    assert order["state"] == "paid" and order["paid_at"]
    assert tenant.get(f"/accounts/{account.id}/balance").json() == {
        "account_id": account.id, "balance": "60.00", "balance_fen": 6000}


def test_alipay_recharge_gives_a_qr_code_and_is_credited(bound_tenant, pay_env):
    tenant, account = bound_tenant()
    r = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "20.50", "channel": "alipay"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["alipay"]["qr_code"].startswith("https://qr.alipay.com/")
    png = tenant.get(body["alipay"]["qr_png"].removeprefix("/api/v1"))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    paid = requests.post(body["sandbox_pay_url"], timeout=10).json()
    assert paid["notified"] == 200
    assert balance_of(account.id) == 1000 + 2050
    assert order_row(body["order_no"]).state == "paid"


def test_a_lost_callback_is_settled_by_the_query_job(bound_tenant, pay_env):
    from miniapp_api.jobs import query_pending
    tenant, account = bound_tenant()
    no_wx = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "30.00", "channel": "wechat"}).json()
    no_ali = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "5.00", "channel": "alipay"}).json()
    for order in (no_wx, no_ali):
        assert requests.post(order["sandbox_pay_url"] + "?notify=0", timeout=10).json()["notified"] is None
    assert balance_of(account.id) == 1000

    outcomes = query_pending(older_than_seconds=0)
    assert outcomes == {"credited": 2}
    assert balance_of(account.id) == 1000 + 3000 + 500
    assert query_pending(older_than_seconds=0) == {}  # nothing pending any more
    assert order_row(no_wx["order_no"]).provider_data["settled_by"] == "query"


def test_an_unpaid_order_stays_pending_when_queried(bound_tenant, pay_env):
    from miniapp_api.jobs import query_pending
    tenant, account = bound_tenant()
    order = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "30.00", "channel": "wechat"}).json()
    assert query_pending(older_than_seconds=0) == {"pending": 1}
    assert order_row(order["order_no"]).state == "pending" and balance_of(account.id) == 1000


def test_bad_recharge_input_is_refused_and_creates_no_order(bound_tenant, pay_env):
    from sqlalchemy import func, select

    from core.db import new_session
    from core.models import PaymentOrder
    tenant, account = bound_tenant()
    for payload, field in [({"amount": "0", "channel": "wechat"}, "amount"),
                           ({"amount": "1.234", "channel": "wechat"}, "amount"),
                           ({"amount": 50.0, "channel": "wechat"}, "amount"),
                           ({"amount": "-5", "channel": "alipay"}, "amount"),
                           ({"amount": "99999999", "channel": "alipay"}, "amount"),
                           ({"amount": "1e400", "channel": "wechat"}, "amount"),
                           ({"amount": "NaN", "channel": "wechat"}, "amount"),
                           ({"amount": "50", "channel": "paypal"}, "channel"),
                           ({"amount": "50"}, "channel")]:
        r = tenant.post(f"/accounts/{account.id}/recharge", payload)
        assert r.status_code == 400, (payload, r.text)
        assert r.json()["code"] == "invalid" and r.json()["field"] == field
    with new_session() as s:
        assert s.scalar(select(func.count()).select_from(PaymentOrder)) == 0


def test_a_tenant_polling_a_pending_order_gets_it_settled_when_the_callback_is_lost(bound_tenant, pay_env,
                                                                                     monkeypatch):
    tenant, account = bound_tenant()
    order = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "12.00", "channel": "alipay"}).json()
    assert tenant.get(f"/orders/{order['order_no']}").json()["state"] == "pending"  # too young to ask
    monkeypatch.setenv("METERPAY_PAY_POLL_QUERY_AFTER", "0")
    assert tenant.get(f"/orders/{order['order_no']}").json()["state"] == "pending"  # not paid yet
    requests.post(order["sandbox_pay_url"] + "?notify=0", timeout=10).raise_for_status()
    assert tenant.get(f"/orders/{order['order_no']}").json()["state"] == "paid"
    assert balance_of(account.id) == 1000 + 1200
