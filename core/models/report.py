"""Report rollups: sums kept in the same transaction as the rows they summarise (issue 15).

Finance and reports read these instead of scanning readings, billed usage and postings; ``meterpay
ledger check`` proves each one equals the sums it stands for (``core.reports.check``). They are
written only by ``core.reports.rollups`` (called from the ledger's posting paths and from billing)
and rebuilt from the raw rows by ``meterpay report rebuild``.

- ``LedgerDay``: the postings of one ledger account (not a wallet) on one business day, for one
  tenant account and one entry kind. The day is the site's local date the money belongs to (usage
  by the reading that closed the interval, payments by their paid time, charges by their period;
  ``core.reports.rollups.entry_day``). ``account_id`` 0: an entry of no tenant account.
- ``UsageDay`` / ``UsageMonth``: the billed usage of one meter for one account on one local day /
  month (the day of the reading that closed each billed interval): quantity and fee per TOU period.
  ``account_id`` 0: a meter on no account. Fees are fen: each interval's ``amount_fen`` split over
  its periods by largest remainder, so the parts add up to the interval exactly.
- ``ReadingDay``: one meter's stored readings on one local day: the first and last of the billed
  series (status ok or late), how many there were and how many anomalies.

Their rows are updated as each batch adds to them (a month row by every batch of the month), so the
tables leave room in their pages (fillfactor) for PostgreSQL to update in place (HOT).
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Date, Index, Integer, PrimaryKeyConstraint, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, UTCDateTime
from core.models.billing import ExactQuantity
from core.models.meter import Quantity

# The TOU periods a rollup keeps apart; "none": usage priced without a TOU split; "fixed": a plan's fixed charge.
ROLLUP_PERIODS = ("sharp", "peak", "flat", "valley", "deep_valley", "none")
FEE_PARTS = (*ROLLUP_PERIODS, "fixed")


class LedgerDay(Base):
    __tablename__ = "ledger_days"
    __table_args__ = (PrimaryKeyConstraint("account_id", "day", "ledger_account_id", "kind"),
                      Index("ix_ledger_days_site_day", "site_id", "day"), {"postgresql_with": {"fillfactor": 70}})
    account_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    day: Mapped[date] = mapped_column(Date)
    ledger_account_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(20))  # the entry's kind (a reversal: the kind it undid)
    site_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    postings: Mapped[int] = mapped_column(Integer, default=0)


class _UsageColumns:
    meter_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    account_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(12))  # electricity | water
    quantity: Mapped[Decimal] = mapped_column(ExactQuantity, default=Decimal(0))
    q_sharp: Mapped[Decimal] = mapped_column(ExactQuantity, default=Decimal(0))
    q_peak: Mapped[Decimal] = mapped_column(ExactQuantity, default=Decimal(0))
    q_flat: Mapped[Decimal] = mapped_column(ExactQuantity, default=Decimal(0))
    q_valley: Mapped[Decimal] = mapped_column(ExactQuantity, default=Decimal(0))
    q_deep_valley: Mapped[Decimal] = mapped_column(ExactQuantity, default=Decimal(0))
    q_none: Mapped[Decimal] = mapped_column(ExactQuantity, default=Decimal(0))
    fee_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    f_sharp: Mapped[int] = mapped_column(BigInteger, default=0)
    f_peak: Mapped[int] = mapped_column(BigInteger, default=0)
    f_flat: Mapped[int] = mapped_column(BigInteger, default=0)
    f_valley: Mapped[int] = mapped_column(BigInteger, default=0)
    f_deep_valley: Mapped[int] = mapped_column(BigInteger, default=0)
    f_none: Mapped[int] = mapped_column(BigInteger, default=0)
    f_fixed: Mapped[int] = mapped_column(BigInteger, default=0)
    intervals: Mapped[int] = mapped_column(Integer, default=0)


class UsageDay(_UsageColumns, Base):
    __tablename__ = "usage_days"
    __table_args__ = (PrimaryKeyConstraint("meter_id", "day", "account_id"), Index("ix_usage_days_day", "day"),
                      {"postgresql_with": {"fillfactor": 70}})
    day: Mapped[date] = mapped_column(Date)


class UsageMonth(_UsageColumns, Base):
    __tablename__ = "usage_months"
    __table_args__ = (PrimaryKeyConstraint("meter_id", "month", "account_id"), Index("ix_usage_months_month", "month"),
                      {"postgresql_with": {"fillfactor": 50}})
    month: Mapped[date] = mapped_column(Date)  # the first day of the month


class ReadingDay(Base):
    __tablename__ = "reading_days"
    __table_args__ = {"postgresql_with": {"fillfactor": 70}}
    meter_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    first_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    first_total: Mapped[Decimal | None] = mapped_column(Quantity, nullable=True)
    last_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_total: Mapped[Decimal | None] = mapped_column(Quantity, nullable=True)
    readings: Mapped[int] = mapped_column(Integer, default=0)   # status ok or late
    anomalies: Mapped[int] = mapped_column(Integer, default=0)
