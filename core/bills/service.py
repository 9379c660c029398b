"""The bill verbs every front uses: find, list, confirm, pay at the desk or from the wallet, credit
notes, correction bills, the online order of a bill, a tenant's open bills.

Money moves through ``core.ledger.receivables`` only. Every function works inside the caller's
transaction and commits nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, func, select, text, update
from sqlalchemy.orm import Session

from core import audit
from core.bills.generate import next_numbers
from core.bills.periods import parse_period
from core.bulk_sql import ids_in
from core.db import hold_write_lock, is_postgres, utcnow
from core.errors import Conflict, NotFound, ValidationError
from core.ledger import PostResult, receivables
from core.ledger.guards import check_amount
from core.ledger.money import format_fen
from core.models import Account, Bill, BillLine, Building, Floor, JournalEntry, PaymentOrder, Room, Site, Tenant
from core.models.bill import OPEN_STATES
from core.payments import orders as payments

STATE_FILTERS = ("draft", "confirmed", "partly_paid", "paid", "overdue")
DESK_METHODS = ("cash", "transfer", "wallet")
STATE_NAMES = {"draft": "草稿", "confirmed": "待付款", "partly_paid": "部分付款", "paid": "已付清",
               "overdue": "已逾期"}
KIND_NAMES = {"energy": "能耗", "charge": "收费项目", "apportion": "公摊", "credit": "冲减", "other": "其他"}
DEFAULT_DUE_DAYS = 15


def site_today(site: Site) -> date:
    return datetime.now(ZoneInfo(site.timezone or "Asia/Shanghai")).date()


def due_days(site: Site) -> int:
    raw = (site.settings or {}).get("bill_due_days", DEFAULT_DUE_DAYS)
    try:
        days = int(raw)
    except (TypeError, ValueError):
        days = DEFAULT_DUE_DAYS
    return max(days, 0)


def is_overdue(bill: Bill, today: date) -> bool:
    return bill.kind == "bill" and bill.state in OPEN_STATES and bill.due_date is not None and bill.due_date < today


def shown_state(bill: Bill, today: date) -> str:
    """The state a person reads: ``overdue`` for an open bill past its due date, else the stored one."""
    return "overdue" if is_overdue(bill, today) else bill.state


def get_bill(session: Session, bill_no: str) -> Bill:
    bill = session.scalar(select(Bill).where(Bill.bill_no == str(bill_no or "").strip()))
    if bill is None:
        raise NotFound(f"no bill {bill_no}")
    return bill


# --- reading -----------------------------------------------------------------------------------

@dataclass
class BillRow:
    bill: Bill
    room: str
    building: str
    floor: str
    tenant: str
    phone: str
    overdue: bool
    days_overdue: int
    lines: list[BillLine] = field(default_factory=list)
    corrects: str | None = None  # the bill number a credit note or a correction bill corrects

    def as_json(self, *, with_lines: bool = True) -> dict:
        b = self.bill
        out = {"bill_no": b.bill_no, "kind": b.kind, "account_id": b.account_id, "room": self.room,
               "building": self.building, "floor": self.floor, "tenant": self.tenant, "period": b.period,
               "period_start": b.period_start.isoformat(), "period_end": b.period_end.isoformat(),
               "state": b.state, "overdue": self.overdue,
               "total": format_fen(b.total_fen), "total_fen": b.total_fen,
               "paid": format_fen(b.paid_fen), "paid_fen": b.paid_fen,
               "credited": format_fen(b.credited_fen), "credited_fen": b.credited_fen,
               "open": format_fen(b.open_fen), "open_fen": b.open_fen,
               "due_date": b.due_date.isoformat() if b.due_date else None,
               "confirmed_at": b.confirmed_at.isoformat() if b.confirmed_at else None,
               "corrects": self.corrects}
        if with_lines:
            out["lines"] = [{"line_no": ln.line_no, "kind": ln.kind, "code": ln.code, "name": ln.name,
                             "quantity": None if ln.quantity is None else str(ln.quantity.normalize()
                                                                               if ln.quantity else 0),
                             "amount": format_fen(ln.amount_fen), "amount_fen": ln.amount_fen}
                            for ln in self.lines]
        return out


def list_bills(session: Session, site: Site, period: str | None = None, *, state: str | None = None,
               account_ids: list[int] | None = None, with_lines: bool = True, kinds: tuple[str, ...] = ("bill",),
               limit: int | None = None) -> list[BillRow]:
    """The bills of a site (of a period, a state filter, some accounts), by bill number. ``state``:
    draft, confirmed (owed: confirmed or partly paid, overdue or not), partly_paid, paid, or overdue
    (owed and past the due date)."""
    today = site_today(site)
    q = (select(Bill, Room.number, Building.name, Floor.name, Tenant.name, Tenant.phone)
         .join(Account, Account.id == Bill.account_id).join(Room, Room.id == Account.room_id)
         .join(Floor, Floor.id == Room.floor_id).join(Building, Building.id == Floor.building_id)
         .join(Tenant, Tenant.id == Account.tenant_id)
         .where(Bill.site_id == site.id, Bill.kind.in_(kinds)))
    if period:
        q = q.where(Bill.period == parse_period(period).text)
    if state:
        if state not in STATE_FILTERS:
            raise ValidationError(f"--state: must be one of {', '.join(STATE_FILTERS)}", field="state")
        if state == "confirmed":
            q = q.where(Bill.state.in_(OPEN_STATES))
        elif state == "overdue":
            q = q.where(Bill.state.in_(OPEN_STATES), Bill.due_date < today)
        else:
            q = q.where(Bill.state == state)
    if account_ids is not None:
        q = q.where(Bill.account_id.in_(account_ids or [-1]))
    q = q.order_by(Bill.bill_no)
    if limit:
        q = q.limit(limit)
    rows = []
    for bill, room, building, floor, tenant, phone in session.execute(q):
        od = is_overdue(bill, today)
        rows.append(BillRow(bill, room, building, floor, tenant, phone or "", od,
                            (today - bill.due_date).days if od and bill.due_date else 0))
    corrected = {r.bill.corrects_id for r in rows if r.bill.corrects_id}
    if corrected:
        numbers = dict(session.execute(select(Bill.id, Bill.bill_no).where(Bill.id.in_(corrected))).all())
        for r in rows:
            r.corrects = numbers.get(r.bill.corrects_id) if r.bill.corrects_id else None
    if with_lines and rows:
        by_bill: dict[int, list[BillLine]] = {}
        ids = [r.bill.id for r in rows]
        for k in range(0, len(ids), 5000):
            for ln in session.scalars(select(BillLine).where(ids_in(session, BillLine.bill_id, ids[k:k + 5000]))
                                      .order_by(BillLine.bill_id, BillLine.line_no)):
                by_bill.setdefault(ln.bill_id, []).append(ln)
        for r in rows:
            r.lines = by_bill.get(r.bill.id, [])
    return rows


@dataclass
class BillDetail:
    row: BillRow
    site: Site
    credits: list[Bill]
    corrects: Bill | None
    corrections: list[Bill]
    payments: list[JournalEntry]


def detail(session: Session, bill_no: str) -> BillDetail:
    """One bill with its lines, the credit notes and correction bills on it, and its payments."""
    bill = get_bill(session, bill_no)
    site = session.get(Site, bill.site_id)
    assert site is not None
    rows = list_bills(session, site, None, account_ids=[bill.account_id], kinds=("bill", "credit"))
    row = next(r for r in rows if r.bill.id == bill.id)
    related = [r.bill for r in rows if r.bill.corrects_id == bill.id]
    corrects = session.get(Bill, bill.corrects_id) if bill.corrects_id else None
    pays = list(session.scalars(select(JournalEntry).where(JournalEntry.account_id == bill.account_id,
                                                           JournalEntry.kind == "payment")
                                .order_by(JournalEntry.id)))
    pays = [e for e in pays if (e.meta or {}).get("bill_no") == bill.bill_no]
    return BillDetail(row, site, [b for b in related if b.kind == "credit"], corrects,
                      [b for b in related if b.kind == "bill"], pays)


def open_bills(session: Session, account_ids: list[int]) -> list[Bill]:
    """Confirmed bills still owing something, oldest first."""
    if not account_ids:
        return []
    return list(session.scalars(select(Bill).where(Bill.account_id.in_(account_ids), Bill.kind == "bill",
                                                   Bill.state.in_(OPEN_STATES)).order_by(Bill.period, Bill.id)))


# --- confirm -----------------------------------------------------------------------------------

@dataclass
class Confirmed:
    count: int
    total_fen: int
    bill_nos: list[str]


def confirm(session: Session, site_id: int, period: str, *, actor: str, front: str,
            bill_nos: list[str] | None = None) -> Confirmed:
    """Confirm the drafts of a site and period (or only ``bill_nos`` among them): each posts its
    receivable once, under ``bill:<bill no>`` (``core.ledger.receivables``), gets its due date (today
    plus the site's ``bill_due_days``) and is never edited again. A bill of 0 is paid at once, with
    no entry. The drafts are locked FOR UPDATE in id order, so two managers confirming at once post
    each bill once: the second finds them confirmed and confirms nothing. Returns what was
    confirmed (count 0 when nothing was a draft). Raises ValidationError (period), NotFound (site)."""
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound(f"no site {site_id}")
    p = parse_period(period)
    q = (select(Bill.id, Bill.bill_no, Bill.account_id, Bill.total_fen)
         .where(Bill.site_id == site_id, Bill.period == p.text, Bill.kind == "bill", Bill.state == "draft")
         .order_by(Bill.id).with_for_update())
    if bill_nos is not None:
        q = q.where(Bill.bill_no.in_(bill_nos or [""]))
    hold_write_lock(session)  # SQLite: FOR UPDATE is left out there
    drafts = session.execute(q).all()
    if not drafts:
        return Confirmed(0, 0, [])
    ids = [d.id for d in drafts]
    revenue: dict[int, dict[str, int]] = {}
    for k in range(0, len(ids), 10000):
        for bill_id, code, fen in session.execute(
                select(BillLine.bill_id, BillLine.revenue_code, func.sum(BillLine.amount_fen))
                .where(ids_in(session, BillLine.bill_id, ids[k:k + 10000]))
                .group_by(BillLine.bill_id, BillLine.revenue_code)):
            revenue.setdefault(bill_id, {})[code] = int(fen)
    items = [receivables.Receivable(d.bill_no, d.account_id, revenue.get(d.id, {}),
                                    {"period": p.text}) for d in drafts if d.total_fen > 0]
    entries = receivables.post_receivables(session, items, actor=actor, front=front)
    now = utcnow()
    due = site_today(site) + timedelta(days=due_days(site))
    values = [{"i": d.id, "s": "confirmed" if d.total_fen > 0 else "paid", "e": entries.get(d.bill_no),
               "p": None if d.total_fen > 0 else now} for d in drafts]
    if is_postgres(session):
        session.execute(text(
            "UPDATE bills AS b SET state = v.state, entry_id = v.entry_id, paid_at = v.paid_at, "
            "confirmed_at = :now, confirmed_by = :actor, due_date = :due "
            "FROM unnest(CAST(:i AS bigint[]), CAST(:s AS text[]), CAST(:e AS bigint[]), "
            "CAST(:p AS timestamptz[])) AS v(id, state, entry_id, paid_at) WHERE b.id = v.id"),
            {"i": [v["i"] for v in values], "s": [v["s"] for v in values], "e": [v["e"] for v in values],
             "p": [v["p"] for v in values], "now": now, "actor": actor, "due": due})
    else:
        t = cast(Table, Bill.__table__)
        session.execute(update(t).where(t.c.id == bindparam("i")).values(
            state=bindparam("s"), entry_id=bindparam("e"), paid_at=bindparam("p"), confirmed_at=now,
            confirmed_by=actor, due_date=due), values)
    session.expire_all()
    total = sum(d.total_fen for d in drafts)
    audit.record(session, actor=actor, front=front, action="bills_confirmed", site_id=site_id, period=p.text,
                 count=len(drafts), amount=format_fen(total),
                 bill_no=drafts[0].bill_no if len(drafts) == 1 else None)
    return Confirmed(len(drafts), total, [d.bill_no for d in drafts])


def confirm_one(session: Session, bill_no: str, *, actor: str, front: str) -> Confirmed:
    bill = get_bill(session, bill_no)
    if bill.kind != "bill":
        raise Conflict(f"{bill_no} is a credit note")
    return confirm(session, bill.site_id, bill.period, actor=actor, front=front, bill_nos=[bill.bill_no])


# --- pay ---------------------------------------------------------------------------------------

def pay_at_desk(session: Session, bill_no: str, amount_fen: int, *, method: str, key: str, actor: str,
                front: str) -> PostResult:
    """A manager takes (part of) a confirmed bill: ``cash``, ``transfer`` or from the tenant's
    ``wallet``, once per ``key`` (the form's). See ``receivables.pay_bill`` for what it raises."""
    if method not in DESK_METHODS:
        raise ValidationError(f"method: must be one of {', '.join(DESK_METHODS)}", field="method")
    return receivables.pay_bill(session, bill_no, amount_fen, source=method, key=key, actor=actor, front=front)


def start_order(session: Session, bill_no: str, channel: str, *, account_ids: list[int], openid: str | None,
                front: str = "miniapp", app_id: str | None = None) -> PaymentOrder:
    """The online order of a bill for a tenant who may see ``account_ids``: its amount is what the bill
    still owes; the order points at the bill (``bill_no``), so its confirmed payment goes to the
    bill's receivable (``core.payments.orders.settle``). Another tenant's bill is NotFound; a draft, a
    paid bill or a credit note is Conflict. Nothing moves here."""
    bill = session.scalar(select(Bill).where(Bill.bill_no == str(bill_no or "").strip()))
    if bill is None or bill.account_id not in account_ids:
        raise NotFound(f"no bill {bill_no}")
    if bill.kind != "bill" or bill.state == "draft":
        raise Conflict(f"bill {bill_no} is not owed yet" if bill.state == "draft" else f"{bill_no} is a credit note")
    if bill.open_fen <= 0:
        raise Conflict(f"bill {bill_no} is paid")
    return payments.create_order(session, bill.account_id, bill.open_fen, channel, openid=openid, front=front,
                                 app_id=app_id, bill_no=bill.bill_no)


# --- corrections -------------------------------------------------------------------------------

def _lock_period(session: Session, site_id: int, period: str) -> None:
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"bills:{site_id}:{period}"})


def credit_note(session: Session, bill_no: str, line_no: int, amount_fen: int, *, reason: str, actor: str,
                front: str, key: str | None = None) -> Bill:
    """A credit note on line ``line_no`` of a confirmed bill: a new document (kind ``credit``, its own
    number, ``corrects_id`` the bill) posted at once (``receivables.post_credit_note``): the line's
    revenue goes down, and what the bill owes (or, once paid, the tenant's wallet) by the amount.
    The amount may not exceed what is left of the line after earlier credit notes. ``key`` (a form's,
    up to 60 characters): the same key again returns the credit note made the first time. Raises
    NotFound, Conflict (a draft, a credit note), ValidationError (line, amount, reason)."""
    if key:
        done = session.scalar(select(Bill).where(Bill.origin_key == key[:60]))
        if done is not None:
            return done
    check_amount(amount_fen)
    if not reason or not reason.strip():
        raise ValidationError("a credit note needs a reason", field="reason")
    bill = receivables.lock_bill(session, bill_no)
    if bill.kind != "bill" or bill.state == "draft":
        raise Conflict(f"bill {bill_no} is not a confirmed bill; a draft is regenerated, not credited")
    line = session.scalar(select(BillLine).where(BillLine.bill_id == bill.id, BillLine.line_no == line_no))
    if line is None:
        raise ValidationError(f"line: bill {bill_no} has no line {line_no}", field="line")
    credited = session.scalar(select(func.coalesce(func.sum(BillLine.amount_fen), 0))
                              .join(Bill, Bill.id == BillLine.bill_id)
                              .where(Bill.corrects_id == bill.id, Bill.kind == "credit",
                                     BillLine.meta["line_no"].as_integer() == line_no)) or 0
    left = line.amount_fen - int(credited)
    if amount_fen > left:
        raise ValidationError(f"amount: {format_fen(amount_fen)} is more than the {format_fen(left)} left "
                              f"on line {line_no}", field="amount")
    _lock_period(session, bill.site_id, bill.period)
    credit_no = next_numbers(session, bill.site_id, parse_period(bill.period), 1, letter="C")[0]
    result, _to_bill, _to_wallet = receivables.post_credit_note(
        session, bill.bill_no, credit_no, amount_fen, line.revenue_code, reason=reason, actor=actor, front=front)
    credit = Bill(bill_no=credit_no, kind="credit", origin_key=key[:60] if key else None, site_id=bill.site_id,
                  account_id=bill.account_id,
                  period=bill.period, period_start=bill.period_start, period_end=bill.period_end,
                  corrects_id=bill.id, state="confirmed", total_fen=amount_fen, paid_fen=0, credited_fen=0,
                  entry_id=result.entry_id, reason=reason.strip(), created_by=actor, confirmed_by=actor,
                  confirmed_at=utcnow())
    session.add(credit)
    session.flush()
    session.add(BillLine(bill_id=credit.id, line_no=1, kind="credit", code=line.code, name=f"冲减：{line.name}",
                         quantity=None, amount_fen=amount_fen, revenue_code=line.revenue_code,
                         meta={"line_no": line_no, "bill_no": bill.bill_no}))
    session.flush()
    return credit


def correction_bill(session: Session, bill_no: str, lines: list[dict], *, reason: str, actor: str,
                    front: str) -> Bill:
    """A new draft bill that adds to a confirmed one (usage or a charge left off): its own number,
    ``corrects_id`` the bill, the same account and period; confirmed and paid like any bill. ``lines``:
    ``{"kind": "energy"|"charge"|"apportion"|"other", "code", "name", "amount_fen" > 0, "revenue_code"}``."""
    if not reason or not reason.strip():
        raise ValidationError("a correction bill needs a reason", field="reason")
    if not lines:
        raise ValidationError("a correction bill needs lines", field="lines")
    bill = get_bill(session, bill_no)
    if bill.kind != "bill" or bill.state == "draft":
        raise Conflict(f"bill {bill_no} is a draft; regenerate or edit nothing, confirm it first")
    clean: list[BillLine] = []
    for i, ln in enumerate(lines, 1):
        amount = check_amount(int(ln.get("amount_fen", 0)), field=f"lines[{i}].amount")
        kind = ln.get("kind") or "other"
        code = str(ln.get("code") or "").strip()
        revenue = str(ln.get("revenue_code") or "").strip()
        if not code or not revenue.startswith("revenue:"):
            raise ValidationError(f"lines[{i}]: needs a code and a revenue: account", field="lines")
        clean.append(BillLine(line_no=i, kind=kind, code=code, name=str(ln.get("name") or code)[:120],
                              quantity=None, amount_fen=amount, revenue_code=revenue, meta={"correction_of": bill_no}))
    _lock_period(session, bill.site_id, bill.period)
    new_no = next_numbers(session, bill.site_id, parse_period(bill.period), 1)[0]
    new = Bill(bill_no=new_no, kind="bill", site_id=bill.site_id, account_id=bill.account_id, period=bill.period,
               period_start=bill.period_start, period_end=bill.period_end, corrects_id=bill.id, state="draft",
               total_fen=sum(ln.amount_fen for ln in clean), paid_fen=0, credited_fen=0, reason=reason.strip(),
               created_by=actor)
    session.add(new)
    session.flush()
    for line in clean:
        line.bill_id = new.id
        session.add(line)
    audit.record(session, actor=actor, front=front, action="bill_correction", site_id=bill.site_id,
                 account_id=bill.account_id, bill_no=new_no, corrects=bill_no, amount=format_fen(new.total_fen),
                 reason=reason.strip())
    session.flush()
    return new



def tenant_bills(session: Session, account_id: int, *, limit: int = 50) -> list[BillRow]:
    """What a tenant sees of an account's bills: confirmed bills and credit notes (a draft is not owed
    yet), by number, at most the last ``limit``."""
    account = session.get(Account, account_id)
    site = session.get(Site, account.site_id) if account else None
    if account is None or site is None:
        return []
    rows = list_bills(session, site, None, account_ids=[account_id], kinds=("bill", "credit"))
    return [r for r in rows if r.bill.state != "draft"][-limit:]
