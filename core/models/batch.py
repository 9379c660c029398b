"""Batch tasks (批量操作任务): one action over many rooms, frozen into items when created."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow

BATCH_ACTIONS = ("set_tariff", "set_meter_prices", "relay_off", "relay_on", "keep_power_on", "keep_power_off",
                 "set_alarms", "sync_clock", "recharge", "charge")
# unconfirmed -> scheduled | pending -> running -> finished | stopped;  scheduled/pending/unconfirmed -> cancelled
TASK_STATES = ("unconfirmed", "scheduled", "pending", "running", "finished", "stopped", "cancelled")
ITEM_STATES = ("queued", "sent", "confirmed", "failed", "skipped", "cancelled")
ITEM_FINAL = ("confirmed", "failed", "skipped", "cancelled")


class BatchTask(Base):
    __tablename__ = "batch_tasks"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    action: Mapped[str] = mapped_column(String(20))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    selection: Mapped[dict] = mapped_column(JSON, default=dict)   # what was asked, as given (for the record)
    state: Mapped[str] = mapped_column(String(12), default="pending", index=True)
    scheduled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(120), default="system")
    front: Mapped[str] = mapped_column(String(20), default="system")
    confirmed_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    stopped_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    # The engine driving the task holds a lease (token, until); a dead engine's lease runs out
    # and the periodic sweep starts another (core.batch.runner.sweep).
    driver_token: Mapped[str | None] = mapped_column(String(32), nullable=True)
    driver_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    item_count: Mapped[int] = mapped_column(Integer, default=0)


class BatchItem(Base):
    __tablename__ = "batch_items"
    __table_args__ = (UniqueConstraint("task_id", "seq"), Index("ix_batch_items_task_state", "task_id", "state"))
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("batch_tasks.id"))
    seq: Mapped[int] = mapped_column(Integer)                    # <item> of the key batch:<task>:<item>
    room_id: Mapped[int | None] = mapped_column(ForeignKey("rooms.id"), nullable=True)
    room: Mapped[str] = mapped_column(String(60), default="")     # the room number as frozen
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), nullable=True)
    meter_id: Mapped[int | None] = mapped_column(ForeignKey("meters.id"), nullable=True)
    meter: Mapped[str] = mapped_column(String(64), default="")    # the meter serial as frozen
    gateway_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    # The item's place among the task's items of its gateway: items are fed in (rank, id) order, so
    # every gateway's lane gets work at once instead of one gateway's rooms after another's.
    rank: Mapped[int] = mapped_column(Integer, default=0)
    amount_fen: Mapped[int | None] = mapped_column(Integer, nullable=True)  # per-item amount (spreadsheet recharge)
    state: Mapped[str] = mapped_column(String(10), default="queued")
    reason: Mapped[str] = mapped_column(Text, default="")
    command_id: Mapped[int | None] = mapped_column(BigId, nullable=True, index=True)
    entry_id: Mapped[int | None] = mapped_column(BigId, nullable=True)
    tries: Mapped[int] = mapped_column(Integer, default=1)        # 1 = first run; a retry of a failed item adds one
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
