"""A tenant reaches only their own accounts and orders; probing others' gets the same 404 as nothing."""
from __future__ import annotations

import pytest


def test_a_tenant_probing_other_tenants_accounts_and_orders_gets_404(bound_tenant, pay_env):
    alice, a_account = bound_tenant("alice")
    bob, b_account = bound_tenant("bob")
    b_order = bob.post(f"/accounts/{b_account.id}/recharge", {"amount": "10", "channel": "wechat"}).json()
    for path in (f"/accounts/{b_account.id}", f"/accounts/{b_account.id}/balance",
                 f"/accounts/{b_account.id}/transactions", f"/accounts/{b_account.id}/bills",
                 f"/accounts/{b_account.id}/usage?start=2026-11-01&end=2026-11-02",
                 f"/orders/{b_order['order_no']}", f"/orders/{b_order['order_no']}/qr.png",
                 "/accounts/999999", "/orders/MP000000000000000000NOPE"):
        r = alice.get(path)
        assert r.status_code == 404, path
        assert r.json()["code"] == "not_found"
    r = alice.post(f"/accounts/{b_account.id}/recharge", {"amount": "10", "channel": "wechat"})
    assert r.status_code == 404
    assert alice.http.delete(f"{alice.base}/api/v1/accounts/{b_account.id}/binding").status_code == 404
    assert [a["id"] for a in alice.get("/accounts").json()["accounts"]] == [a_account.id]
    assert alice.get(f"/accounts/{a_account.id}").status_code == 200
    assert bob.get(f"/orders/{b_order['order_no']}").status_code == 200


def test_no_token_a_forged_token_or_an_expired_one_gets_401(bound_tenant, pay_env, monkeypatch):
    import requests
    alice, account = bound_tenant("alice")
    base = f"{pay_env['app']}/api/v1/accounts/{account.id}"
    assert requests.get(base, timeout=10).status_code == 401
    r = requests.get(base, headers={"Authorization": "Bearer " + alice.token[:-2] + "xx"}, timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    monkeypatch.setenv("METERPAY_MINIAPP_TOKEN_TTL", "-1")
    assert alice.get(f"/accounts/{account.id}").status_code == 401


def test_binding_needs_the_right_phone_digits_and_a_genuine_qr_token(factory, tenant_login):
    account = factory.account(phone="139-1234-5678")
    tenant = tenant_login("carol")
    r = tenant.bind(account.room_id, "0000")
    assert r.status_code == 403 and r.json()["field"] == "phone_last4"
    assert tenant.get("/accounts").json()["accounts"] == []
    r = tenant.post("/bindings", {"token": "not-a-token", "phone_last4": "5678"})
    assert r.status_code == 400 and r.json()["field"] == "token"
    r = tenant.post("/bindings", {"token": "x", "phone_last4": "56a8"})
    assert r.status_code == 400
    r = tenant.bind(account.room_id, "5678")
    assert r.status_code == 200 and r.json()["id"] == account.id and r.json()["balance"] == "0.00"
    assert tenant.bind(account.room_id, "5678").status_code == 200  # binding twice is fine
    assert [a["id"] for a in tenant.get("/accounts").json()["accounts"]] == [account.id]
    assert tenant.http.delete(f"{tenant.base}/api/v1/accounts/{account.id}/binding").status_code == 200
    assert tenant.get(f"/accounts/{account.id}").status_code == 404


def test_login_with_a_code_wechat_refuses_is_401(tenant_login, pay_env):
    import requests
    r = requests.post(f"{pay_env['app']}/api/v1/auth/login", json={"code": "bad-code"}, timeout=10)
    assert r.status_code == 401 and r.json()["code"] == "login_failed"
    r = requests.post(f"{pay_env['app']}/api/v1/auth/login", json={"codes": "x"}, timeout=10)
    assert r.status_code == 400


def test_login_while_wechat_fails_on_its_side_is_502_not_401(tenant_login, pay_env):
    import requests
    for code in ("down-1", "busy-1"):  # an HTTP 503 from WeChat, and errcode -1 (system busy)
        r = requests.post(f"{pay_env['app']}/api/v1/auth/login", json={"code": code}, timeout=10)
        assert r.status_code == 502 and r.json()["code"] == "wechat_unreachable", (code, r.text)


def test_account_detail_shows_balance_meters_and_today(bound_tenant, pay_env):
    tenant, account = bound_tenant(balance_fen=1234)
    body = tenant.get(f"/accounts/{account.id}").json()
    assert body["balance"] == "12.34" and body["balance_fen"] == 1234 and body["status"] == "open"
    assert body["fee_status"] == "alarm2"  # 12.34 is below the default 20.00 second level
    assert len(body["meters"]) == 1 and body["meters"][0]["relay_state"] == "unknown"
    assert body["today"]["cost_fen"] == 0
    tx = tenant.get(f"/accounts/{account.id}/transactions").json()["transactions"]
    assert [(t["kind"], t["amount_fen"]) for t in tx] == [("opening", 1234)]


@pytest.mark.parametrize("qs", ["start=2026-11-02&end=2026-11-01", "start=2020-01-01&end=2026-01-01",
                                "start=nope&end=2026-01-01", "start=9999-12-31&end=9999-12-31",
                                "granularity=month&start=9999-12-01&end=9999-12-31", "start=0001-01-01&end=0001-01-02", "granularity=week&start=2026-01-01&end=2026-01-02"])
def test_bad_usage_ranges_are_400(bound_tenant, pay_env, qs):
    tenant, account = bound_tenant()
    assert tenant.get(f"/accounts/{account.id}/usage?{qs}").status_code == 400


def test_guessing_phone_digits_is_stopped_after_five_wrong_tries(factory, tenant_login):
    account = factory.account(phone="13912345678")
    tenant = tenant_login("guesser")
    for guess in ("0001", "0002", "0003", "0004", "0005"):
        assert tenant.bind(account.room_id, guess).status_code == 403
    r = tenant.bind(account.room_id, "5678")  # right, but too late
    assert r.status_code == 403 and "too many" in r.json()["message"]
    assert tenant.get("/accounts").json()["accounts"] == []
    assert tenant_login("someone-else").bind(account.room_id, "5678").status_code == 200
