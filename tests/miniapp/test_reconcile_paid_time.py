"""Daily reconciliation takes the ledger's side of a day by the provider's paid time (issue 17, item 7):
a payment at 23:59 that we credit after midnight belongs to the day it was paid, as in the statement."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from tests.miniapp.conftest import order_row

CHINA = timezone(timedelta(hours=8))


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_payment_at_2359_credited_after_midnight_is_not_missing_in_statement(bound_tenant, pay_env, channel):
    from core.db import session_scope
    from core.models import JournalEntry
    from miniapp_api import sandbox
    from miniapp_api.jobs import reconcile, settle_by_query
    tenant, account = bound_tenant()
    no = tenant.post(f"/accounts/{account.id}/recharge", {"amount": "20.00", "channel": channel}).json()["order_no"]
    day = datetime.now(CHINA).date() - timedelta(days=3)
    next_day = day + timedelta(days=1)
    if channel == "wechat":
        txn = sandbox.wx_pay(no, notify=False)["transaction_id"]  # paid; the callback is lost
        sandbox.WX_ORDERS[no]["success_time"] = f"{day.isoformat()}T23:59:30+08:00"
    else:
        txn = sandbox.alipay_pay(no, notify=False)["transaction_id"]
        sandbox.ALI_ORDERS[no]["gmt_payment"] = f"{day.isoformat()} 23:59:30"
    assert settle_by_query(no) == "credited"  # the query job finds it after midnight
    assert order_row(no).paid_at == datetime(day.year, day.month, day.day, 23, 59, 30, tzinfo=CHINA)
    with session_scope() as s:
        entry = s.scalar(select(JournalEntry).where(JournalEntry.idempotency_key == f"pay:{channel}:{txn}"))
        entry.created_at = datetime(next_day.year, next_day.month, next_day.day, 0, 0, 30, tzinfo=CHINA)

    paid_day = reconcile(day.isoformat(), channel)[0]
    assert (paid_day["statement_count"], paid_day["ledger_count"], paid_day["mismatches"]) == (1, 1, [])
    after = reconcile(next_day.isoformat(), channel)[0]
    assert after["mismatches"] == [] and after["ledger_count"] == 0
