"""Month-end items (issue 12): custom charges and apportionment shares, one row per item.

NOTE (bills branch): a copy of the ``monthend`` branch's model with the columns agreed for the
merge; the lead keeps that branch's file. Bills read the ``mode='bill'`` rows and set ``bill_no``.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow


class MonthItem(Base):
    __tablename__ = "month_items"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))  # charge | apportion
    source_id: Mapped[int] = mapped_column(BigInteger)  # the scheme or rule
    code: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(120))
    period: Mapped[str] = mapped_column(String(10), index=True)
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    mode: Mapped[str] = mapped_column(String(10))  # deduct | bill
    key: Mapped[str] = mapped_column(String(200), unique=True)
    revenue_code: Mapped[str] = mapped_column(String(80))
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), nullable=True)
    bill_no: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
