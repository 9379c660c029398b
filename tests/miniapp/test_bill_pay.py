"""A tenant pays a postpaid bill from the mini-program: the order points at the bill, the sandbox's signed
callback credits the bill's receivable once, duplicates and second orders never double-credit, and bad input
(an unknown bill, another tenant's bill, a paid bill, a draft) is a 4xx that moves nothing."""
from __future__ import annotations

import requests
from sqlalchemy import func, select

from core.bills import generate, service
from core.db import new_session
from core.ledger.check import validate
from core.models import Bill, JournalEntry, PaymentOrder
from core.reports.check import validate as validate_rollups
from miniapp_api import sandbox_sign as sign
from tests.bills.conftest import item
from tests.miniapp.conftest import balance_of, order_row
from tests.miniapp.test_callbacks import ali_params, post_ali, post_wx, wx_resource


def owed_bill(session, account, amount_fen=12345, confirm=True):
    item(session, account, amount_fen=amount_fen)
    generate.generate_for_period(session, account.site_id, "2026-04", preview=False, actor="t", front="cli")
    if confirm:
        service.confirm(session, account.site_id, "2026-04", actor="t", front="cli")
    session.commit()
    return session.scalar(select(Bill).where(Bill.account_id == account.id))


def bill_now(bill_no):
    with new_session() as s:
        b = s.scalar(select(Bill).where(Bill.bill_no == bill_no))
        return b.state, b.paid_fen, b.open_fen


def money_moves():
    with new_session() as s:
        return (s.scalar(select(func.count()).select_from(JournalEntry)),
                s.scalar(select(func.count()).select_from(PaymentOrder)))


def test_the_tenant_lists_bills_and_pays_one_with_wechat_once(bound_tenant, pay_env, session):
    tenant, account = bound_tenant(billing_mode="postpaid", balance_fen=0)
    bill = owed_bill(session, account)
    listed = tenant.get(f"/accounts/{account.id}/bills").json()["bills"]
    assert [(b["bill_no"], b["state"], b["amount"], b["open"]) for b in listed] == \
        [(bill.bill_no, "confirmed", "123.45", "123.45")]
    assert listed[0]["lines"][0]["name"] == "物业费"

    r = tenant.post(f"/bills/{bill.bill_no}/pay", {"channel": "wechat"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["bill_no"] == bill.bill_no and body["amount_fen"] == 12345 and body["state"] == "pending"
    assert body["wechat"]["request_payment"]["paySign"]
    assert requests.post(body["sandbox_pay_url"], timeout=10).json()["notified"] == 204
    assert bill_now(bill.bill_no) == ("paid", 12345, 0)
    assert balance_of(account.id) == 0  # the bill was paid, not the wallet

    # the same payment reported again (replayed and retried callbacks) changes nothing
    order = order_row(body["order_no"])
    txn = order.provider_txn_id
    headers, raw = sign.wx_notification("TRANSACTION.SUCCESS", wx_resource(body["order_no"], total=12345,
                                                                           transaction_id=txn))
    for _ in range(2):
        assert post_wx(pay_env, headers, raw).status_code == 204
    assert bill_now(bill.bill_no) == ("paid", 12345, 0) and balance_of(account.id) == 0
    with new_session() as s:
        pays = s.scalars(select(JournalEntry).where(JournalEntry.kind == "payment")).all()
        assert [(e.idempotency_key, e.meta["order_no"], e.meta["bill_no"]) for e in pays] == \
            [(f"pay:wechat:{txn}", body["order_no"], bill.bill_no)]
        assert validate(s) + validate_rollups(s) == []
    assert tenant.get(f"/accounts/{account.id}/bills").json()["bills"][0]["state"] == "paid"
    # a paid bill: 409, no order
    before = money_moves()
    assert tenant.post(f"/bills/{bill.bill_no}/pay", {"channel": "alipay"}).status_code == 409
    assert money_moves() == before


def test_two_orders_for_one_bill_pay_it_once_and_the_rest_goes_to_the_wallet(bound_tenant, pay_env, session):
    tenant, account = bound_tenant(billing_mode="postpaid", balance_fen=0)
    bill = owed_bill(session, account, amount_fen=5000)
    first = tenant.post(f"/bills/{bill.bill_no}/pay", {"channel": "alipay"}).json()
    second = tenant.post(f"/bills/{bill.bill_no}/pay", {"channel": "alipay"}).json()
    assert first["amount_fen"] == second["amount_fen"] == 5000
    for order in (first, second):
        body = sign.ali_notification(ali_params(order["order_no"], amount="50.00"))
        for _ in range(2):  # each callback twice
            assert post_ali(pay_env, body).text == "success"
    assert bill_now(bill.bill_no) == ("paid", 5000, 0)
    assert balance_of(account.id) == 5000  # the second payment is the tenant's credit, not a second bill payment
    with new_session() as s:
        assert validate(s) + validate_rollups(s) == []


def test_bad_bill_payments_are_4xx_and_move_nothing(bound_tenant, pay_env, session, factory):
    tenant, account = bound_tenant(billing_mode="postpaid", balance_fen=0)
    other = factory.account(billing_mode="postpaid")
    theirs = owed_bill(session, other)
    draft_acct_bill = owed_bill(session, account, confirm=False)
    before = money_moves()
    cases = [("/bills/B999-202604-00001/pay", {"channel": "wechat"}, 404),
             (f"/bills/{theirs.bill_no}/pay", {"channel": "wechat"}, 404),
             (f"/bills/{draft_acct_bill.bill_no}/pay", {"channel": "wechat"}, 409),
             (f"/bills/{draft_acct_bill.bill_no}/pay", {"channel": "paypal"}, 400),
             (f"/bills/{draft_acct_bill.bill_no}/pay", {}, 400)]
    for path, payload, status in cases:
        r = tenant.post(path, payload)
        assert r.status_code == status, (path, payload, r.text)
        assert set(r.json()) >= {"code", "message"}
    assert money_moves() == before
    assert tenant.get(f"/accounts/{other.id}/bills").status_code in (403, 404)
    assert tenant.get(f"/accounts/{account.id}/bills").json()["bills"] == []  # a draft is not shown
