"""Payment orders: a tenant's recharge through WeChat Pay or Alipay."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow

# created -> pending (provider has it) -> paid | closed | failed; paid -> refunding -> refunded;
# flagged: something disagreed (amount, app id); a manager looks at it.
ORDER_STATES = ("created", "pending", "paid", "closed", "failed", "flagged", "refunding", "refunded")


class PaymentOrder(Base):
    __tablename__ = "payment_orders"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_no: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True, index=True)
    openid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    channel: Mapped[str] = mapped_column(String(10))  # wechat | alipay
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    state: Mapped[str] = mapped_column(String(10), default="created", index=True)
    provider_txn_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    flag_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    provider_data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
