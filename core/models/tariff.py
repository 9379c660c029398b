"""Tariff plans (the JSON plan format of the tariff engine) and their dated versions."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, Date, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, UTCDateTime, utcnow


class TariffPlan(Base):
    """A named plan. ``site_id`` set: the site's own plan (its admins edit it, its accounts use it);
    NULL: a shared template, which a site copies (same name, every version) the first time it is
    named there; later template versions never reach the copies."""

    __tablename__ = "tariff_plans"
    __table_args__ = (UniqueConstraint("site_id", "name"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), nullable=True, index=True)
    name: Mapped[str] = mapped_column(String(120))
    kind: Mapped[str] = mapped_column(String(20))
    unit: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    site = relationship("Site")
    versions: Mapped[list[TariffVersion]] = relationship(
        back_populates="plan", order_by="TariffVersion.effective_from")


class TariffVersion(Base):
    """The plan as it applies from ``effective_from`` (a date in the site's timezone)."""

    __tablename__ = "tariff_versions"
    __table_args__ = (UniqueConstraint("plan_id", "effective_from"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("tariff_plans.id"), index=True)
    effective_from: Mapped[date] = mapped_column(Date)
    spec: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    plan: Mapped[TariffPlan] = relationship(back_populates="versions")
