"""Which WeChat user (openid) may see which account: made by scanning the room's QR code."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow


class TenantBinding(Base):
    __tablename__ = "tenant_bindings"
    __table_args__ = (UniqueConstraint("openid", "account_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    openid: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
