"""Payment orders: a tenant's recharge through WeChat Pay or Alipay."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow

# created -> pending (provider has it) -> paid | closed | failed; paid -> refunding -> refunded;
# flagged: something disagreed (amount, app id); a manager looks at it.
ORDER_STATES = ("created", "pending", "paid", "closed", "failed", "flagged", "refunding", "refunded")
# Where the tenant pays from; a WeChat Pay order is made with that front's app id.
PAY_FRONTS = ("miniapp", "official_account")


class PaymentOrder(Base):
    __tablename__ = "payment_orders"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_no: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    tenant_id: Mapped[int | None] = mapped_column(ForeignKey("tenants.id"), nullable=True, index=True)
    openid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The app id the order was made with (WeChat Pay: the mini-program's or the official account's; Alipay: ours)
    # and the front the tenant paid from. NULL: an order from before these were recorded.
    app_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    front: Mapped[str | None] = mapped_column(String(20), nullable=True)
    channel: Mapped[str] = mapped_column(String(10))  # wechat | alipay
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    state: Mapped[str] = mapped_column(String(10), default="created", index=True)
    provider_txn_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    refunded_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # A payment of a postpaid bill (issue 12): credited to the bill's receivable, not the wallet.
    bill_no: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    flag_reason: Mapped[str | None] = mapped_column(String(200), nullable=True)
    provider_data: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)  # the provider's time
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


# requested: the wallet is debited, the provider not yet asked (or not reachable);
# pending: the provider accepted it and is paying (WeChat PROCESSING, Alipay data without REFUND_SUCCESS);
# unknown: we asked and do not know the outcome (timeout, 5xx, Alipay 20000/ACQ.SYSTEM_ERROR, fund_change N
#          not confirmed): queried, and sent again under the same refund number, until the provider says;
# abnormal: WeChat ABNORMAL (the money could not reach the payer), waits for a manager;
# succeeded, failed: final. Only failed (a definitive refusal, or a manager's "recredit") reverses the debit.
REFUND_STATES = ("requested", "pending", "unknown", "abnormal", "succeeded", "failed")
OPEN_REFUND_STATES = ("requested", "pending", "unknown", "abnormal")


class PaymentRefund(Base):
    """A manager's refund of (part of) a paid order, sent back through its provider.

    The wallet is debited when the refund is requested (so the money cannot be spent twice);
    only a definitive refusal reverses that entry; an unknown outcome never does.
    """

    __tablename__ = "payment_refunds"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    refund_no: Mapped[str] = mapped_column(String(40), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("payment_orders.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(10), default="requested", index=True)
    provider_refund_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    reason: Mapped[str] = mapped_column(String(200), default="")
    requested_by: Mapped[str] = mapped_column(String(120), default="system")
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), nullable=True)
    provider_data: Mapped[dict] = mapped_column(JSON, default=dict)
    # how many times the provider was asked (refund or query) without a definite answer, and the last error
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class PaymentReconciliation(Base):
    """One day's comparison of a provider's statement with the ledger (one row per channel and day)."""

    __tablename__ = "payment_reconciliations"
    __table_args__ = (UniqueConstraint("channel", "day"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    channel: Mapped[str] = mapped_column(String(10))
    day: Mapped[date] = mapped_column(Date)
    statement_count: Mapped[int] = mapped_column(Integer, default=0)
    ledger_count: Mapped[int] = mapped_column(Integer, default=0)
    # [{"kind": "missing_in_ledger" | "missing_in_statement" | "amount_differs", "txn_id", ...}]
    mismatches: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
