"""The month-end run: everything due for a site and a month -- charges, apportionment, then bills.

``run_month_end(site_id, "YYYY-MM", preview=False)`` goes step by step: one step per active charge
scheme due in the month (``charge:<scheme id>``), then one per active apportionment rule
(``apportion:<rule id>``), then ``core.bills.generate.generate_for_period`` (the bills of the month).

- A step is one transaction: compute its items (``core.monthend.schemes`` / ``rules``), post the
  deduct-mode ones (``core.ledger.charges.post_many``: COPY on PostgreSQL), write the items
  (``month_items``, with their entry ids) and the step row (``month_end_steps``), commit. The step
  row freezes the step: a re-run finds it and computes nothing again, so it posts nothing new, and a
  run killed halfway left whole steps behind it -- a re-run does the steps that are missing. The
  items of a frozen step are what bills take and what the pages show.
- Two runs at once for one site (two workers, a manager clicking while the schedule runs): each
  step's transaction first takes a PostgreSQL advisory lock of the site and looks for the step row
  under it, so the second finds the first's step and moves nothing; the journal keys are the last
  guard (a key posts once, whoever posts it).
- A rule whose master lacks readings covering the month (or a plan, or any account present) is a
  *problem*: reported in the result, the step not frozen, so a later run, once the readings are in,
  splits it. A charge scheme's problem (a room without an area under a per-m² scheme) is reported
  and the rest of the scheme is frozen.
- ``preview=True`` runs the same computation (frozen steps are read, missing ones computed) in a
  transaction that is rolled back: nothing is written, nothing is posted, no account created.
- The schedule (``run_due``, every five minutes from the periodic job table): a site's month runs on
  its ``month_end`` setting's day and time (default: the 1st at 02:00, site time) for the month
  before, once (a ``done`` step records it); ``{"enabled": false}`` turns it off for the site.
"""
from __future__ import annotations

import json
import logging
import time as clock
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, insert, or_, select, text
from sqlalchemy.orm import Session

from core import audit
from core.bulk_sql import copy_lines, copy_text, ids_in
from core.config import get_settings
from core.db import insert_if_absent, is_postgres, new_session, utcnow
from core.errors import NotFound, ValidationError
from core.ledger.charges import Deduction, post_many
from core.ledger.money import format_fen
from core.models import (
    Account,
    ApportionRule,
    Bill,
    BillLine,
    Building,
    ChargeScheme,
    Floor,
    JournalEntry,
    MonthEndStep,
    MonthItem,
    Room,
    Site,
)
from core.monthend import periods, rules, schemes
from core.monthend.periods import Period
from core.monthend.schemes import Computed

log = logging.getLogger(__name__)
LOCK_SPACE = 12012  # pg_advisory_xact_lock(LOCK_SPACE, site id): one month-end writer per site at a time
NULL = "\\N"  # COPY's text NULL
COPY_FROM = 200     # items from which a step writes month_items by COPY (PostgreSQL)
ITEM_COLS = ("site_id", "account_id", "kind", "source_id", "code", "name", "period", "period_start", "period_end",
             "amount_fen", "mode", "key", "revenue_code", "entry_id", "bill_no", "meta", "created_at")


@dataclass(frozen=True)
class AccountRow:
    """An account of the site as the computations read it (dates local to the site)."""

    id: int
    room: str
    building: str
    floor: str
    area: Decimal | None
    opened: date
    closed: date | None
    postpaid: bool


@dataclass
class MonthEndResult:
    site: str
    period: str
    preview: bool
    charges_fen: int = 0
    apportioned_fen: int = 0
    bills: int = 0
    entries: int = 0  # journal entries this call created (0 for a preview and a re-run)
    items: int = 0
    problems: list[dict] = field(default_factory=list)
    lines: list[dict] = field(default_factory=list)

    def as_json(self) -> dict:
        return {"site": self.site, "period": self.period, "preview": self.preview, "charges_fen": self.charges_fen,
                "apportioned_fen": self.apportioned_fen, "bills": self.bills, "entries": self.entries,
                "items": self.items, "problems": self.problems, "lines": self.lines}


def site_accounts(session: Session, site_id: int, month: Period, tz: ZoneInfo) -> list[AccountRow]:
    """The site's accounts that may be present in ``month`` or in the quarter or year starting with it."""
    year_start = datetime.combine(date(month.start.year, 1, 1), time.min, tz)
    end = datetime.combine(periods.next_month(month.start), time.min, tz)
    rows = session.execute(
        select(Account.id, Room.number, Building.name, Floor.name, Room.area_m2, Account.opened_at,
               Account.closed_at, Account.billing_mode)
        .join(Room, Room.id == Account.room_id).join(Floor, Floor.id == Room.floor_id)
        .join(Building, Building.id == Floor.building_id)
        .where(Account.site_id == site_id, Account.opened_at < end,
               or_(Account.closed_at.is_(None), Account.closed_at >= year_start))
        .order_by(Account.id))
    out = []
    for aid, room, building, floor, area, opened_at, closed_at, mode in rows:
        out.append(AccountRow(int(aid), room, building, floor, Decimal(area) if area is not None else None,
                              opened_at.astimezone(tz).date(), periods.local_date(closed_at, tz),
                              mode == "postpaid"))
    return out


def run_month_end(site_id: int, period: str, *, preview: bool = False, actor: str = "system",
                  front: str = "system", with_lines: bool = True) -> MonthEndResult:
    """Run (or preview) the month ``period`` of site ``site_id`` in transactions of its own (see the
    module). Returns totals of the month's items (frozen and, previewing, to be frozen), the bills,
    the entries this call posted, problems, and one line per item (``with_lines``). Raises NotFound
    (no such site) and ValidationError (a malformed period) before anything is written."""
    month = periods.month(period)
    with new_session() as session:
        site = session.get(Site, site_id)
        if site is None:
            raise NotFound(f"no site {site_id}", field="site")
        result = MonthEndResult(site=site.name, period=month.key, preview=preview)
        tz = ZoneInfo(site.timezone or get_settings().timezone)
        steps: list[tuple[str, Any]] = [(f"charge:{s.id}", s) for s in session.scalars(
            select(ChargeScheme).where(ChargeScheme.site_id == site_id, ChargeScheme.active.is_(True))
            .order_by(ChargeScheme.id))]
        steps += [(f"apportion:{r.id}", r) for r in session.scalars(
            select(ApportionRule).where(ApportionRule.site_id == site_id, ApportionRule.active.is_(True))
            .order_by(ApportionRule.id))]
        accounts: list[AccountRow] | None = None
        by_room: dict[str, list[AccountRow]] = {}
        previewed: list[dict] = []
        for name, source in steps:
            frozen = _step(session, site_id, month.key, name)
            if frozen is not None:  # done before: its problems (a room without an area) still stand
                result.problems += [{"step": name, "message": p} for p in frozen.problems or []]
                continue
            t0 = clock.perf_counter()
            if accounts is None:
                accounts = site_accounts(session, site_id, month, tz)
                by_room = _by_room(accounts)
            computed = _compute(session, source, month, accounts, by_room, tz)
            t1 = clock.perf_counter()
            result.problems += [{"step": name, "message": p} for p in computed.problems]
            if preview:
                previewed += computed.items
                continue
            if isinstance(source, ApportionRule) and computed.problems:
                session.rollback()
                continue
            entries = _freeze(session, site_id, month.key, name, computed, actor=actor, front=front)
            session.commit()
            result.entries += entries
            log.info("month end %s %s %s: %d items, %d entries; computed in %.2f s, posted and written in %.2f s",
                     site.name, month.key, name, len(computed.items), entries, t1 - t0, clock.perf_counter() - t1)
        if preview:  # the bills' preview sees this preview's bill-mode items (rolled back with it)
            _stage_bill_items(session, [it for it in previewed if it["mode"] == "bill"])
        bills = _bills(session, site_id, month.key, preview=preview, actor=actor, front=front,
                       with_lines=with_lines)
        # the month's bills, made now or by an earlier run (a re-run reports what the first run did;
        # a preview adds the ones it would make to those already made, which it rolled back to)
        made, made_lines = _month_bills(session, site_id, month.key, with_lines=with_lines)
        result.bills = len(made) + (bills.count if preview else 0)
        if not preview:
            _record_done(session, site_id, month.key, result, actor=actor, front=front)
            session.commit()
        _totals(session, site_id, month, result, previewed, with_lines=with_lines)
        if with_lines:
            result.lines += made_lines
            if preview:
                result.lines += [{"room": ln.get("room"), "kind": "energy", "code": ln.get("code"),
                                  "amount": format_fen(int(ln.get("amount_fen", 0)))}
                                 for ln in bills.lines if ln.get("kind") == "energy"]
        session.rollback()
    return result


def _month_bills(session: Session, site_id: int, period: str, *, with_lines: bool) -> tuple[list[str], list[dict]]:
    """The bill numbers of the month (not credit notes) and, ``with_lines``, their energy lines."""
    nos = list(session.scalars(select(Bill.bill_no).where(Bill.site_id == site_id, Bill.period == period,
                                                          Bill.kind == "bill").order_by(Bill.id)))
    if not with_lines or not nos:
        return nos, []
    rows = session.execute(
        select(Room.number, BillLine.code, BillLine.amount_fen).join(Bill, Bill.id == BillLine.bill_id)
        .join(Account, Account.id == Bill.account_id).join(Room, Room.id == Account.room_id)
        .where(Bill.site_id == site_id, Bill.period == period, Bill.kind == "bill", BillLine.kind == "energy")
        .order_by(Bill.id, BillLine.line_no))
    return nos, [{"room": room, "kind": "energy", "code": code, "amount": format_fen(int(fen))}
                 for room, code, fen in rows]


def _by_room(accounts: list[AccountRow]) -> dict[str, list[AccountRow]]:
    by_room: dict[str, list[AccountRow]] = defaultdict(list)
    for a in accounts:
        by_room[a.room].append(a)
    return by_room


def _compute(session: Session, source: Any, month: Period, accounts: list[AccountRow],
             by_room: dict[str, list[AccountRow]], tz: ZoneInfo) -> Computed:
    if isinstance(source, ChargeScheme):
        return schemes.compute(source, month, accounts)
    return rules.compute(session, source, month, by_room, tz)


def _lock(session: Session, site_id: int) -> None:
    if is_postgres(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:space, :site)"), {"space": LOCK_SPACE, "site": site_id})


def _step(session: Session, site_id: int, period: str, step: str) -> MonthEndStep | None:
    return session.scalar(select(MonthEndStep).where(MonthEndStep.site_id == site_id, MonthEndStep.period == period,
                                                     MonthEndStep.step == step))


def _frozen(session: Session, site_id: int, period: str, step: str) -> bool:
    return session.scalar(select(MonthEndStep.id).where(MonthEndStep.site_id == site_id,
                                                        MonthEndStep.period == period,
                                                        MonthEndStep.step == step)) is not None


def _freeze(session: Session, site_id: int, period: str, step: str, computed: Computed, *, actor: str,
            front: str) -> int:
    """In the caller's transaction: post the step's deduct items, write its items and its step row.
    Returns the entries created (0 when another run froze the step first)."""
    _lock(session, site_id)
    if _frozen(session, site_id, period, step):  # looked up again under the lock
        return 0
    items = computed.items
    entry_meta: dict[int, dict] = {}  # items share their meta: so do their entries (and its JSON)
    memos: dict[str, str] = {}
    deduct = []
    for it in items:
        if it["mode"] != "deduct" or it["amount_fen"] <= 0:
            continue
        meta = entry_meta.get(id(it["meta"]))
        if meta is None:
            meta = entry_meta[id(it["meta"])] = {**it["meta"], "period": it["period"], "code": it["code"],
                                                  "source": it["source_id"]}
        memo = memos.get(it["name"]) or memos.setdefault(it["name"], f"{it['name']} {it['period']}")
        deduct.append(Deduction(key=it["key"], kind=it["kind"], account_id=it["account_id"],
                                amount_fen=it["amount_fen"], revenue_code=it["revenue_code"], memo=memo, meta=meta))
    posted = post_many(session, deduct, actor=actor, front=front) if deduct else {}
    earlier = [k for k, v in posted.items() if v is None]
    if earlier:  # posted by someone before (a one-off post_charge under the same key): link that entry
        posted.update({k: int(v) for k, v in session.execute(
            select(JournalEntry.idempotency_key, JournalEntry.id).where(
                ids_in(session, JournalEntry.idempotency_key, earlier, strings=True)))})
    now = utcnow()
    if items and is_postgres(session) and len(items) >= COPY_FROM:
        copy_lines(session, f"COPY month_items ({', '.join(ITEM_COLS)}) FROM STDIN", _item_lines(items, posted, now))
    elif items:
        session.execute(insert(MonthItem), [{**it, "entry_id": posted.get(it["key"]), "bill_no": None,
                                             "created_at": now} for it in items])
    total = sum(it["amount_fen"] for it in items)
    insert_if_absent(session, MonthEndStep, site_id=site_id, period=period, step=step, items=len(items),
                     total_fen=total, problems=computed.problems, actor=actor, created_at=now)
    created = sum(1 for k, v in posted.items() if v is not None and k not in earlier)
    audit.record(session, actor=actor, front=front, action="month_end_step", site_id=site_id, period=period,
                 step=step, items=len(items), amount=format_fen(total), entries=created)
    return created


def _item_lines(items: list[dict], posted: dict[str, int | None], now: datetime) -> Iterator[str]:
    """``month_items`` rows as COPY text (escaping and JSON done once per distinct value; keys and
    revenue codes are plain: ids, ascii codes and a period). A generator: COPY sends each block as it
    is made, so PostgreSQL inserts one block while the next is formatted."""
    texts: dict[Any, str] = {}
    metas: dict[int, str] = {}
    at = now.isoformat()
    for it in items:
        m = metas.get(id(it["meta"]))
        if m is None:
            m = metas[id(it["meta"])] = copy_text(json.dumps(it["meta"], ensure_ascii=False))
        name = texts.get(it["name"]) or texts.setdefault(it["name"], copy_text(it["name"]))
        code = texts.get(it["code"]) or texts.setdefault(it["code"], copy_text(it["code"]))
        entry = posted.get(it["key"])
        yield (f"{it['site_id']}\t{it['account_id']}\t{it['kind']}\t{it['source_id']}\t{code}\t"
               f"{name}\t{it['period']}\t{it['period_start']}\t{it['period_end']}\t{it['amount_fen']}\t"
               f"{it['mode']}\t{it['key']}\t{it['revenue_code']}\t{NULL if entry is None else entry}\t"
               f"{NULL}\t{m}\t{at}\n")


def _stage_bill_items(session: Session, items: list[dict]) -> None:
    """(Preview only, rolled back by the caller.) Write the bill-mode items a preview computed, so
    the bills' preview counts and lists them as the real run would."""
    if items:
        now = utcnow()
        session.execute(insert(MonthItem), [{**it, "entry_id": None, "bill_no": None, "created_at": now}
                                            for it in items])


def _bills(session: Session, site_id: int, period: str, *, preview: bool, actor: str, front: str,
           with_lines: bool = True) -> Any:
    from core.bills.generate import generate_for_period
    out = generate_for_period(session, site_id, period, preview=preview, actor=actor, front=front,
                              with_lines=with_lines)
    if preview:
        session.rollback()
    else:
        session.commit()
    return out


def _record_done(session: Session, site_id: int, period: str, result: MonthEndResult, *, actor: str,
                 front: str) -> None:
    done = session.scalar(select(MonthEndStep).where(MonthEndStep.site_id == site_id, MonthEndStep.period == period,
                                                     MonthEndStep.step == "done"))
    if done is None:
        insert_if_absent(session, MonthEndStep, site_id=site_id, period=period, step="done", items=0, total_fen=0,
                         problems=[p["message"] for p in result.problems], actor=actor, created_at=utcnow())
    else:
        done.problems = [p["message"] for p in result.problems]
    audit.record(session, actor=actor, front=front, action="month_end_run", site_id=site_id, period=period,
                 entries=result.entries, bills=result.bills, problems=len(result.problems))


def month_keys(month: Period) -> list[str]:
    """The item periods the run of ``month`` freezes: the month, its quarter and year when it starts
    them (one-time dates are matched by prefix)."""
    keys = [month.key]
    if month.start.month in (1, 4, 7, 10):
        keys.append(periods.quarter(month.start).key)
    if month.start.month == 1:
        keys.append(periods.year(month.start).key)
    return keys


def items_of(session: Session, site_id: int, month: Period):
    """The select of the month's frozen items (the items of the run's frozen steps)."""
    frozen = list(session.scalars(select(MonthEndStep.step).where(MonthEndStep.site_id == site_id,
                                                                  MonthEndStep.period == month.key)))
    by_kind: dict[str, list[int]] = {"charge": [], "apportion": []}
    for step in frozen:
        kind, _, source = step.partition(":")
        if kind in by_kind and source.isdigit():
            by_kind[kind].append(int(source))
    late = MonthItem.meta["late"].as_string()  # a quarter's or year's item made by a later month's run
    return select(MonthItem).where(
        MonthItem.site_id == site_id,
        or_(and_(MonthItem.period.in_(month_keys(month)), late.is_(None)), MonthItem.period.like(f"{month.key}-__"),
            late == month.key),
        or_(and_(MonthItem.kind == "charge", MonthItem.source_id.in_(by_kind["charge"] or [-1])),
            and_(MonthItem.kind == "apportion", MonthItem.source_id.in_(by_kind["apportion"] or [-1]))))


def _totals(session: Session, site_id: int, month: Period, result: MonthEndResult, previewed: Sequence[dict], *,
            with_lines: bool) -> None:
    q = items_of(session, site_id, month).subquery()
    sums = {k: (int(s), int(n)) for k, s, n in session.execute(
        select(q.c.kind, func.coalesce(func.sum(q.c.amount_fen), 0), func.count()).group_by(q.c.kind))}
    for kind in ("charge", "apportion"):
        fen = sums.get(kind, (0, 0))[0] + sum(i["amount_fen"] for i in previewed if i["kind"] == kind)
        if kind == "charge":
            result.charges_fen = fen
        else:
            result.apportioned_fen = fen
    result.items = sum(n for _s, n in sums.values()) + len(previewed)
    if not with_lines:
        return
    rows = session.execute(select(Room.number, q.c.kind, q.c.code, q.c.amount_fen)
                           .join(Account, Account.id == q.c.account_id).join(Room, Room.id == Account.room_id)
                           .order_by(q.c.kind.desc(), q.c.source_id, q.c.account_id))
    result.lines = [{"room": room, "kind": kind, "code": code, "amount": format_fen(fen)}
                    for room, kind, code, fen in rows]
    if previewed:
        rooms = dict(session.execute(select(Account.id, Room.number).join(Room, Room.id == Account.room_id).where(
            ids_in(session, Account.id, {i["account_id"] for i in previewed}))).all())
        result.lines += [{"room": rooms.get(i["account_id"]), "kind": i["kind"], "code": i["code"],
                          "amount": format_fen(i["amount_fen"])} for i in previewed]


# --- the schedule ------------------------------------------------------------------------------

DEFAULT_DAY, DEFAULT_TIME = 1, "02:00"


def schedule_of(site: Site) -> tuple[bool, int, time]:
    """(enabled, day 1-28, local time) of the site's ``month_end`` setting."""
    cfg = (site.settings or {}).get("month_end") or {}
    if not isinstance(cfg, dict):
        raise ValidationError(f"site {site.name}: month_end must be an object")
    day = cfg.get("day", DEFAULT_DAY)
    if not isinstance(day, int) or not 1 <= day <= 28:
        raise ValidationError(f"site {site.name}: month_end.day must be 1-28")
    try:
        at = time.fromisoformat(str(cfg.get("time", DEFAULT_TIME)))
    except ValueError:
        raise ValidationError(f"site {site.name}: month_end.time must be HH:MM") from None
    return cfg.get("enabled", True) is not False, day, at


def due_period(site: Site, now: datetime) -> str | None:
    """The month the schedule runs for ``site`` at ``now`` (the month before, once its day and time
    have come), or None."""
    enabled, day, at = schedule_of(site)
    if not enabled:
        return None
    local = now.astimezone(ZoneInfo(site.timezone or get_settings().timezone))
    if (local.day, local.time()) < (day, at):
        return None
    return periods.previous_month(local.date())


def run_due(now: datetime | None = None) -> list[str]:
    """The periodic job: run every site whose month-end has come and is not done. Returns
    ``"<site>:<period>"`` for each run started; one site's failure is logged and does not stop the others."""
    now = now or utcnow()
    with new_session() as session:
        todo = []
        for site in session.scalars(select(Site).order_by(Site.id)):
            try:
                period = due_period(site, now)
            except ValidationError as exc:
                log.warning("month-end schedule: %s", exc.message)
                continue
            if period and not _frozen(session, site.id, period, "done"):
                todo.append((site.id, site.name, period))
    ran = []
    for site_id, name, period in todo:
        try:
            run_month_end(site_id, period, actor="schedule", front="job", with_lines=False)
            ran.append(f"{name}:{period}")
        except Exception:  # one site's failure must not stop the others; logged
            log.exception("month-end run of site %s for %s failed", name, period)
    return ran
