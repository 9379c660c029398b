"""Bill generation: one draft bill per account and period, set-based.

``generate_for_period(session, site_id, "2026-04", preview=False, actor=, front=)``:

- **Energy lines** come from ``billed_usage`` rows of the site's accounts that were billed in
  ``postpaid`` mode, not yet on a bill (``bill_id`` NULL), whose interval ended inside the period:
  ``ended_at`` in [local midnight of the 1st, local midnight of the next 1st) in the site's timezone
  (so a reading at 00:00 on 1 May closes an April interval no more; it is May's, as the reports date
  it), and any earlier unbilled row: a reading stored after its month's bill was made (a gateway
  offline for days, a CSV import) goes on the next month's bill instead of waiting forever. One line
  per utility (the meter's kind) and part: TOU period (sharp, peak, flat, valley, deep_valley), tier
  (``tier<n>``), a plan's fixed charge (``fixed``), or ``all`` for usage priced without a split. A
  utility's fen are the sum of the rows' ``amount_fen`` (what billing accrued, exactly the energy
  report's fee); they are split over the parts by largest remainder in proportion to the exact priced
  amounts of the rows' lines (ties in part order), so the lines add up to it.
- **Charge and apportionment lines** are the site's ``month_items`` rows in ``bill`` mode not on a bill
  yet (``bill_no`` NULL) whose period starts by the end of the month (``period_start <= last day``: the
  month's own items, a quarter or year starting in it, a one-time charge dated in it, and any earlier
  item no bill took), one line each, credited on confirm to the item's ``revenue_code``.
- **Taking:** the rows a bill is made from are claimed in the same transaction (``billed_usage.bill_id``,
  ``month_items.bill_no``), and only claimed rows are summed, so a reading stored meanwhile is never
  marked billed without being on the bill; it waits for a later bill.
- **Once:** a generated bill carries ``origin_key = gen:<account>:<period>`` (unique); accounts that
  have one are skipped, so a re-run creates nothing. Two runs of one site and period are serialised
  by a transaction-level advisory lock (PostgreSQL). ``preview=True`` computes the same bills and
  writes nothing.
- **Numbers:** ``B<site id>-<YYYYMM>-<sequence of 5 digits>``, in account id order, continuing the
  site's and period's sequence (a correction bill takes the next number).

On PostgreSQL everything after finding the accounts happens in SQL (``core.bills.generate_pg``: claim,
sums, largest-remainder split, ``INSERT .. SELECT``), so no row per line passes through Python; elsewhere
(SQLite: the demo, a laptop) the same in Python. Both make the same bills (the tests run both).
"""
from __future__ import annotations

import functools
import json
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, bindparam, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from core import audit
from core.bills import generate_pg
from core.bills.periods import Period, parse_period
from core.bulk_sql import next_ids
from core.db import is_postgres, utcnow
from core.errors import NotFound
from core.ledger.money import format_fen
from core.models import Account, Bill, BilledUsage, BillLine, Meter, MonthItem, Room, Site

PART_ORDER = ("sharp", "peak", "flat", "valley", "deep_valley", "fixed", "all")
PART_NAMES = {"sharp": "尖", "peak": "峰", "flat": "平", "valley": "谷", "deep_valley": "深谷", "fixed": "固定费",
              "all": ""}
UTILITY_NAMES = {"electricity": "电费", "water": "水费"}
UTILITY_ORDER = ("electricity", "water")
ZERO = Decimal(0)


@dataclass
class GenerateResult:
    """``count``: bills created (or that would be, for a preview); ``lines``: every line as
    ``{room, kind: energy|charge|apportion, code, amount_fen, bill_no}`` (built when read: the rows are
    kept as tuples, a few hundred thousand of them at month end); ``bill_nos``: the new numbers."""

    period: str
    count: int = 0
    total_fen: int = 0
    rows: list[tuple] = field(default_factory=list)  # (room, kind, code, amount_fen, bill_no)
    bill_nos: list[str] = field(default_factory=list)
    preview: bool = False

    @property
    def lines(self) -> list[dict]:
        return [{"room": r, "kind": k, "code": c, "amount_fen": a, "bill_no": b} for r, k, c, a, b in self.rows]


@dataclass(slots=True)
class _Energy:
    fen: int = 0
    quantity: Decimal = ZERO
    intervals: int = 0
    plan_ids: set = field(default_factory=set)
    # part -> [exact priced amount in units of 1e-10 yuan (int), quantity]
    parts: dict = field(default_factory=dict)


def part_of(line: dict) -> str:
    """The bill part of one priced line of a billed interval."""
    if line.get("charge"):
        return "fixed"
    if line.get("period"):
        return str(line["period"])
    if line.get("tier") is not None:
        return f"tier{line['tier']}"
    return "all"


@functools.lru_cache(maxsize=256)
def _part_rank(part: str) -> tuple:
    if part.startswith("tier"):
        return (1, int(part[4:]) if part[4:].isdigit() else 99, part)
    return (0 if part != "fixed" and part != "all" else 2, PART_ORDER.index(part) if part in PART_ORDER else 50, part)


def split_fen(fen: int, weights: list[tuple[str, int]]) -> dict[str, int]:
    """``fen`` over the parts in proportion to their integer weights by largest remainder, ties in the
    given order; a single positive part, or none: all to it (or to the first part)."""
    positive = [(k, w) for k, w in weights if w > 0]
    if not positive:
        return {weights[0][0]: fen} if weights else {}
    if len(positive) == 1:
        return {positive[0][0]: fen}
    total = sum(w for _k, w in positive)
    sign = 1 if fen >= 0 else -1
    n = abs(fen)
    out: dict[str, int] = {}
    rema = []
    for i, (k, w) in enumerate(positive):
        q, r = divmod(n * w, total)
        out[k] = q
        rema.append((-r, i, k))
    left = n - sum(out.values())
    if left:
        for _r, _i, k in sorted(rema)[:left]:
            out[k] += 1
    return {k: sign * v for k, v in out.items()} if sign < 0 else out


@functools.lru_cache(maxsize=256)
def line_name(utility: str, part: str) -> str:
    label = PART_NAMES[part] if part in PART_NAMES else (f"第{part[4:]}阶梯" if part.startswith("tier") else part)
    return UTILITY_NAMES.get(utility, utility) + (f"（{label}）" if label else "")


def energy_lines(utility: str, e: _Energy) -> list[tuple]:
    """The energy lines of one utility: ``(kind, code, name, quantity, amount_fen, revenue_code)``."""
    parts = sorted(e.parts.items(), key=lambda kv: _part_rank(kv[0])) if len(e.parts) > 1 else list(e.parts.items())
    if not parts:
        parts = [("all", [0, e.quantity])]
    fens = split_fen(e.fen, [(p, v[0]) for p, v in parts])
    out = []
    revenue = _revenue(utility)
    for part, (_amount, qty) in parts:
        fen = fens.get(part, 0)
        if fen == 0 and (part == "fixed" or qty == 0):
            continue
        out.append(("energy", _code(utility, part), line_name(utility, part), None if part == "fixed" else qty, fen,
                    revenue))
    return out


@functools.lru_cache(maxsize=256)
def _code(utility: str, part: str) -> str:
    return f"{utility}:{part}"


@functools.lru_cache(maxsize=16)
def _revenue(utility: str) -> str:
    return f"revenue:{utility}"


# The earliest ``ended_at`` a bill takes: every unbilled postpaid row before the period's end.
LATE_ROWS_SINCE = datetime(2000, 1, 1, tzinfo=UTC)


def generate_for_period(session: Session, site_id: int, period: str, *, preview: bool, actor: str = "system",
                        front: str = "system", with_lines: bool = True) -> GenerateResult:
    """Make the draft bills of ``site_id`` for ``period`` (``YYYY-MM``) as the module says; returns
    what it made (or would make, ``preview=True``, which writes nothing). Moves no money: a draft is
    outside the ledger until it is confirmed. Raises NotFound (no such site) and ValidationError
    (a malformed period). Call inside a transaction; the caller commits. ``with_lines=False`` (the
    scheduled month-end run, which reports no line): on PostgreSQL ``lines`` stays empty and the
    bills are counted and totalled per bill, not read back line by line."""
    site = session.get(Site, site_id)
    if site is None:
        raise NotFound(f"no site {site_id}")
    p = parse_period(period)
    t0, t1 = p.bounds(site.timezone)
    # a late row (its reading stored after its own month's bill was made) goes on the next bill
    t0 = LATE_ROWS_SINCE
    pg = is_postgres(session)
    if pg:
        # the sums below sort in memory; the planner guesses 100 lines per row, so JIT would only cost time
        session.execute(text("SET LOCAL work_mem = '128MB'"))
        session.execute(text("SET LOCAL jit = off"))
        if not preview:
            session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"bills:{site_id}:{p.text}"})
    result = GenerateResult(p.text, preview=preview)
    have = set(session.scalars(select(Bill.account_id).where(Bill.site_id == site_id, Bill.period == p.text,
                                                             Bill.origin_key.is_not(None))))
    usage_where = [Account.site_id == site_id, BilledUsage.billing_mode == "postpaid", BilledUsage.bill_id.is_(None),
                   BilledUsage.ended_at >= t0, BilledUsage.ended_at < t1]
    item_where = [MonthItem.site_id == site_id, MonthItem.period_start <= p.last, MonthItem.mode == "bill",
                  MonthItem.bill_no.is_(None)]
    # an account whose unbilled rows are all 0 fen and 0 quantity (a vacant shop) gets no bill this
    # time: no number is spent on it (bill numbers have no gaps) and its rows stay unclaimed, so the
    # first bill with something on it takes them along
    found: set[int] = {a for a in session.scalars(select(BilledUsage.account_id).distinct()
                                                  .join(Account, Account.id == BilledUsage.account_id)
                                                  .where(*usage_where, or_(BilledUsage.amount_fen != 0,
                                                                           BilledUsage.quantity != 0)))
                       if a is not None}
    found |= set(session.scalars(select(MonthItem.account_id).distinct().where(*item_where)))
    accounts = sorted(found - have)
    if not accounts:
        return result
    numbers = _numbers(session, site_id, p, len(accounts))
    if pg:
        ids = [0] * len(accounts) if preview else next_ids(session, "bills", len(accounts))
        rows = generate_pg.generate(session, site_id=site_id, p=p, t0=t0, t1=t1, accounts=accounts,
                                    bill_ids=ids, bill_nos=numbers, preview=preview, actor=actor, now=utcnow(),
                                    lines=with_lines)
        if with_lines:
            result.rows = rows
            seen: set[str] = set()
            for _room, _kind, _code, fen, bill_no in rows:
                if bill_no not in seen:
                    seen.add(bill_no)
                    result.bill_nos.append(bill_no)
                result.total_fen += fen
        else:  # (bill_no, total) per bill
            result.bill_nos = [no for no, _fen in rows]
            result.total_fen = sum(int(fen) for _no, fen in rows)
        result.count = len(result.bill_nos)
        if not preview and result.count:
            audit.record(session, actor=actor, front=front, action="bills_generated", site_id=site_id,
                         period=p.text, count=result.count, amount=format_fen(result.total_fen))
        return result
    bill_no_of = dict(zip(accounts, numbers))
    if preview:
        energy = _energy(session, account_ids=accounts, t0=t0, t1=t1)
        items = _items(session, item_where, None)
        bill_ids = {a: 0 for a in accounts}
    else:
        bill_ids = dict(zip(accounts, _sqlite_ids(session, len(accounts))))
        energy = _claim(session, p, t0, t1, site_id, bill_ids, bill_no_of)
        items = _items(session, [MonthItem.site_id == site_id], list(bill_no_of.values()))
    by_account: dict[int, list[str]] = defaultdict(list)
    for a, u in energy:
        by_account[a].append(u)
    rooms = dict(session.execute(select(Account.id, Room.number).join(Room, Room.id == Account.room_id)
                                 .where(Account.site_id == site_id)).all())
    bills: list[tuple] = []
    lines: list[tuple] = []
    now = utcnow()
    for account_id in accounts:
        acct_lines: list[tuple] = []
        metas: list[str] = []
        for utility in sorted(by_account.get(account_id, ()), key=_utility_rank):
            e = energy[(account_id, utility)]
            got = energy_lines(utility, e)
            acct_lines.extend(got)
            meta = json.dumps({"intervals": e.intervals, "plan_ids": sorted(e.plan_ids)})
            metas.extend(meta for _ in got)
        for it in sorted(items.get(account_id, ()), key=lambda i: (i[1] != "charge", i[2], i[0])):
            item_id, kind, code, name, fen, revenue, source_id, key = it
            acct_lines.append(("charge" if kind == "charge" else "apportion", code, name, None, fen, revenue))
            metas.append(json.dumps({"item_id": item_id, "key": key, "source_id": source_id}))
        if not acct_lines:  # claimed nothing (cannot happen: the rows were found above), no bill
            continue
        total = sum(ln[4] for ln in acct_lines)
        bill_no = bill_no_of[account_id]
        bill_id = bill_ids[account_id]
        bills.append((bill_id, bill_no, "bill", site_id, account_id, p.text, p.first, p.last,
                      f"gen:{account_id}:{p.text}", None, "draft", total, 0, 0, None, None, "", actor, now, None,
                      None, None, 0, None))
        room = rooms.get(account_id, "")
        for n, (ln, meta) in enumerate(zip(acct_lines, metas), 1):
            kind, code, name, qty, fen, revenue = ln
            if not preview:
                lines.append((bill_id, n, kind, code, name, qty, fen, revenue, meta))
            result.rows.append((room, kind, code, fen, bill_no))
        result.count += 1
        result.total_fen += total
        result.bill_nos.append(bill_no)
    if not preview and bills:
        _write(session, bills, lines)
        audit.record(session, actor=actor, front=front, action="bills_generated", site_id=site_id, period=p.text,
                     count=len(bills), amount=format_fen(result.total_fen))
    return result


def _utility_rank(u: str) -> tuple:
    return (UTILITY_ORDER.index(u) if u in UTILITY_ORDER else 9, u)


def next_numbers(session: Session, site_id: int, p: Period, n: int, *, letter: str = "B") -> list[str]:
    """The next ``n`` numbers of a site and period: ``B`` bills, ``C`` credit notes (callers hold
    the period's lock; the unique number is the backstop)."""
    return _numbers(session, site_id, p, n, letter)


def _numbers(session: Session, site_id: int, p: Period, n: int, letter: str = "B") -> list[str]:
    prefix = f"{letter}{site_id}-{p.first:%Y%m}-"
    top = session.scalar(select(func.max(Bill.bill_no)).where(Bill.site_id == site_id, Bill.bill_no.like(prefix + "%")))
    taken = int(top.rsplit("-", 1)[1]) if top else 0  # zero-padded: the greatest text is the greatest number
    return [f"{prefix}{taken + i:05d}" for i in range(1, n + 1)]


def _sqlite_ids(session: Session, n: int) -> list[int]:
    top = session.scalar(select(func.coalesce(func.max(Bill.id), 0))) or 0
    return list(range(top + 1, top + 1 + n))


def _claim(session: Session, p: Period, t0: datetime, t1: datetime, site_id: int,
           bill_ids: dict[int, int], bill_no_of: dict[int, str]) -> dict[tuple[int, str], _Energy]:
    """(Not PostgreSQL.) Mark the period's unbilled usage and the bill-mode items of these accounts as
    taken by their bills, and return the sums of the usage rows taken."""
    accts = list(bill_ids)
    bu = cast(Table, BilledUsage.__table__)
    session.execute(update(bu).where(bu.c.account_id == bindparam("a"), bu.c.billing_mode == "postpaid",
                                     bu.c.bill_id.is_(None), bu.c.ended_at >= t0, bu.c.ended_at < t1)
                    .values(bill_id=bindparam("b")), [{"a": a, "b": bill_ids[a]} for a in accts])
    mi = cast(Table, MonthItem.__table__)
    session.execute(update(mi).where(mi.c.account_id == bindparam("a"), mi.c.site_id == site_id,
                                     mi.c.period_start <= p.last, mi.c.mode == "bill", mi.c.bill_no.is_(None))
                    .values(bill_no=bindparam("n")), [{"a": a, "n": bill_no_of[a]} for a in accts])
    return _energy(session, bill_ids=list(bill_ids.values()))


def _energy(session: Session, *, bill_ids: list[int] | None = None, account_ids: list[int] | None = None,
            t0: datetime | None = None, t1: datetime | None = None) -> dict[tuple[int, str], _Energy]:
    """(Not PostgreSQL.) Per (account, utility): the fen, quantity, intervals and plans of the rows, and
    per part the exact priced amount (units of 1e-10 yuan) and quantity. Rows claimed by ``bill_ids``,
    or (a preview) the unbilled postpaid rows of ``account_ids`` that ended in [t0, t1)."""
    out: dict[tuple[int, str], _Energy] = defaultdict(_Energy)
    q = (select(BilledUsage.account_id, Meter.kind, BilledUsage.amount_fen, BilledUsage.quantity, BilledUsage.plan_id,
                BilledUsage.lines).join(Meter, Meter.id == BilledUsage.meter_id))
    if bill_ids is not None:
        q = q.where(BilledUsage.bill_id.in_(bill_ids))
    else:
        q = q.where(BilledUsage.account_id.in_(account_ids or []), BilledUsage.billing_mode == "postpaid",
                    BilledUsage.bill_id.is_(None), BilledUsage.ended_at >= t0, BilledUsage.ended_at < t1)
    for account_id, utility, fen, qty, plan_id, lines in session.execute(q):
        e = out[(account_id, utility)]
        e.fen += int(fen)
        e.quantity += Decimal(qty)
        e.intervals += 1
        if plan_id is not None:
            e.plan_ids.add(plan_id)
        for ln in lines or ():
            part = part_of(ln)
            e.parts.setdefault(part, [0, ZERO])
            e.parts[part][0] += int(Decimal(str(ln.get("amount", "0"))).scaleb(10).to_integral_value())
            e.parts[part][1] += Decimal(str(ln.get("quantity", "0")))
    return out


def _items(session: Session, where, bill_nos: list[str] | None) -> dict[int, list[tuple]]:
    q = select(MonthItem.id, MonthItem.account_id, MonthItem.kind, MonthItem.code, MonthItem.name,
               MonthItem.amount_fen, MonthItem.revenue_code, MonthItem.source_id, MonthItem.key).where(*where)
    if bill_nos is not None:
        from core.bulk_sql import ids_in
        q = q.where(ids_in(session, MonthItem.bill_no, bill_nos, strings=True))
    out: dict[int, list[tuple]] = defaultdict(list)
    for r in session.execute(q).all():
        out[r.account_id].append((r.id, r.kind, r.code, r.name, int(r.amount_fen), r.revenue_code, r.source_id,
                                  r.key))
    return out


BILL_COLUMNS = ("id", "bill_no", "kind", "site_id", "account_id", "period", "period_start", "period_end", "origin_key",
                "corrects_id", "state", "total_fen", "paid_fen", "credited_fen", "due_date", "entry_id", "reason",
                "created_by", "created_at", "confirmed_by", "confirmed_at", "paid_at", "notices_sent", "last_notice_at")
LINE_COLUMNS = ("id", "bill_id", "line_no", "kind", "code", "name", "quantity", "amount_fen", "revenue_code", "meta")


def _write(session: Session, bills: list[tuple], lines: list[tuple]) -> None:
    """(Not PostgreSQL.) ``bills``: rows in BILL_COLUMNS order; ``lines``: LINE_COLUMNS without the id."""
    session.execute(insert(cast(Table, Bill.__table__)), [dict(zip(BILL_COLUMNS, b)) for b in bills])
    session.execute(insert(cast(Table, BillLine.__table__)),
                    [dict(zip(LINE_COLUMNS[1:], (*ln[:8], json.loads(ln[8])))) for ln in lines])
