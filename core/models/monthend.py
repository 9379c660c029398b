"""Month-end items (issue 12): custom charges and apportionment shares, one row per item.

NOTE (bills branch): a copy of the ``monthend`` branch's ``MonthItem`` (as in its worktree at the time);
the lead keeps that branch's file. Bills read the ``mode='bill'`` rows and set ``bill_no``.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow


class MonthItem(Base):
    __tablename__ = "month_items"
    __table_args__ = (Index("ix_month_items_site_period", "site_id", "period"),
                      Index("ix_month_items_account_period", "account_id", "period"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(10))  # charge | apportion
    source_id: Mapped[int] = mapped_column(BigInteger)  # scheme id or rule id (by kind)
    # charge: the scheme's code; apportion: "apportion:<utility>" (electricity | water)
    code: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(200))
    period: Mapped[str] = mapped_column(String(12))  # as in the key: YYYY-MM, YYYY-Qn, YYYY or YYYY-MM-DD
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)  # inclusive: the period's last day
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # >= 0
    mode: Mapped[str] = mapped_column(String(10))  # deduct | bill
    key: Mapped[str] = mapped_column(String(200), unique=True)
    revenue_code: Mapped[str] = mapped_column(String(80))  # revenue:charge:<code> | revenue:apportion:<utility>
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), nullable=True)
    bill_no: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
