"""What the room page shows: account, balance, meters with their latest readings, today's usage
and cost, 30 days of daily usage, the latest ledger entries and meter commands."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session

from core import ledger
from core.alarms.shown import ShownBalance, shown_balance, shown_fee_status
from core.alarms.status import alarm_levels
from core.models import (
    Account,
    AccountPreset,
    JournalEntry,
    LedgerAccount,
    Meter,
    MeterCommand,
    Posting,
    Reading,
    Room,
    Site,
    TariffPlan,
)
from core.utils import utcnow

DAYS = 30


@dataclass
class MeterView:
    meter: Meter
    reading: Reading | None
    today: Decimal | None  # usage since local midnight, in the meter's unit


def open_account_of(session: Session, room: Room) -> Account | None:
    return session.scalar(select(Account).where(Account.room_id == room.id, Account.status == "open"))


def local_midnight(site: Site, day: date | None = None) -> datetime:
    tz = ZoneInfo(site.timezone or "Asia/Shanghai")
    day = day or utcnow().astimezone(tz).date()
    return datetime.combine(day, time.min, tzinfo=tz)


def meters_of(session: Session, room: Room, site: Site) -> list[MeterView]:
    meters = list(session.scalars(select(Meter).where(Meter.room_id == room.id, Meter.status == "active")
                                  .order_by(Meter.kind, Meter.id)))
    midnight = local_midnight(site)
    views = []
    for m in meters:
        latest = session.scalar(select(Reading).where(Reading.meter_id == m.id, Reading.status == "ok")
                                .order_by(Reading.taken_at.desc()).limit(1))
        base = session.scalar(select(Reading.total).where(Reading.meter_id == m.id, Reading.status == "ok",
                                                          Reading.taken_at < midnight)
                              .order_by(Reading.taken_at.desc()).limit(1))
        if base is None:
            base = session.scalar(select(Reading.total).where(Reading.meter_id == m.id, Reading.status == "ok",
                                                              Reading.taken_at >= midnight)
                                  .order_by(Reading.taken_at).limit(1))
        today = (latest.total - base) * m.ct_ratio if latest is not None and base is not None \
            and latest.taken_at >= midnight else (Decimal(0) if latest is not None else None)
        views.append(MeterView(m, latest, today))
    return views


def cost_today_fen(session: Session, account: Account, site: Site) -> int:
    """What billing priced today for the account (every billing mode), from its billed usage."""
    from core.models.billing import BilledUsage
    total = session.scalar(select(func.coalesce(func.sum(BilledUsage.amount_fen), 0))
                           .where(BilledUsage.account_id == account.id,
                                  BilledUsage.ended_at >= local_midnight(site)))
    return int(total or 0)


def daily_usage(session: Session, meters: list[Meter], site: Site, days: int = DAYS) -> dict:
    """{"days": ["11-01", ...], "series": [{"name", "kind", "data": [usage or None per day]}]}.

    Usage of a day = the last reading of that day minus the last reading before it, times the
    meter's CT ratio (what billing counts).
    """
    tz = ZoneInfo(site.timezone or "Asia/Shanghai")
    today = utcnow().astimezone(tz).date()
    day_list = [today - timedelta(days=i) for i in range(days - 1, -1, -1)]
    since = local_midnight(site, day_list[0] - timedelta(days=1))
    series = []
    for m in meters:
        first_by_day: dict[date, Decimal] = {}
        last_by_day: dict[date, Decimal] = {}
        prior = session.scalar(select(Reading.total).where(Reading.meter_id == m.id, Reading.status == "ok",
                                                           Reading.taken_at < since)
                               .order_by(Reading.taken_at.desc()).limit(1))
        rows = session.execute(select(Reading.taken_at, Reading.total)
                               .where(Reading.meter_id == m.id, Reading.status == "ok", Reading.taken_at >= since)
                               .order_by(Reading.taken_at))
        for taken_at, total in rows:
            day = taken_at.astimezone(tz).date()
            first_by_day.setdefault(day, total)
            last_by_day[day] = total
        data = []
        previous = last_by_day.get(day_list[0] - timedelta(days=1), prior)
        for d in day_list:
            value = last_by_day.get(d)
            if value is None:
                data.append(None if previous is None else 0)
                continue
            # The meter's first day counts from its first reading that day.
            data.append(float((value - (previous if previous is not None else first_by_day[d])) * m.ct_ratio))
            previous = value
        series.append({"name": m.serial, "kind": m.kind, "unit": "m³" if m.kind == "water" else "kWh",
                       "data": data})
    return {"days": [d.strftime("%m-%d") for d in day_list], "series": series}


def entries_of(session: Session, account: Account, limit: int = 20) -> list[tuple[JournalEntry, int]]:
    """Latest ledger entries of the account with what each did to its wallet (fen)."""
    wallet = ledger.wallet_of(session, account.id)
    rows = session.execute(
        select(JournalEntry, Posting.amount_fen)
        .join(Posting, and_(Posting.entry_id == JournalEntry.id, Posting.ledger_account_id == wallet.id))
        .order_by(JournalEntry.id.desc()).limit(limit))
    return [(e, int(a)) for e, a in rows]


def commands_of(session: Session, meter_ids: list[int], limit: int = 20) -> list[MeterCommand]:
    if not meter_ids:
        return []
    return list(session.scalars(select(MeterCommand).where(MeterCommand.meter_id.in_(meter_ids))
                                .order_by(MeterCommand.id.desc()).limit(limit)))


def account_fee(session: Session, account: Account, site: Site) -> tuple[int, str, list, ShownBalance]:
    """(wallet balance, fee status, alarm levels, shown balance). The wallet is what closing settles;
    the shown balance is what the page shows as 余额: the wallet, or a prepaid meter's remaining
    amount with its read time and the wallet money not yet on the meter (core.alarms.shown)."""
    wallet = session.scalar(select(LedgerAccount).where(LedgerAccount.account_id == account.id))
    balance = int(wallet.balance_fen if wallet else 0)
    levels = alarm_levels(account.alarm_levels, site.settings)
    shown = shown_balance(session, account)
    fee = "postpaid" if account.billing_mode == "postpaid" else shown_fee_status(shown, levels,
                                                                                keep_power=account.keep_power)
    return balance, fee, levels, shown


def tariff_names(session: Session) -> list[str]:
    return list(session.scalars(select(TariffPlan.name).order_by(TariffPlan.name)))


def presets_for(session: Session, site: Site) -> list[AccountPreset]:
    return list(session.scalars(select(AccountPreset)
                                .where((AccountPreset.site_id == site.id) | (AccountPreset.site_id.is_(None)))
                                .order_by(AccountPreset.name)))
