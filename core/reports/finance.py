"""Finance: 收入概况 (income and cash in by day, month, year or any span) and 订单总览 (every money flow
of a site). Read from the ledger only: income from ``ledger_days`` (the rollup of revenue, cash and
clearing postings by business day), the order list from the journal entries themselves.

Two figures, never mixed:

- **income** is what the revenue accounts earned: ``revenue:electricity``, ``revenue:water``, each
  ``revenue:charge:<code>``, ``revenue:apportion:<utility>`` (all as ``apportion``) and any other
  revenue account (``other``). A reversal counts against what it reversed.
- **cash in** is what the cash and clearing accounts received, per channel: ``clearing:wechat``,
  ``clearing:alipay``, ``cash:desk`` (and any other ``cash:<method>``) as ``cash``,
  ``cash:transfer`` and ``clearing:bank`` as ``transfer``; net of refunds. ``refunds`` is the money
  paid back through those accounts (refund entries, and a credit paid out when an account closes),
  shown as a positive amount. Credit moved to prepaid meters (``clearing:meter-credit``) is neither.

Dating is the rollup's: usage by the reading that closed the interval, charges by their period,
payments by the provider's paid time, everything else when it was posted (``core.reports.rollups``).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from core.models import (
    Account,
    ChargeScheme,
    JournalEntry,
    LedgerAccount,
    PaymentOrder,
    PaymentRefund,
    Posting,
    Site,
    Tenant,
)
from core.models.payment import ORDER_STATES, REFUND_STATES
from core.models.report import LedgerDay
from core.reports import rollups
from core.reports.base import Period, natural, parse_choice, periods, places, shift, yuan
from core.reports.rollups import zone

INCOME_FIXED = ("electricity", "water")
CHANNELS = ("wechat", "alipay", "cash", "transfer")
ORDER_CHANNELS = (*CHANNELS, "wallet")
# The entry kinds the order overview lists (usage deductions are not orders: ``--kind consumption`` shows them).
# A row's state: its entry reversed, else its refund's or its order's state, else "posted".
ROW_STATES = tuple(dict.fromkeys(("posted", "reversed", *ORDER_STATES, *REFUND_STATES)))
ORDER_KINDS = ("recharge", "refund", "charge", "apportionment", "payment", "adjustment", "settlement", "reversal",
               "opening", "consumption")


def income_part(code: str) -> str | None:
    """Which income column a ledger account code belongs to; None: not a revenue account."""
    parts = code.split(":")
    if parts[0] != "revenue":
        return None
    if len(parts) == 2 and parts[1] in INCOME_FIXED:
        return parts[1]
    if len(parts) >= 3 and parts[1] == "charge":
        return ":".join(parts[2:])
    if parts[1] == "apportion":
        return "apportion"
    return "other"


def channel_of(code: str) -> str | None:
    """Which cash-in channel a ledger account code is; None: not cash in."""
    kind, _, name = code.partition(":")
    if kind == "clearing":
        return {"wechat": "wechat", "alipay": "alipay", "bank": "transfer"}.get(name)
    if kind == "cash":
        return "transfer" if name == "transfer" else "cash"
    return None


# --- 收入概况 ----------------------------------------------------------------------------------

@dataclass
class IncomeRow:
    period: str
    income: dict[str, int]
    cash_in: dict[str, int]
    refunds: int

    def as_json(self, charge_codes: list[str], *, with_period: bool = True) -> dict:
        inc = {k: yuan(self.income.get(k, 0)) for k in (*INCOME_FIXED, *charge_codes, "apportion", "other", "total")}
        cash = {k: yuan(self.cash_in.get(k, 0)) for k in (*CHANNELS, "total")}
        out: dict[str, Any] = {"period": self.period} if with_period else {}
        out.update(income=inc, cash_in=cash, refunds=yuan(self.refunds))
        return out


def _empty(label: str) -> IncomeRow:
    return IncomeRow(label, defaultdict(int), defaultdict(int), 0)


def _add(row: IncomeRow, part: str | None, channel: str | None, amount: int, refund: int) -> None:
    if part is not None:
        row.income[part] += amount
        row.income["total"] += amount
    if channel is not None:
        row.cash_in[channel] -= amount  # cash and clearing accounts go negative as money comes in
        row.cash_in["total"] -= amount
        row.refunds += refund


@dataclass
class IncomeReport:
    site: str
    by: str
    start: date
    end: date
    rows: list[IncomeRow]
    total: IncomeRow
    charge_codes: list[str]
    charge_names: dict[str, str] = field(default_factory=dict)  # code -> the scheme's name (物业费), for sheets

    def as_json(self) -> dict:
        return {"rows": [r.as_json(self.charge_codes) for r in self.rows],
                "total": self.total.as_json(self.charge_codes, with_period=False)}


def _daily(session: Session, site: Site, start: date, end: date) -> tuple[dict[date, IncomeRow], set[str]]:
    """Per business day: income per part, cash in per channel and refunds, in fen."""
    refund = case((LedgerDay.kind == "refund", LedgerDay.amount_fen),
                  (LedgerDay.kind == "settlement", case((LedgerDay.amount_fen > 0, LedgerDay.amount_fen), else_=0)),
                  else_=0)
    q = (select(LedgerDay.day, LedgerDay.ledger_account_id, func.sum(LedgerDay.amount_fen), func.sum(refund))
         .where(LedgerDay.site_id == site.id, LedgerDay.day >= start, LedgerDay.day <= end)
         .group_by(LedgerDay.day, LedgerDay.ledger_account_id))
    rows = session.execute(q).all()
    codes = dict(session.execute(select(LedgerAccount.id, LedgerAccount.code).where(
        LedgerAccount.id.in_({r[1] for r in rows} or {-1}))).all())
    days: dict[date, IncomeRow] = {}
    charge_codes: set[str] = set()
    for day, ledger_account_id, amount, refunded in rows:
        code = codes[ledger_account_id]
        part, channel = income_part(code), channel_of(code)
        if part is None and channel is None:
            continue
        if part not in (None, *INCOME_FIXED, "apportion", "other"):
            charge_codes.add(part)
        row = days.get(day)
        if row is None:
            row = days[day] = _empty(day.isoformat())
        _add(row, part, channel, int(amount), int(refunded or 0))
    return days, charge_codes


def _sum(days: dict[date, IncomeRow], p: Period) -> IncomeRow:
    out = _empty(p.label)
    d = p.start
    while d <= p.end:
        r = days.get(d)
        if r is not None:
            for k, v in r.income.items():
                out.income[k] += v
            for k, v in r.cash_in.items():
                out.cash_in[k] += v
            out.refunds += r.refunds
        d += timedelta(days=1)
    return out


def income(session: Session, site: Site, start: date, end: date, by: str = "day") -> IncomeReport:
    """Income, cash in and refunds of ``site`` per day, month or year from ``start`` to ``end``
    (local dates, inclusive; months and years clipped to the range). Every period in the range is a
    row, empty ones too. ``income.total`` equals the revenue postings of the range; ``cash_in.total``
    minus nothing equals what the cash and clearing accounts received net."""
    by = parse_choice(by, ("day", "month", "year"), "by")
    days, codes = _daily(session, site, start, end)
    rows = [_sum(days, p) for p in periods(start, end, by)]
    total = _sum(days, Period("total", start, end))
    names = dict(session.execute(select(ChargeScheme.code, ChargeScheme.name).where(
        ChargeScheme.site_id == site.id, ChargeScheme.code.in_(codes or {""}))).all()) if codes else {}
    return IncomeReport(site.name, by, start, end, rows, total, sorted(codes), names)


def compare(session: Session, site: Site, report: IncomeReport) -> list[dict]:
    """For the page: each row's income and cash in against the period before it and the same period
    a year before (fen; None where the earlier period is outside what the ledger holds)."""
    first = shift(Period("", report.start, report.start), report.by, years=-1)
    before = shift(Period("", report.start, report.start), report.by, back=1)
    lo = min(first.start, before.start)
    days, _ = _daily(session, site, lo, report.end)
    first_day = session.scalar(select(func.min(LedgerDay.day)).where(LedgerDay.site_id == site.id))
    out = []
    for row, p in zip(report.rows, periods(report.start, report.end, report.by)):
        prev, last = shift(p, report.by, back=1), shift(p, report.by, years=-1)

        def totals(q: Period) -> dict | None:
            if first_day is None or q.end < first_day:
                return None
            r = _sum(days, q)
            return {"period": q.label, "income": r.income.get("total", 0), "cash_in": r.cash_in.get("total", 0)}
        out.append({"period": row.period, "income": row.income.get("total", 0), "cash_in": row.cash_in.get("total", 0),
                    "previous": totals(prev), "last_year": totals(last)})
    return out


# --- 订单总览 ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class OrderRow:
    time: datetime          # local time of the site
    room: str
    building: str
    floor: str
    tenant: str
    kind: str
    channel: str
    amount_fen: int         # the tenant's side: into the wallet positive, out of it negative
    state: str
    entry_id: int
    provider_txn_id: str | None

    def as_json(self) -> dict:
        return {"time": self.time.isoformat(), "room": self.room, "tenant": self.tenant, "kind": self.kind,
                "channel": self.channel, "amount": yuan(self.amount_fen), "state": self.state,
                "entry_id": self.entry_id, "provider_txn_id": self.provider_txn_id}


@dataclass
class OrdersReport:
    site: str
    start: date
    end: date
    rows: list[OrderRow]

    @property
    def total_fen(self) -> int:
        return sum(r.amount_fen for r in self.rows)

    def as_json(self) -> dict:
        return {"rows": [r.as_json() for r in self.rows], "total": yuan(self.total_fen), "count": len(self.rows)}


def orders(session: Session, site: Site, start: date, end: date, *, kind: str | None = None,
           channel: str | None = None, state: str | None = None, building: str | None = None,
           room: str | None = None, tenant: str | None = None) -> OrdersReport:
    """Every money flow of ``site`` from ``start`` to ``end`` (local dates, inclusive), newest first:
    recharges (online and at the desk), refunds, charges, apportionment, bill payments,
    adjustments, settlements, reversals and opening balances; usage deductions only with
    ``kind="consumption"``. Time is when the money belongs, as income dates it: the paid time of an
    online payment, the start of a charge's period, the reading of usage, else when it was posted.
    ``amount`` is the tenant's side (the wallet's change; for an entry without a wallet, such as a
    bill paid at the desk, the money received; for a bill's credit note, the whole credit: what is
    owed less plus what went to the wallet). Filters: entry kind, channel (wechat, alipay, cash,
    transfer, wallet), state, building, room (exact), tenant (part of the name)."""
    if kind is not None:
        kind = parse_choice(kind, ORDER_KINDS, "kind")
    if channel is not None:
        channel = parse_choice(channel, ORDER_CHANNELS, "channel")
    if state is not None:
        state = parse_choice(state, ROW_STATES, "state")
    tz = zone(site.timezone)
    t0 = datetime.combine(start, time(0), tz)
    t1 = datetime.combine(end + timedelta(days=1), time(0), tz)
    where = places(session, site.id)
    accounts = {a: (room_id, name) for a, room_id, name in session.execute(
        select(Account.id, Account.room_id, Tenant.name).join(Tenant, Tenant.id == Account.tenant_id)
        .where(Account.site_id == site.id))}
    if not accounts:
        return OrdersReport(site.name, start, end, [])
    # Most entries are posted at or after the time their money belongs to (a payment after it was
    # paid, usage after its reading), so only a lower bound on when they were posted is known. A
    # charge or an apportionment is dated by the start of its period and may be posted before it (a
    # month end run ahead, a one-time charge on a later date, a year's charge): up to a year ahead.
    early = (JournalEntry.kind.in_(("charge", "apportionment")), JournalEntry.created_at >= t0 - timedelta(days=366))
    q = (select(JournalEntry.id, JournalEntry.kind, JournalEntry.idempotency_key, JournalEntry.account_id,
                JournalEntry.meta, JournalEntry.created_at)
         .join(Account, Account.id == JournalEntry.account_id)
         .where(Account.site_id == site.id,
                or_(JournalEntry.created_at >= t0 - timedelta(days=1), and_(*early)))
         .order_by(JournalEntry.id))
    q = q.where(JournalEntry.kind == kind) if kind else q.where(JournalEntry.kind != "consumption")
    candidates = session.execute(q).all()
    # which of them belong to the range (their business time), before anything else is read
    readings, paid = rollups.lookup_times(session, [(e.kind, e.meta) for e in candidates])
    entries = []
    for e in candidates:
        at = rollups.time_of(e.kind, e.idempotency_key, e.meta, e.created_at, tz, readings, paid)
        if t0 <= at < t1:
            entries.append((e, at))
    ids = [e.id for e, _at in entries]
    legs: dict[int, list[tuple[str, str, int]]] = defaultdict(list)
    for k in range(0, len(ids), 5000):
        for entry_id, code, la_kind, amount in session.execute(
                select(Posting.entry_id, LedgerAccount.code, LedgerAccount.kind, Posting.amount_fen)
                .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
                .where(Posting.entry_id.in_(ids[k:k + 5000]))):
            legs[entry_id].append((code, la_kind, int(amount)))
    order_nos = {str(e.meta.get("order_no")) for e, _at in entries if (e.meta or {}).get("order_no")}
    orders_by_no = {o.order_no: o for o in session.scalars(select(PaymentOrder).where(
        PaymentOrder.order_no.in_(order_nos or {""})))}
    refunds = {r.entry_id: r for r in session.scalars(select(PaymentRefund).where(
        PaymentRefund.entry_id.in_(ids or [-1])))}
    refund_orders = {o.id: o for o in session.scalars(select(PaymentOrder).where(
        PaymentOrder.id.in_({r.order_id for r in refunds.values()} or {-1})))}
    reversed_ids = set(session.scalars(select(JournalEntry.reverses_id).where(
        JournalEntry.reverses_id.in_(ids or [-1]))))
    out: list[OrderRow] = []
    for e, at in entries:
        meta = e.meta or {}
        order = orders_by_no.get(str(meta.get("order_no"))) if meta.get("order_no") else None
        wallet = sum(a for _c, k, a in legs[e.id] if k == "wallet")
        has_wallet = any(k == "wallet" for _c, k, _a in legs[e.id])
        chan = next((ch for c, _k, _a in legs[e.id] if (ch := channel_of(c)) is not None), None) or "wallet"
        if meta.get("credit_no"):  # a bill's credit note: what the tenant owes less, and any rest to the wallet
            amount = -sum(a for c, _k, a in legs[e.id] if c.startswith("revenue:"))
        else:
            amount = wallet if has_wallet else -sum(a for c, _k, a in legs[e.id] if channel_of(c) is not None)
        refund = refunds.get(e.id)
        if e.id in reversed_ids:
            st = "reversed"
        elif refund is not None:
            st = refund.state
        elif order is not None:
            st = order.state
        else:
            st = "posted"
        txn = None
        if order is not None:
            txn = order.provider_txn_id or meta.get("provider_txn_id")
        elif refund is not None:
            ro = refund_orders.get(refund.order_id)
            txn = ro.provider_txn_id if ro is not None else None
        room_id, name = accounts.get(e.account_id or 0, (None, ""))
        b, f, r = where.get(room_id, ("", "", "")) if room_id else ("", "", "")
        row = OrderRow(at.astimezone(tz), r, b, f, name, e.kind, chan, amount, st, e.id, txn)
        if ((channel and row.channel != channel) or (state and row.state != state) or (building and b != building)
                or (room and r != room) or (tenant and tenant not in name)):
            continue
        out.append(row)
    out.sort(key=lambda x: (x.time, x.entry_id), reverse=True)
    return OrdersReport(site.name, start, end, out)


def order_states(report: OrdersReport) -> list[str]:
    return sorted({r.state for r in report.rows}, key=natural)
