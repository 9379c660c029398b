"""Alarms, notifications and automatic supply control: the state each keeps between events.

- ``AlarmState``: one row per account; the balance alarm level it is at and how many notices
  of the current crossing went out. A crossing is numbered so a notice is never sent twice.
- ``Notification``: one message to one recipient on one channel (the delivery log), keyed by
  its cause; delivered by a job on queue "notify", retried on failure.
- ``SupplyControl``: one row per account; what automatic control did or is waiting to do
  (a cut deferred to the end of friendly hours, or held by keep-power).
- ``BotConfirmation``: a manager's chat command waiting for its confirmation code.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow

NOTIFICATION_STATES = ("pending", "sent", "retrying", "failed", "skipped")
SUPPLY_STATES = ("on", "cut", "deferred", "held")


class AlarmState(Base):
    __tablename__ = "alarm_states"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    level: Mapped[int] = mapped_column(Integer, default=0)        # 0 = clear, 1..3 = deepest level reached
    crossing: Mapped[int] = mapped_column(Integer, default=0)     # increases with every downward crossing
    notices_sent: Mapped[int] = mapped_column(Integer, default=0)  # notices of the current crossing
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    next_notice_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)


class Notification(Base):
    __tablename__ = "notifications"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)   # cause + channel: sent once
    kind: Mapped[str] = mapped_column(String(30), index=True)    # balance_alarm | device_alarm | supply | chat
    channel: Mapped[str] = mapped_column(String(30))
    recipient: Mapped[str] = mapped_column(String(200))          # openid, phone, email, URL
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), nullable=True, index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), nullable=True, index=True)
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(10), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    provider_ref: Mapped[str | None] = mapped_column(String(120), nullable=True)


class SupplyControl(Base):
    __tablename__ = "supply_controls"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), unique=True)
    state: Mapped[str] = mapped_column(String(10), default="on", index=True)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)  # deferred cut
    reason: Mapped[str] = mapped_column(String(200), default="")
    cuts: Mapped[int] = mapped_column(Integer, default=0)       # numbers the cut/restore keys
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class BotConfirmation(Base):
    __tablename__ = "bot_confirmations"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    manager_id: Mapped[int] = mapped_column(ForeignKey("managers.id"), index=True)
    code: Mapped[str] = mapped_column(String(8))
    action: Mapped[str] = mapped_column(String(30))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    summary: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
