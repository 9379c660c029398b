"""Account presets: a named bundle (a plan per utility, billing mode, alarm levels, opening balance)
for one-click opening."""
from __future__ import annotations

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId


class AccountPreset(Base):
    __tablename__ = "account_presets"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), nullable=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    electricity_plan_id: Mapped[int | None] = mapped_column(ForeignKey("tariff_plans.id"), nullable=True)
    water_plan_id: Mapped[int | None] = mapped_column(ForeignKey("tariff_plans.id"), nullable=True)
    billing_mode: Mapped[str] = mapped_column(String(20), default="prepaid-platform")
    alarm_levels: Mapped[list | None] = mapped_column(JSON, nullable=True)
    opening_balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
