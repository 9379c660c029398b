"""Callbacks in the real world: forged, replayed, stale, mismatched and duplicated. Not one fen lost or doubled."""
from __future__ import annotations

import base64
import time

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from miniapp_api import sandbox_sign as sign
from tests.miniapp.conftest import balance_of, order_row


def _order(tenant, account, channel="wechat", amount="50.00"):
    r = tenant.post(f"/accounts/{account.id}/recharge", {"amount": amount, "channel": channel})
    assert r.status_code == 200, r.text
    return r.json()


def wx_resource(order_no, total=5000, **over):
    res = {"appid": sign.miniapp_appid(), "mchid": sign.wx_mchid(), "out_trade_no": order_no,
           "transaction_id": "4200000000" + order_no[-10:], "trade_type": "JSAPI", "trade_state": "SUCCESS",
           "success_time": "2026-11-27T20:00:00+08:00", "payer": {"openid": "x"},
           "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"}}
    res.update(over)
    return res


def post_wx(pay_env, headers, body):
    return requests.post(f"{pay_env['app']}/pay/wechat/notify", data=body.encode(), headers=headers, timeout=30)


def post_ali(pay_env, body: bytes):
    return requests.post(f"{pay_env['app']}/pay/alipay/notify", data=body, timeout=30,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})


def ali_params(order_no, amount="50.00", **over):
    p = {"trade_no": "2026112722001" + order_no[-10:], "out_trade_no": order_no, "trade_status": "TRADE_SUCCESS",
         "total_amount": amount, "receipt_amount": amount, "gmt_payment": "2026-11-27 20:00:00"}
    p.update(over)
    return p


# --- WeChat Pay -------------------------------------------------------------------------

def test_a_good_wechat_callback_credits_and_its_replays_change_nothing(bound_tenant, pay_env):
    tenant, account = bound_tenant()
    order = _order(tenant, account)
    headers, body = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(order["order_no"]))
    assert post_wx(pay_env, headers, body).status_code == 204
    for _ in range(3):  # the very same request replayed
        assert post_wx(pay_env, headers, body).status_code == 204
    again = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(order["order_no"]))  # a retry: new id
    assert post_wx(pay_env, *again).status_code == 204
    assert balance_of(account.id) == 1000 + 5000
    assert order_row(order["order_no"]).state == "paid"


def test_a_forged_wechat_callback_is_refused_and_changes_nothing(bound_tenant, pay_env):
    tenant, account = bound_tenant()
    order = _order(tenant, account)
    headers, body = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(order["order_no"]))
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n{body}\n".encode()
    forged = {**headers, "Wechatpay-Signature": base64.b64encode(
        forger.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()}
    r = post_wx(pay_env, forged, body)
    assert r.status_code == 401 and r.json()["code"] == "FAIL"
    tampered = body.replace('"summary": "sandbox"', '"summary": "tampered"')
    assert post_wx(pay_env, headers, tampered).status_code == 401
    wrong_key = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(order["order_no"]),
                                     apiv3_key="X" * 32)  # signed right, encrypted with another key
    assert post_wx(pay_env, *wrong_key).status_code == 401
    assert balance_of(account.id) == 1000
    assert order_row(order["order_no"]).state == "pending"


@pytest.mark.parametrize("case", ["stale", "future", "sig_type", "no_headers", "garbage", "empty"])
def test_stale_odd_and_garbage_wechat_callbacks_get_a_4xx(bound_tenant, pay_env, case):
    tenant, account = bound_tenant()
    order = _order(tenant, account)
    resource = wx_resource(order["order_no"])
    if case == "stale":
        headers, body = sign.wx_notification("TRANSACTION.SUCCESS", resource, timestamp=int(time.time()) - 301)
    elif case == "future":
        headers, body = sign.wx_notification("TRANSACTION.SUCCESS", resource, timestamp=int(time.time()) + 600)
    else:
        headers, body = sign.wx_notification("TRANSACTION.SUCCESS", resource)
    if case == "sig_type":
        headers["Wechatpay-Signature-Type"] = "WECHATPAY2-SHA1-RSA1024"
    elif case == "no_headers":
        headers = {"Content-Type": "application/json"}
    elif case == "garbage":
        body = "{not json at all"
        headers.update(sign.wx_sign_headers(body))
    elif case == "empty":
        body = ""
    r = post_wx(pay_env, headers, body)
    assert 400 <= r.status_code < 500, r.text
    assert balance_of(account.id) == 1000 and order_row(order["order_no"]).state == "pending"


@pytest.mark.parametrize("over,reason", [
    ({"amount": {"total": 1, "payer_total": 1, "currency": "CNY"}}, "amount"),
    ({"amount": {"total": 5000, "currency": "USD"}}, "currency"),
    ({"appid": "wx-someone-else"}, "app id"),
    ({"mchid": "1234567890"}, "merchant"),
])
def test_a_mismatched_wechat_callback_flags_the_order_and_credits_nothing(bound_tenant, pay_env, over, reason):
    tenant, account = bound_tenant()
    order = _order(tenant, account)
    headers, body = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(order["order_no"], **over))
    assert post_wx(pay_env, headers, body).status_code == 204  # acknowledged: a retry would not change it
    row = order_row(order["order_no"])
    assert row.state == "flagged" and reason in row.flag_reason
    # a correct callback afterwards does not undo the flag: a manager decides
    assert post_wx(pay_env, *sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(order["order_no"]))
                   ).status_code == 204
    assert balance_of(account.id) == 1000 and order_row(order["order_no"]).state == "flagged"
    assert tenant.get(f"/orders/{order['order_no']}").json()["state"] == "flagged"


def test_a_callback_for_an_unknown_order_gets_a_404(pay_env):
    headers, body = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource("MPNOSUCHORDER000000000001"))
    assert post_wx(pay_env, headers, body).status_code == 404


def test_a_late_callback_after_the_query_job_settled_changes_nothing(bound_tenant, pay_env):
    from miniapp_api import sandbox
    from miniapp_api.jobs import query_pending
    tenant, account = bound_tenant()
    order = _order(tenant, account)
    paid = sandbox.wx_pay(order["order_no"], notify=False)
    assert query_pending(older_than_seconds=0) == {"credited": 1}
    resource = wx_resource(order["order_no"], transaction_id=paid["transaction_id"])
    assert post_wx(pay_env, *sign.wx_notification("TRANSACTION.SUCCESS", resource)).status_code == 204
    assert balance_of(account.id) == 1000 + 5000


def test_a_closed_order_reported_by_callback_is_closed_without_money(bound_tenant, pay_env):
    tenant, account = bound_tenant()
    order = _order(tenant, account)
    res = wx_resource(order["order_no"], trade_state="CLOSED")
    res.pop("transaction_id")
    assert post_wx(pay_env, *sign.wx_notification("TRANSACTION.SUCCESS", res)).status_code == 204
    assert order_row(order["order_no"]).state == "closed" and balance_of(account.id) == 1000


def test_platform_certificate_mode_verifies_with_the_downloaded_certificate(bound_tenant, pay_env, monkeypatch,
                                                                            sandbox_key_dir):
    from miniapp_api import sandbox_keys
    tenant, account = bound_tenant()
    monkeypatch.setenv("METERPAY_SANDBOX", "0")
    monkeypatch.setenv("METERPAY_WECHAT_APPID", sandbox_keys.WECHAT_APPID)
    monkeypatch.setenv("METERPAY_WXPAY_MCHID", sandbox_keys.WXPAY_MCHID)
    monkeypatch.setenv("METERPAY_WXPAY_APIV3_KEY", sandbox_keys.WXPAY_APIV3_KEY)
    monkeypatch.setenv("METERPAY_WXPAY_CERT_SERIAL", sandbox_keys.WXPAY_CERT_SERIAL)
    monkeypatch.setenv("METERPAY_WXPAY_PRIVATE_KEY_FILE", str(sandbox_key_dir / "wxpay_merchant_key.pem"))
    from miniapp_api.settings import wxpay
    assert wxpay().mode == "platform-certificate"
    order = _order(tenant, account)
    paid = requests.post(f"{pay_env['fake']}/_sandbox/pay/{order['order_no']}", timeout=10).json()
    assert paid["notified"] == 204
    assert balance_of(account.id) == 6000
    # a notification signed for public-key mode names a key this merchant does not use: refused
    headers, body = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(order["order_no"]),
                                         public_key_mode=True)
    assert post_wx(pay_env, headers, body).status_code == 401


# --- Alipay -----------------------------------------------------------------------------

def test_a_good_alipay_callback_credits_once_and_duplicates_are_acknowledged(bound_tenant, pay_env):
    tenant, account = bound_tenant()
    order = _order(tenant, account, "alipay")
    body = sign.ali_notification(ali_params(order["order_no"]))
    for _ in range(3):
        r = post_ali(pay_env, body)
        assert r.text == "success"
    assert post_ali(pay_env, sign.ali_notification(ali_params(order["order_no"]))).text == "success"
    assert balance_of(account.id) == 6000


@pytest.mark.parametrize("case", ["forged", "rsa_sha1", "rsa2_label_sha1_sig", "no_sign", "garbage", "tampered"])
def test_bad_alipay_callbacks_get_a_body_other_than_success(bound_tenant, pay_env, case):
    tenant, account = bound_tenant()
    order = _order(tenant, account, "alipay")
    params = ali_params(order["order_no"])
    if case == "forged":
        body = sign.ali_notification(params).replace(b"sign=", b"sign=AAAA")
    elif case == "rsa_sha1":
        body = sign.ali_notification(params, sign_type="RSA", sha1=True)
    elif case == "rsa2_label_sha1_sig":
        body = sign.ali_notification(params, sign_type="RSA2", sha1=True)
    elif case == "no_sign":
        body = b"&".join(p for p in sign.ali_notification(params).split(b"&") if not p.startswith(b"sign="))
    elif case == "garbage":
        body = b"\xff\xfe%%%garbage"
    else:
        body = sign.ali_notification(params).replace(b"total_amount=50.00", b"total_amount=0.01")
    r = post_ali(pay_env, body)
    assert r.text != "success"
    assert balance_of(account.id) == 1000 and order_row(order["order_no"]).state == "pending"


@pytest.mark.parametrize("over,reason", [({"total_amount": "49.99"}, "amount"), ({"app_id": "2021999999999999"}, "app id")])
def test_a_mismatched_alipay_callback_flags_the_order(bound_tenant, pay_env, over, reason):
    tenant, account = bound_tenant()
    order = _order(tenant, account, "alipay")
    params = ali_params(order["order_no"])
    body = sign.ali_notification({**params, **over})
    assert post_ali(pay_env, body).text == "success"
    row = order_row(order["order_no"])
    assert row.state == "flagged" and reason in row.flag_reason and balance_of(account.id) == 1000


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_the_sandbox_can_answer_the_payer_first_and_notify_afterwards(bound_tenant, pay_env, channel):
    """``?notify=later`` (what ``meterpay bench load`` uses): the payer gets the answer at once, the
    signed notification follows from another thread and credits the order, as a real provider does."""
    tenant, account = bound_tenant()
    order = _order(tenant, account, channel)
    paid = requests.post(f"{pay_env['fake']}/_sandbox/pay/{order['order_no']}?notify=later", timeout=10).json()
    assert paid["notified"] == "later" and paid["transaction_id"]
    deadline = time.monotonic() + 10
    while balance_of(account.id) != 6000 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert balance_of(account.id) == 6000
    # the notification's request (and its listeners) ends before the tables are emptied for the next test
    from miniapp_api.sandbox import wait_for_later_notifications
    wait_for_later_notifications()
