"""Postpaid bills (issue 12): a bill per account and period, its lines, and credit notes.

A bill is a draft outside the ledger until a manager confirms it; confirming posts the receivable
under ``bill:<bill no>`` and the bill is never edited again (only its paid/credited sums and state
move, under its row lock). A correction is a credit note (a ``bills`` row of kind ``credit`` that
``corrects_id`` the bill, posted at once) or a new bill (kind ``bill`` with ``corrects_id``).
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, Numeric, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow

# draft -> confirmed -> partly_paid -> paid. "overdue" is not stored: confirmed or partly paid
# past the due date. A credit note is "confirmed" (posted) from the start.
BILL_STATES = ("draft", "confirmed", "partly_paid", "paid")
OPEN_STATES = ("confirmed", "partly_paid")
BILL_KINDS = ("bill", "credit")
LINE_KINDS = ("energy", "charge", "apportion", "credit", "other")


class Bill(Base):
    __tablename__ = "bills"
    __table_args__ = (Index("ix_bills_site_period", "site_id", "period"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bill_no: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(8), default="bill")
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    period: Mapped[str] = mapped_column(String(7))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)  # the last day, inclusive
    # "gen:<account id>:<period>" for the bill generation makes: one per account and period.
    origin_key: Mapped[str | None] = mapped_column(String(60), nullable=True, unique=True)
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("bills.id"), nullable=True, index=True)
    state: Mapped[str] = mapped_column(String(12), default="draft")
    total_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    paid_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    credited_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    due_date: Mapped[date | None] = mapped_column(Date, nullable=True)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(120), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    notices_sent: Mapped[int] = mapped_column(Integer, default=0)
    last_notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    @property
    def open_fen(self) -> int:
        """What is still owed: total less payments and credit notes (0 for a draft or a credit note)."""
        if self.kind != "bill" or self.state == "draft":
            return 0
        return max(int(self.total_fen) - int(self.paid_fen or 0) - int(self.credited_fen or 0), 0)


class BillLine(Base):
    __tablename__ = "bill_lines"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    bill_id: Mapped[int] = mapped_column(ForeignKey("bills.id"), index=True)
    line_no: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(10))  # LINE_KINDS
    # energy: "<utility>:<part>" (sharp, peak, flat, valley, deep_valley, tier<n>, fixed, all);
    # charge / apportion: the item's code; credit: the code of the line it corrects.
    code: Mapped[str] = mapped_column(String(80))
    name: Mapped[str] = mapped_column(String(120), default="")
    quantity: Mapped[Decimal | None] = mapped_column(Numeric(24, 6), nullable=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    revenue_code: Mapped[str] = mapped_column(String(80))  # the ledger account the confirm credits
    # trace: energy {"intervals", "plan_ids"}; charge/apportion {"item_id", "key", "source_id"}
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
