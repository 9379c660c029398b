"""What a manager asks of their sites at a glance: who is low or in arrears, which meters are
offline, and today's money totals. Shared by chat commands and pages; scoped by site ids."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.alarms.shown import shown_balances
from core.alarms.status import alarm_levels, fee_status
from core.models import Account, JournalEntry, LedgerAccount, Meter, Posting, Room, Site


@dataclass(frozen=True)
class AccountLine:
    account_id: int
    site_id: int
    room: str
    balance_fen: int
    status: str  # alarm1 | alarm2 | alarm3 | arrears


@dataclass(frozen=True)
class DayTotals:
    day: date
    recharge_fen: int
    recharge_count: int
    refund_fen: int
    consumption_fen: int


def _scoped(query, column, site_ids: set[int] | None):
    return query if site_ids is None else query.where(column.in_(site_ids or {-1}))


def accounts_needing_attention(session: Session, site_ids: set[int] | None, limit: int = 200) -> list[AccountLine]:
    """Open prepaid accounts at an alarm level or in arrears, lowest balance first. The balance is
    the one each account shows (``core.alarms.shown``): a prepaid meter's remaining amount."""
    rows = session.execute(_scoped(
        select(Account, Room.number, LedgerAccount.balance_fen, Site.settings)
        .join(Room, Room.id == Account.room_id).join(Site, Site.id == Account.site_id)
        .join(LedgerAccount, LedgerAccount.account_id == Account.id)
        .where(Account.status == "open", Account.billing_mode != "postpaid"), Account.site_id, site_ids)
        .order_by(LedgerAccount.balance_fen, Room.number)).all()
    meter_side = shown_balances(session, [a.id for a, *_ in rows if a.billing_mode == "prepaid-meter"])
    lines = []
    for account, number, balance, settings in rows:
        if account.billing_mode == "prepaid-meter":
            balance = meter_side[account.id].fen
            if balance is None:  # never read: nothing known to warn about
                continue
        status = fee_status(balance, alarm_levels(account.alarm_levels, settings))
        if status in ("alarm1", "alarm2", "alarm3", "arrears"):
            lines.append(AccountLine(account.id, account.site_id, number, balance, status))
    lines.sort(key=lambda line: (line.balance_fen, line.room))
    return lines[:limit]


def offline_meters(session: Session, site_ids: set[int] | None, limit: int = 200) -> list[tuple[Meter, str | None]]:
    rows = session.execute(_scoped(
        select(Meter, Room.number).outerjoin(Room, Room.id == Meter.room_id)
        .where(Meter.status == "active", Meter.online.is_(False)), Meter.site_id, site_ids)
        .order_by(Meter.last_seen_at.nullsfirst(), Meter.serial).limit(limit)).all()
    return [(m, number) for m, number in rows]


def day_totals(session: Session, site_ids: set[int] | None, day: date, tz: str = "Asia/Shanghai") -> DayTotals:
    """Money through tenant wallets on one local day, by entry kind."""
    zone = ZoneInfo(tz)
    start = datetime.combine(day, time(0), zone)
    end = start + timedelta(days=1)
    query = _scoped(
        select(JournalEntry.kind, func.count(func.distinct(JournalEntry.id)),
               func.coalesce(func.sum(Posting.amount_fen), 0))
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
        .join(Account, Account.id == LedgerAccount.account_id)
        .where(LedgerAccount.kind == "wallet", JournalEntry.created_at >= start, JournalEntry.created_at < end),
        Account.site_id, site_ids).group_by(JournalEntry.kind)
    by_kind = {kind: (int(n), int(total)) for kind, n, total in session.execute(query).all()}
    recharge = by_kind.get("recharge", (0, 0))
    return DayTotals(day=day, recharge_fen=recharge[1], recharge_count=recharge[0],
                     refund_fen=-by_kind.get("refund", (0, 0))[1],
                     consumption_fen=-by_kind.get("consumption", (0, 0))[1])
