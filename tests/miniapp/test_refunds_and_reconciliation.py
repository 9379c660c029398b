"""Manager-started refunds go through the provider and the ledger; each day's statement is reconciled."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import requests

from tests.miniapp.conftest import balance_of, order_row, wait_for


def paid_order(tenant, account, channel, amount="50.00"):
    order = tenant.post(f"/accounts/{account.id}/recharge", {"amount": amount, "channel": channel}).json()
    requests.post(order["sandbox_pay_url"], timeout=10).raise_for_status()
    return order["order_no"]


def refund(order_no, amount_fen, actor="manager:li"):
    from core.db import session_scope
    from core.payments import orders as payments
    with session_scope() as s:
        return payments.start_refund(s, order_no, amount_fen, actor=actor, reason="moving out").refund_no


def refund_row(refund_no):
    from sqlalchemy import select

    from core.db import new_session
    from core.models import PaymentRefund
    with new_session() as s:
        return s.scalar(select(PaymentRefund).where(PaymentRefund.refund_no == refund_no))


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_manager_refund_debits_the_wallet_and_is_confirmed_by_the_provider(bound_tenant, pay_env, channel):
    tenant, account = bound_tenant()
    order_no = paid_order(tenant, account, channel)
    assert balance_of(account.id) == 6000
    refund_no = refund(order_no, 2000)
    assert balance_of(account.id) == 4000
    assert wait_for(lambda: refund_row(refund_no).state == "succeeded")
    assert order_row(order_no).state == "paid" and order_row(order_no).refunded_fen == 2000
    # the refund notification (also arriving later, maybe twice) changes nothing more
    assert wait_for(lambda: any(n["kind"].endswith("refund") for n in requests.get(
        f"{pay_env['fake']}/_sandbox/notifications", timeout=5).json()["sent"]))
    assert balance_of(account.id) == 4000
    refund(order_no, 3000)
    assert wait_for(lambda: order_row(order_no).state == "refunded")
    assert balance_of(account.id) == 1000


def test_refunds_cannot_exceed_the_order_or_the_balance_or_touch_unpaid_orders(bound_tenant, pay_env):
    from core.errors import Conflict, InsufficientFunds, ValidationError
    tenant, account = bound_tenant(balance_fen=0)
    order_no = paid_order(tenant, account, "wechat", "30.00")
    with pytest.raises(ValidationError):
        refund(order_no, 3001)
    from core.db import session_scope
    from core.ledger import cashdesk
    with session_scope() as s:
        cashdesk.consume(s, account.id, 2500, key="usage:test")
    with pytest.raises(InsufficientFunds):
        refund(order_no, 1000)  # only 5.00 left in the wallet
    unpaid = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "1", "channel": "wechat"}).json()
    with pytest.raises(Conflict):
        refund(unpaid["order_no"], 100)
    assert balance_of(account.id) == 500 and order_row(order_no).refunded_fen == 0


def test_a_refund_the_provider_refuses_is_reversed_in_the_ledger(bound_tenant, pay_env):
    from miniapp_api import sandbox
    tenant, account = bound_tenant()
    order_no = paid_order(tenant, account, "wechat")
    sandbox.WX_ORDERS[order_no]["state"] = "CLOSED"  # the provider will refuse
    refund_no = refund(order_no, 2000)
    assert refund_row(refund_no).state == "failed"
    assert balance_of(account.id) == 6000 and order_row(order_no).state == "paid"
    assert order_row(order_no).refunded_fen == 0


def test_daily_reconciliation_finds_what_the_statement_and_the_ledger_disagree_on(bound_tenant, pay_env):
    from miniapp_api import sandbox
    from miniapp_api.jobs import reconcile
    tenant, account = bound_tenant()
    ok = paid_order(tenant, account, "wechat")
    lost = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "7.00", "channel": "wechat"}).json()
    sandbox.wx_pay(lost["order_no"], notify=False)  # paid at WeChat, not yet in our ledger
    ali = paid_order(tenant, account, "alipay", "3.00")
    day = datetime.now(timezone(timedelta(hours=8))).date().isoformat()
    reports = {r["channel"]: r for r in reconcile(day)}
    assert reports["alipay"]["mismatches"] == [] and reports["alipay"]["statement_count"] == 1
    wx = reports["wechat"]
    assert wx["statement_count"] == 2 and wx["ledger_count"] == 1
    assert [(m["kind"], m["order_no"]) for m in wx["mismatches"]] == [("missing_in_ledger", lost["order_no"])]
    assert order_row(ok).state == "paid" and order_row(ali).state == "paid"

    from miniapp_api.jobs import query_pending
    query_pending(older_than_seconds=0)
    assert reconcile(day, "wechat")[0]["mismatches"] == []  # a re-run replaces the day's report
