"""Month-end money (issue 12): custom charge schemes, common-area apportionment rules, the items a
month-end run freezes for each (charge or apportionment) x account x period, and the run's steps.

- ``ChargeScheme``: 自定义收费方案 (property fee, rent, ...), its JSON as given (``spec``) plus the
  columns the run selects by.
- ``ApportionRule``: 公共区域分摊: a master meter, a basis and the rooms sharing it (``spec``).
- ``MonthItem``: one charge or apportionment share of one account for one period, in both modes.
  Deduct mode: posted at month end (``entry_id``); bill mode: posts nothing at month end, a bill
  takes it (``bill_no``, set by ``core.bills``) and its confirmation posts the receivable crediting
  ``revenue_code``. ``key`` is the journal key (``charge:<scheme>:<account>:<period>`` /
  ``apportion:<rule>:<account>:<period>``), unique.
- ``MonthEndStep``: one step of a site's run for a period (``charge:<scheme id>``,
  ``apportion:<rule id>``, ``bills``): a step row exists once its items are frozen, so a re-run or a
  run resumed after a crash posts the same items and never computes a different split.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, BigId, UTCDateTime, utcnow

ITEM_KINDS = ("charge", "apportion")
ITEM_MODES = ("deduct", "bill")


class ChargeScheme(Base):
    __tablename__ = "charge_schemes"
    __table_args__ = (UniqueConstraint("site_id", "code"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    code: Mapped[str] = mapped_column(String(40))  # ascii; revenue account revenue:charge:<code>
    every: Mapped[str] = mapped_column(String(10))  # month | quarter | year | once
    mode: Mapped[str] = mapped_column(String(10))  # deduct | bill
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    spec: Mapped[dict] = mapped_column(JSON)  # the scheme as stored (normalised), see core.monthend.schemes
    created_by: Mapped[str] = mapped_column(String(120), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApportionRule(Base):
    __tablename__ = "apportion_rules"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    master_meter_id: Mapped[int] = mapped_column(ForeignKey("meters.id"), index=True)
    basis: Mapped[str] = mapped_column(String(10))  # ratio | area | usage
    mode: Mapped[str] = mapped_column(String(10))  # deduct | bill
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    spec: Mapped[dict] = mapped_column(JSON)  # {"accounts": [room, ..] | {room: weight}, ...}
    created_by: Mapped[str] = mapped_column(String(120), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MonthItem(Base):
    """No foreign keys on ``site_id``, ``account_id`` and ``entry_id``, on purpose (as ``readings.meter_id``):
    checked row by row they were a large part of a 100,000-account month end. Only the month-end run
    writes items, from the accounts it has just read and the entries it has just posted in the same
    transaction; ``meterpay ledger check`` proves every deduct item's entry."""

    __tablename__ = "month_items"
    # one index besides the key and bill_no: (site, period), how the run and the bills find a month's items
    __table_args__ = (Index("ix_month_items_site_period", "site_id", "period"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(10))  # charge | apportion
    source_id: Mapped[int] = mapped_column(BigInteger)  # scheme id or rule id (by kind)
    # charge: the scheme's code; apportion: "apportion:<utility>" (electricity | water)
    code: Mapped[str] = mapped_column(String(60))
    name: Mapped[str] = mapped_column(String(200))
    period: Mapped[str] = mapped_column(String(12))  # as in the key: YYYY-MM, YYYY-Qn, YYYY or YYYY-MM-DD
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date] = mapped_column(Date)  # inclusive: the period's last day
    amount_fen: Mapped[int] = mapped_column(BigInteger)  # >= 0
    mode: Mapped[str] = mapped_column(String(10))  # deduct | bill
    key: Mapped[str] = mapped_column(String(200), unique=True)
    revenue_code: Mapped[str] = mapped_column(String(80))  # revenue:charge:<code> | revenue:apportion:<utility>
    entry_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    bill_no: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    meta: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MonthEndStep(Base):
    __tablename__ = "month_end_steps"
    __table_args__ = (UniqueConstraint("site_id", "period", "step"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    period: Mapped[str] = mapped_column(String(7))  # the run's month YYYY-MM
    step: Mapped[str] = mapped_column(String(40))  # charge:<id> | apportion:<id> | bills | done
    items: Mapped[int] = mapped_column(Integer, default=0)
    total_fen: Mapped[int] = mapped_column(BigInteger, default=0)
    # problems found while freezing (a master without readings, a room without area): shown, not guessed
    problems: Mapped[list] = mapped_column(JSON, default=list)
    actor: Mapped[str] = mapped_column(String(120), default="system")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
