"""Double-entry ledger: accounts, entries, postings. Postings of an entry sum to zero.

Sign convention: a posting is signed; an account's balance is the sum of its postings. A
tenant wallet's balance is the tenant's credit (positive = money available). Clearing and cash
accounts go negative as money comes in; revenue accounts go positive as it is earned.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, UTCDateTime, utcnow

# meter_credit: wallet money a prepaid meter confirmed it took (wallet -> clearing:meter-credit).
ENTRY_KINDS = ("opening", "recharge", "consumption", "refund", "adjustment", "reversal", "settlement",
               "charge", "apportionment", "payment", "meter_credit")


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # "wallet:<account id>", "cash:desk", "clearing:wechat", "revenue:electricity", ...
    code: Mapped[str] = mapped_column(String(80), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # wallet | cash | clearing | revenue | equity
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), nullable=True, unique=True)
    balance_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JournalEntry(Base):
    __tablename__ = "journal_entries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), nullable=True, index=True)
    memo: Mapped[str] = mapped_column(Text, default="")
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("journal_entries.id"), nullable=True, unique=True)
    actor: Mapped[str] = mapped_column(String(120), default="system")
    front: Mapped[str] = mapped_column(String(20), default="system")
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    postings: Mapped[list[Posting]] = relationship(back_populates="entry", order_by="Posting.id")


class Posting(Base):
    __tablename__ = "postings"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    ledger_account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount_fen: Mapped[int] = mapped_column(BigInteger)

    entry: Mapped[JournalEntry] = relationship(back_populates="postings")
    ledger_account: Mapped[LedgerAccount] = relationship()
