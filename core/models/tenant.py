"""Who pays: tenants and their accounts (电户)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, UTCDateTime, utcnow

BILLING_MODES = ("prepaid-platform", "prepaid-meter", "postpaid")
ACCOUNT_STATUSES = ("open", "closed")


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = (UniqueConstraint("site_id", "name", "phone"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    phone: Mapped[str] = mapped_column(String(32), default="")
    wechat_openid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Channels the tenant chose for alarms, e.g. ["wechat_template", "sms"].
    notify_channels: Mapped[list] = mapped_column(JSON, default=list)
    email: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Account(Base):
    """A tenant's account at a room (电户). Owns one or several meters and one wallet."""

    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("rooms.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    billing_mode: Mapped[str] = mapped_column(String(20), default="prepaid-platform")
    # One plan per utility (a kWh plan never prices water): see plan_id_for and docs/tariffs.md.
    electricity_plan_id: Mapped[int | None] = mapped_column(ForeignKey("tariff_plans.id"), nullable=True)
    water_plan_id: Mapped[int | None] = mapped_column(ForeignKey("tariff_plans.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(10), default="open", index=True)
    # Alarm levels: [{"amount_fen": 5000, "times": 1, "every_minutes": 0}, ...]; None = site default.
    alarm_levels: Mapped[list | None] = mapped_column(JSON, nullable=True)
    keep_power: Mapped[bool] = mapped_column(Boolean, default=False)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    tenant = relationship("Tenant")
    room = relationship("Room")
    electricity_plan = relationship("TariffPlan", foreign_keys=[electricity_plan_id])
    water_plan = relationship("TariffPlan", foreign_keys=[water_plan_id])
    meters = relationship("Meter", back_populates="account", order_by="Meter.id")
    wallet = relationship("LedgerAccount", uselist=False, primaryjoin="Account.id == LedgerAccount.account_id",
                          foreign_keys="LedgerAccount.account_id", viewonly=True)

    def plan_id_for(self, utility: str) -> int | None:
        """The id of the plan that prices this account's meters of ``utility`` (None: unpriced)."""
        if utility == "electricity":
            return self.electricity_plan_id
        if utility == "water":
            return self.water_plan_id
        raise ValueError(f"unknown utility {utility!r}")

    def plan_of(self, utility: str):
        """The ``TariffPlan`` pricing this account's meters of ``utility``, or None."""
        return self.electricity_plan if utility == "electricity" else self.water_plan if utility == "water" else None
