"""Audit log: every action that moves money or changes supply (who, what, when, which front)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow


class AuditLog(Base):
    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(120))        # "manager:alice", "tenant:12", "system"
    front: Mapped[str] = mapped_column(String(20))         # admin | bot | miniapp | cli | job | system
    action: Mapped[str] = mapped_column(String(40), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), nullable=True, index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), nullable=True, index=True)
    meter_id: Mapped[int | None] = mapped_column(ForeignKey("meters.id"), nullable=True)
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
