"""欠费通知: overdue bills get notices on the site's schedule, each once, through the tenant's channels."""
from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select

from core.bills import arrears, generate, service
from core.models import AuditLog, Bill, Notification, Site, Tenant


def overdue(session, shop, days: int):
    bill = session.scalar(select(Bill))
    bill.due_date = service.site_today(session.get(Site, shop.site_id)) - timedelta(days=days)
    session.commit()
    return bill


def keys(session):
    return sorted({n.key.rsplit(":", 1)[0] for n in session.scalars(select(Notification)
                                                                     .where(Notification.kind == "arrears"))})


def test_notices_follow_the_site_schedule_once_each(session, shop):
    site = session.get(Site, shop.site_id)
    site.settings = {**(site.settings or {}), "arrears_notice": {"after_days": 1, "every_days": 7, "times": 2}}
    tenant = session.get(Tenant, shop.tenant_id)
    tenant.notify_channels = ["sms"]
    generate.generate_for_period(session, shop.site_id, "2026-04", preview=False, actor="t", front="cli")
    service.confirm(session, shop.site_id, "2026-04", actor="t", front="cli")
    session.commit()
    no = session.scalar(select(Bill.bill_no))
    assert arrears.send_due() == 0  # not due yet
    overdue(session, shop, 0)
    assert arrears.send_due() == 0  # due today: not overdue
    overdue(session, shop, 1)
    assert arrears.send_due() == 1 and arrears.send_due() == 0
    session.expire_all()
    assert keys(session) == [f"arrears:{no}:1"]
    note = session.scalar(select(Notification).where(Notification.kind == "arrears"))
    assert note.channel == "sms" and note.recipient == tenant.phone and "82.50" in note.body and "欠费通知" == note.subject
    overdue(session, shop, 7)
    assert arrears.send_due() == 0  # the second is due 1 + 7 days after the due date
    overdue(session, shop, 8)
    assert arrears.send_due() == 1
    overdue(session, shop, 30)
    assert arrears.send_due() == 0  # times: 2
    session.expire_all()
    assert keys(session) == [f"arrears:{no}:1", f"arrears:{no}:2"]
    assert session.scalar(select(Bill.notices_sent)) == 2
    assert len(session.scalars(select(AuditLog).where(AuditLog.action == "arrears_notice")).all()) == 2


def test_a_paid_bill_gets_no_notice(session, shop):
    generate.generate_for_period(session, shop.site_id, "2026-04", preview=False, actor="t", front="cli")
    service.confirm(session, shop.site_id, "2026-04", actor="t", front="cli")
    session.commit()
    bill = overdue(session, shop, 3)
    service.pay_at_desk(session, bill.bill_no, bill.open_fen, method="cash", key="p", actor="t", front="cli")
    session.commit()
    assert arrears.send_due() == 0 and keys(session) == []


def test_the_schedule_reads_the_site_setting():
    s = arrears.schedule_of(Site(name="x", settings={"arrears_notice": {"after_days": "3", "times": 1}}))
    assert (s.after_days, s.every_days, s.times) == (3, 7, 1)
    assert s.notice_due(date(2026, 5, 1), date(2026, 5, 4), 0) == 1
    assert s.notice_due(date(2026, 5, 1), date(2026, 5, 4), 1) is None
    assert arrears.schedule_of(Site(name="y", settings={})) == arrears.Schedule(1, 7, 3)
