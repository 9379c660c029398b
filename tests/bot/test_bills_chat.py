"""账单 in the tenant chat: the open bills of the tenant's rooms (what is still owed, due date, overdue),
then the latest wallet entries; drafts and paid bills are not listed."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from core.bills import generate, service
from core.models import Bill, Site
from tests.bills.conftest import item
from tests.bot.test_tenant_chat import _bound


def test_bills_show_what_is_still_owed(client, sandbox, factory, session):
    wechat, account, _ = _bound(client, factory, session, openid="o-bill-1")
    item(session, account, amount_fen=12345)
    generate.generate_for_period(session, account.site_id, "2026-04", preview=False, actor="t", front="cli")
    session.commit()
    no = session.scalar(select(Bill.bill_no))
    assert no not in wechat.say("o-bill-1", "账单")  # a draft is not owed yet
    service.confirm(session, account.site_id, "2026-04", actor="t", front="cli")
    service.pay_at_desk(session, no, 2345, method="cash", key="chat-1", actor="t", front="cli")
    session.commit()
    reply = wechat.say("o-bill-1", "账单")
    assert "未付账单" in reply and f"2026-04 {no} 应付 100.00 元" in reply and "已逾期" not in reply
    assert "最近收支" in reply
    bill = session.scalar(select(Bill))
    bill.due_date = service.site_today(session.get(Site, account.site_id)) - timedelta(days=2)
    session.commit()
    assert "已逾期" in wechat.say("o-bill-1", "bills")
    service.pay_at_desk(session, no, 10000, method="cash", key="chat-2", actor="t", front="cli")
    session.commit()
    assert no not in wechat.say("o-bill-1", "账单")
