"""欠费通知: notices for overdue bills, through the tenant's alarm channels, on the site's schedule.

Site setting ``arrears_notice`` = ``{"after_days": 1, "every_days": 7, "times": 3}`` (the defaults):
notice *k* (1..times) of a bill is due ``after_days + (k - 1) * every_days`` days after its due date
(the site's local dates), while the bill still owes something. ``send_due`` (a periodic job, hourly)
sends every notice whose day has come: the next one of each overdue bill, once -- the notification key
is ``arrears:<bill no>:<k>`` plus the channel (``core.alarms.notifications``), and the bill records
``notices_sent`` under its row lock, so a job run twice, or two workers at once, send it once. A notice
missed for days is sent once when the job runs again (never one per missed day).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit, clock
from core.alarms import notifications
from core.bills.service import site_today
from core.db import get_existing, session_scope
from core.ledger.money import format_fen
from core.models import Account, Bill, Room, Site
from core.models.bill import OPEN_STATES

DEFAULT = {"after_days": 1, "every_days": 7, "times": 3}


@dataclass(frozen=True)
class Schedule:
    after_days: int
    every_days: int
    times: int

    def notice_due(self, due_date: date, today: date, sent: int) -> int | None:
        """The number of the notice due today for a bill that has had ``sent`` notices, or None."""
        k = sent + 1
        if k > self.times:
            return None
        if (today - due_date).days >= self.after_days + (k - 1) * self.every_days:
            return k
        return None


def schedule_of(site: Site) -> Schedule:
    raw = (site.settings or {}).get("arrears_notice") or {}
    values = dict(DEFAULT)
    if isinstance(raw, dict):
        for k in values:
            try:
                values[k] = max(int(raw.get(k, values[k])), 0)
            except (TypeError, ValueError):
                pass
    return Schedule(values["after_days"], max(values["every_days"], 1), values["times"])


def notice_text(room: str, bill: Bill, k: int) -> tuple[str, str]:
    return ("欠费通知", f"房间 {room} 的 {bill.period} 账单 {bill.bill_no} 尚欠 {format_fen(bill.open_fen)} 元，"
                        f"已于 {bill.due_date:%Y-%m-%d} 到期，请尽快缴费。（第 {k} 次通知）")


def send_for_site(session: Session, site: Site, now: datetime) -> int:
    """Send the due notices of one site; returns how many bills got one. Call inside a transaction."""
    sched = schedule_of(site)
    if sched.times == 0:
        return 0
    today = site_today(site)
    bills = session.scalars(select(Bill).where(Bill.site_id == site.id, Bill.kind == "bill",
                                               Bill.state.in_(OPEN_STATES), Bill.due_date < today,
                                               Bill.notices_sent < sched.times)
                            .order_by(Bill.id).with_for_update(skip_locked=True)).all()
    sent = 0
    for bill in bills:
        assert bill.due_date is not None
        k = sched.notice_due(bill.due_date, today, bill.notices_sent or 0)
        if k is None or bill.open_fen <= 0:
            continue
        account = get_existing(session, Account, bill.account_id)
        room = session.get(Room, account.room_id)
        subject, body = notice_text(room.number if room else "?", bill, k)
        notifications.notify_account(session, account, cause=f"arrears:{bill.bill_no}:{k}", kind="arrears",
                                     subject=subject, body=body,
                                     data={"bill_no": bill.bill_no, "open_fen": bill.open_fen,
                                           "due_date": bill.due_date.isoformat(), "notice": k})
        bill.notices_sent = k
        bill.last_notice_at = now
        audit.record(session, actor="system", front="job", action="arrears_notice", site_id=site.id,
                     account_id=account.id, bill_no=bill.bill_no, amount=format_fen(bill.open_fen), notice=k)
        sent += 1
    return sent


def send_due(now: datetime | None = None) -> int:
    """Periodic job: every site's due arrears notices, a transaction per site. Returns how many bills
    got a notice."""
    now = now or clock.now()
    with session_scope() as session:
        site_ids = sorted(set(session.scalars(select(Bill.site_id).where(Bill.kind == "bill",
                                                                         Bill.state.in_(OPEN_STATES),
                                                                         Bill.due_date.is_not(None)).distinct())))
    sent = 0
    for site_id in site_ids:
        with session_scope() as session:
            sent += send_for_site(session, get_existing(session, Site, site_id), now)
    return sent
