"""What a tenant asks in chat: usage this month and today, and the latest wallet entries."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import JournalEntry, LedgerAccount, Meter, Posting, Reading


@dataclass(frozen=True)
class MeterUsage:
    serial: str
    kind: str          # electricity | water
    unit: str          # kWh | m³
    today: Decimal
    month: Decimal
    last_reading: Decimal | None


@dataclass(frozen=True)
class WalletLine:
    at: datetime
    kind: str
    amount_fen: int
    memo: str


def _total_at(session: Session, meter_id: int, at: datetime) -> Decimal | None:
    """The register at ``at``: the last reading before it, else the first one after it."""
    before = session.scalar(select(Reading.total)
                            .where(Reading.meter_id == meter_id, Reading.status == "ok", Reading.taken_at <= at)
                            .order_by(Reading.taken_at.desc()).limit(1))
    if before is not None:
        return before
    return session.scalar(select(Reading.total).where(Reading.meter_id == meter_id, Reading.status == "ok",
                                                      Reading.taken_at > at).order_by(Reading.taken_at).limit(1))


def meter_usage(session: Session, meter: Meter, now: datetime, tz: str = "Asia/Shanghai") -> MeterUsage:
    local = now.astimezone(ZoneInfo(tz))
    day_start = datetime.combine(local.date(), time(0), ZoneInfo(tz))
    month_start = day_start.replace(day=1)
    last = _total_at(session, meter.id, now)
    step = Decimal("0.001") if meter.kind == "water" else Decimal("0.01")

    def since(start: datetime) -> Decimal:
        base = _total_at(session, meter.id, start)
        used = max(last - base, Decimal(0)) if last is not None and base is not None else Decimal(0)
        return used.quantize(step)
    return MeterUsage(meter.serial, meter.kind, "m³" if meter.kind == "water" else "kWh",
                      since(day_start), since(month_start), last)


def recent_wallet_entries(session: Session, account_id: int, limit: int = 5) -> list[WalletLine]:
    rows = session.execute(
        select(JournalEntry.created_at, JournalEntry.kind, Posting.amount_fen, JournalEntry.memo)
        .join(Posting, Posting.entry_id == JournalEntry.id)
        .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
        .where(LedgerAccount.account_id == account_id)
        .order_by(JournalEntry.id.desc()).limit(limit)).all()
    return [WalletLine(at, kind, int(amount), memo or "") for at, kind, amount, memo in rows]
