"""Billing from readings: each meter's billing cursor, and the priced usage of every billed interval."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow
from core.models.meter import Quantity

# Usage after allocation is exact to 1e-6; amounts (usage x 4-place price) to 1e-10.
ExactQuantity = Numeric(24, 6)
ExactAmount = Numeric(30, 10)


class MeterBillingState(Base):
    """Where billing of a meter stands: the last reading billed, the tier cycle and usage in it,
    the last month charged a fixed fee, and the cumulative exact amount and fen posted so far
    (each interval posts round(exact total) minus what was posted, so rounding never drifts).
    Its row is locked while a meter's readings are ingested: one writer per meter at a time."""

    __tablename__ = "meter_billing_states"
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"), primary_key=True, autoincrement=False)
    last_reading_id: Mapped[int | None] = mapped_column(ForeignKey("readings.id"), nullable=True)
    last_taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_total: Mapped[Decimal | None] = mapped_column(Quantity, nullable=True)
    last_periods: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    cycle: Mapped[str | None] = mapped_column(String(40), nullable=True)
    cycle_used: Mapped[Decimal] = mapped_column(ExactQuantity, default=Decimal(0))
    charged_month: Mapped[str | None] = mapped_column(String(7), nullable=True)
    exact_amount: Mapped[Decimal] = mapped_column(ExactAmount, default=Decimal(0))
    billed_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # The latest taken_at of any stored reading of the meter (anomalies too): a new reading after
    # it cannot be a duplicate, so only readings up to it are looked up.
    seen_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Closed: the meter was replaced on its final reading; later readings are anomalies.
    closed: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BilledUsage(Base):
    """The priced usage of one billed interval of one meter (from one reading to a later one).

    Every mode records it: prepaid-platform rows point at the consumption entry that deducted
    ``amount_fen``; postpaid rows are what periodic bills collect (``bill_id`` set once billed);
    prepaid-meter rows are usage only (the meter holds the balance, nothing is posted).
    """

    __tablename__ = "billed_usage"
    __table_args__ = (UniqueConstraint("meter_id", "to_reading_id"),
                      Index("ix_billed_usage_account_ended", "account_id", "ended_at"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), nullable=True)
    billing_mode: Mapped[str] = mapped_column(String(20))
    from_reading_id: Mapped[int] = mapped_column(ForeignKey("readings.id"))
    to_reading_id: Mapped[int] = mapped_column(ForeignKey("readings.id"))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    quantity: Mapped[Decimal] = mapped_column(ExactQuantity)  # times the CT ratio
    amount: Mapped[Decimal] = mapped_column(ExactAmount)  # exact priced amount in yuan
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # what this interval posted or accrued
    # [{"period"/"tier"/"charge": .., "quantity": "..", "price": "..", "amount": ".."}] (exact strings)
    lines: Mapped[list] = mapped_column(JSON, default=list)
    # The plan that priced it (NULL: unpriced, or billed before migration 0004). No foreign key, on
    # purpose: rows are written by COPY on the hot path, like the readings' meter_id.
    plan_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), nullable=True)
    bill_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
