"""The command outbox: a command is a row first, then a job; every state change is kept."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, UTCDateTime, utcnow

COMMAND_KINDS = ("relay_off", "relay_on", "valve_close", "valve_open", "recharge", "set_prices",
                 "set_tou", "set_alarms", "keep_power_on", "keep_power_off", "sync_clock")
# pending -> running -> confirmed | failed | expired (running may go back to pending for a retry)
COMMAND_STATES = ("pending", "running", "confirmed", "failed", "expired")
FINAL_STATES = ("confirmed", "failed", "expired")


class MeterCommand(Base):
    __tablename__ = "meter_commands"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The running attempt's lease: its worker's token and until when it holds the command. The
    # worker renews it while it runs (hardware.executor); a command whose lease ran out is free.
    lease_owner: Mapped[str | None] = mapped_column(String(32), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    requested_by: Mapped[str] = mapped_column(String(120), default="system")
    front: Mapped[str] = mapped_column(String(20), default="system")

    meter = relationship("Meter")
    events: Mapped[list[MeterCommandEvent]] = relationship(order_by="MeterCommandEvent.id")


class MeterCommandEvent(Base):
    __tablename__ = "meter_command_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    command_id: Mapped[int] = mapped_column(ForeignKey("meter_commands.id"), index=True)
    state: Mapped[str] = mapped_column(String(10))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    detail: Mapped[str] = mapped_column(Text, default="")
