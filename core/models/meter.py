"""Meters, the gateways they hang behind, their readings and their events."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, UTCDateTime, utcnow

METER_KINDS = ("electricity", "water")
# The unit a plan must be priced in to price a meter of each kind (utility).
UTILITY_UNIT = {"electricity": "kWh", "water": "m3"}
PROTOCOLS = ("modbus-rtu", "modbus-tcp", "dlt645", "cjt188")
# Register values: energy kWh to 0.01, water m3 to 0.001; Numeric(16, 3) holds both exactly.
Quantity = Numeric(16, 3)


class Gateway(Base):
    """An RS485-to-TCP gateway (or 4G DTU). One bus: one request at a time."""

    __tablename__ = "gateways"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    url: Mapped[str] = mapped_column(String(200))  # tcp://host:port
    protocol: Mapped[str] = mapped_column(String(20), default="modbus-rtu")
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Meter(Base):
    __tablename__ = "meters"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"), nullable=True, index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), nullable=True, index=True)
    gateway_id: Mapped[int | None] = mapped_column(ForeignKey("gateways.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(12), default="electricity")
    profile: Mapped[str] = mapped_column(String(60))
    address: Mapped[str] = mapped_column(String(20))  # Modbus unit id or DL/T 645 / CJ/T 188 address
    ct_ratio: Mapped[int] = mapped_column(Integer, default=1)
    # The meter's own plan, used only while it is on no account (a common area's master meter,
    # set by a tenant-less row of ``sites import``); on an account, the account's plan prices it.
    tariff_plan_id: Mapped[int | None] = mapped_column(ForeignKey("tariff_plans.id"), nullable=True)
    # active: in service; replaced: closed on its final reading by a meter swap.
    status: Mapped[str] = mapped_column(String(12), default="active")
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    relay_state: Mapped[str] = mapped_column(String(10), default="unknown")  # on | off | unknown
    valve_state: Mapped[str] = mapped_column(String(10), default="unknown")  # open | closed | abnormal | unknown
    # What we last commanded (on/off/open/closed) to detect disagreement with the meter.
    commanded_state: Mapped[str | None] = mapped_column(String(10), nullable=True)
    keep_power: Mapped[bool] = mapped_column(Boolean, default=False)
    # Meter-side prepaid mirror: what the meter says it holds and its purchase count.
    remaining_fen: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # When the meter last reported its remaining amount (what a prepaid-meter account shows).
    remaining_read_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    purchase_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Latest live values as decoded from the profile (voltage_v, current_a, power_kw, periods...).
    live: Mapped[dict] = mapped_column(JSON, default=dict)
    # When each mirrored group was read from the meter (the start of the read, UTC, microseconds kept):
    # an observation read before these never replaces it (hardware.availability.apply_values).
    supply_observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)   # relay/valve
    prepaid_observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)  # remaining, count
    live_observed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)     # live
    # Since when the observed relay/valve disagrees with the desired one (core.supply.enforce); None: agrees.
    mismatch_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    installed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    replaced_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    account = relationship("Account", back_populates="meters")
    gateway = relationship("Gateway")
    room = relationship("Room")


class Reading(Base):
    """A cumulative register reading, stored once per (meter, time)."""

    __tablename__ = "readings"
    __table_args__ = (UniqueConstraint("meter_id", "taken_at"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # No foreign key, on purpose (migration 0003): checked row by row it was a third of a bulk
    # import's database time. Only billing writes readings, for meters whose billing-state row
    # (which has its foreign key to meters) it holds locked, so the meter always exists.
    meter_id: Mapped[int] = mapped_column(BigId)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    total: Mapped[Decimal] = mapped_column(Quantity)
    sharp: Mapped[Decimal | None] = mapped_column(Quantity, nullable=True)
    peak: Mapped[Decimal | None] = mapped_column(Quantity, nullable=True)
    flat: Mapped[Decimal | None] = mapped_column(Quantity, nullable=True)
    valley: Mapped[Decimal | None] = mapped_column(Quantity, nullable=True)
    deep_valley: Mapped[Decimal | None] = mapped_column(Quantity, nullable=True)
    source: Mapped[str] = mapped_column(String(12), default="poll")  # poll | import | manual
    # ok: part of the billed series; anomaly: below the previous reading, not billed.
    status: Mapped[str] = mapped_column(String(10), default="ok")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MeterEvent(Base):
    """Things that happened to a meter: offline, online, anomaly, relay mismatch, tamper, swap."""

    __tablename__ = "meter_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    acknowledged: Mapped[bool] = mapped_column(Boolean, default=False)

    meter = relationship("Meter")
