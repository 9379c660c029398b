"""Common-area apportionment (公共区域分摊): check and store rules, and split a master meter's month.

The rule JSON (``meterpay apportion add --site NAME --rule FILE.json``)::

    {"name": "公区电", "master": "M-COMMON-1", "basis": "ratio" | "area" | "usage",
     "accounts": ["101", "102"] | {"101": 2, "102": "1.5"} (ratio), "mode": "deduct" | "bill"}

- ``master``: the serial of a common-area meter (in a room without a tenant: on no account); it is
  priced by its own plan (``meters.tariff_plan_id``: ``sites import`` sets it from the ``tariff``
  column of a row without a tenant, the admin's apportionment page too). Electricity or water alike.
- The master's amount for a month: the fen billing priced for it, interval by interval, with the
  intervals whose closing reading falls in the month (the dating billing and the reports use). The
  master needs readings covering the month -- one at or before its first instant and one at or after
  its end -- else the rule is reported (``problems``) and posts nothing: never guessed.
- ``accounts`` are rooms; each account present at such a room during the month shares, weighted by
  ``ratio``: the room's weight x days present; ``area``: the room's ``area_m2`` x days present;
  ``usage``: the account's own billed usage of the master's utility in the month (usage already
  follows presence, so days are not applied). A vacant room's days are nobody's: the whole amount is
  split over the accounts that were there.
- The split is largest remainder (``core.monthend.split``): floors in fen, the leftover fen to the
  largest remainders, ties to the lower account id, so the shares add up to the master's amount.
- Each share is an item ``apportion:<rule id>:<account id>:<YYYY-MM>`` (code ``apportion:<utility>``,
  revenue ``revenue:apportion:<utility>``); deduct or bill as ``mode`` says (postpaid or closed: bill).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import audit
from core.bulk_sql import ids_in
from core.errors import NotFound, ValidationError
from core.ledger.charges import apportion_revenue
from core.ledger.money import to_fen
from core.models import ApportionRule, BilledUsage, Meter, Reading, Room
from core.monthend import periods
from core.monthend.periods import Period
from core.monthend.schemes import Computed, choice, item_row, spec_name
from core.monthend.split import split

BASES = ("ratio", "area", "usage")
MODES = ("deduct", "bill")
FIELDS = {"name", "master", "basis", "accounts", "mode"}


def _weight(value: Any, room: str) -> str:
    if isinstance(value, bool):
        raise ValidationError(f"accounts: the weight of {room} is not a number", field="accounts")
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError(f"accounts: the weight of {room} is not a number", field="accounts") from None
    if not d.is_finite() or d <= 0 or d.adjusted() > 9 or d != d.quantize(Decimal("0.000001")):
        raise ValidationError(f"accounts: the weight of {room} must be > 0 with at most six places", field="accounts")
    return str(d)


def normalise(session: Session, site_id: int, spec: Any) -> tuple[dict, Meter]:
    """The rule as stored, and its master meter; ValidationError naming the field."""
    name = spec_name(spec, FIELDS, "a rule")
    basis = choice(spec, "basis", BASES)
    mode = choice(spec, "mode", MODES)
    master = session.scalar(select(Meter).where(Meter.serial == str(spec.get("master") or ""),
                                                Meter.site_id == site_id))
    if master is None:
        raise ValidationError(f"master: no meter {spec.get('master')!r} at this site", field="master")
    if master.account_id is not None:
        raise ValidationError(f"master: meter {master.serial} is on a tenant's account, not a common area",
                              field="master")
    accounts = spec.get("accounts")
    if basis == "ratio":
        if not isinstance(accounts, dict) or not accounts:
            raise ValidationError('accounts: a ratio rule gives {"room": weight, ..}', field="accounts")
        rooms: Any = {str(k): _weight(v, str(k)) for k, v in accounts.items()}
        names = list(rooms)
    else:
        if not isinstance(accounts, list) or not accounts:
            raise ValidationError("accounts: a non-empty list of rooms", field="accounts")
        names = [str(r) for r in accounts]
        if len(set(names)) != len(names):
            raise ValidationError("accounts: a room twice", field="accounts")
        rooms = names
    known = set(session.scalars(select(Room.number).where(Room.site_id == site_id, ids_in(
        session, Room.number, names, strings=True))))
    missing = [n for n in names if n not in known]
    if missing:
        raise ValidationError(f"accounts: no room {missing[0]!r} at this site", field="accounts")
    return {"name": name, "master": master.serial, "basis": basis, "accounts": rooms, "mode": mode}, master


def add_rule(session: Session, site_id: int, spec: Any, *, actor: str = "system", front: str = "system"
             ) -> ApportionRule:
    norm, master = normalise(session, site_id, spec)
    rule = ApportionRule(site_id=site_id, name=norm["name"], master_meter_id=master.id, basis=norm["basis"],
                         mode=norm["mode"], active=True, spec=norm, created_by=actor)
    session.add(rule)
    session.flush()
    audit.record(session, actor=actor, front=front, action="apportion_rule_add", site_id=site_id,
                 meter_id=master.id, rule_id=rule.id, name=rule.name, basis=rule.basis)
    return rule


def list_rules(session: Session, site_id: int) -> list[ApportionRule]:
    return list(session.scalars(select(ApportionRule).where(ApportionRule.site_id == site_id)
                                .order_by(ApportionRule.id)))


def set_master_plan(session: Session, site_id: int, serial: str, plan_name: str | None, *, actor: str,
                    front: str) -> Meter:
    """Set (or clear, ``plan_name`` None) a common-area meter's own plan, of its utility's unit."""
    from core.tariffs.store import plan_for
    meter = session.scalar(select(Meter).where(Meter.serial == serial, Meter.site_id == site_id))
    if meter is None:
        raise NotFound(f"no meter {serial!r} at this site", field="master")
    if meter.account_id is not None:
        raise ValidationError(f"meter {serial} is on a tenant's account: its account's plan prices it",
                              field="master")
    plan_id = None
    if plan_name:
        plan_id = plan_for(session, plan_name, site_id=site_id, utility=meter.kind, actor=actor, front=front).id
    if meter.tariff_plan_id != plan_id:
        meter.tariff_plan_id = plan_id
        audit.record(session, actor=actor, front=front, action="meter_plan_set", site_id=site_id, meter_id=meter.id,
                     tariff=plan_name or "")
    return meter


# --- computing a month -------------------------------------------------------------------------

def bounds(month: Period, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The month's first instant and the next month's first instant, in the site's timezone. The
    master's usage (and the accounts' own, for a split by usage) of a month is that of the intervals
    that end after the first and at or before the second: a reading at 00:00 on the 1st (a monthly
    frozen reading) closes the month before, as the readings covering the month are found."""
    start = datetime.combine(month.start, datetime.min.time(), tz)
    return start, datetime.combine(periods.next_month(month.start), datetime.min.time(), tz)


def master_month(session: Session, meter: Meter, month: Period, tz: ZoneInfo) -> tuple[int, Decimal, str | None]:
    """(fen, quantity, problem): what billing priced for the master in the month, or why not."""
    a, b = bounds(month, tz)
    if meter.tariff_plan_id is None:
        return 0, Decimal(0), f"master {meter.serial} has no plan of its own (set it on the apportionment page)"
    before = session.scalar(select(func.max(Reading.taken_at)).where(
        Reading.meter_id == meter.id, Reading.status.in_(("ok", "late")), Reading.taken_at <= a))
    after = session.scalar(select(func.min(Reading.taken_at)).where(
        Reading.meter_id == meter.id, Reading.status.in_(("ok", "late")), Reading.taken_at >= b))
    if before is None or after is None:
        return 0, Decimal(0), (f"master {meter.serial} has no readings covering {month.key} "
                               f"(one at or before its start and one at or after its end): not guessed")
    fen, qty = session.execute(select(func.coalesce(func.sum(BilledUsage.amount_fen), 0),
                                      func.coalesce(func.sum(BilledUsage.quantity), 0)).where(
        BilledUsage.meter_id == meter.id, BilledUsage.ended_at > a, BilledUsage.ended_at <= b,
        BilledUsage.plan_id.is_not(None))).one()
    # Intervals billing met before the master had a plan were stored unpriced (plan_id NULL): the
    # master's plan prices them now, in time order, rounded to fen once.
    unpriced = session.execute(select(BilledUsage.started_at, BilledUsage.ended_at, BilledUsage.quantity).where(
        BilledUsage.meter_id == meter.id, BilledUsage.ended_at > a, BilledUsage.ended_at <= b,
        BilledUsage.plan_id.is_(None)).order_by(BilledUsage.ended_at)).all()
    if unpriced:
        from core.billing.pricing import PricerCache
        from core.models.meter import UTILITY_UNIT
        from core.tariffs.engine import Interval, State
        cache = PricerCache(session)
        cache.preload([meter.tariff_plan_id])
        pricer = cache.loaded(meter.tariff_plan_id, str(tz.key), UTILITY_UNIT.get(meter.kind))
        if pricer is None:
            return 0, Decimal(0), f"master {meter.serial}: its plan is not priced in {UTILITY_UNIT.get(meter.kind)}"
        priced = pricer.price([Interval(u.started_at, u.ended_at, Decimal(u.quantity)) for u in unpriced], State())
        fen += to_fen(priced.amount)
        qty += sum((Decimal(u.quantity) for u in unpriced), Decimal(0))
    return int(fen), Decimal(qty), None


def usage_of(session: Session, account_ids: Sequence[int], kind: str, month: Period, tz: ZoneInfo
             ) -> dict[int, Decimal]:
    """Each account's billed usage of ``kind`` meters with the closing reading in the month."""
    if not account_ids:
        return {}
    a, b = bounds(month, tz)
    rows = session.execute(select(BilledUsage.account_id, func.sum(BilledUsage.quantity))
                           .join(Meter, Meter.id == BilledUsage.meter_id)
                           .where(ids_in(session, BilledUsage.account_id, account_ids), Meter.kind == kind,
                                  BilledUsage.ended_at > a, BilledUsage.ended_at <= b)
                           .group_by(BilledUsage.account_id))
    return {int(acc): Decimal(q) for acc, q in rows if acc is not None}


def compute(session: Session, rule: ApportionRule, month: Period, by_room: Mapping[str, Sequence[Any]],
            tz: ZoneInfo) -> Computed:
    """The shares of ``rule`` for ``month``; ``by_room``: room number -> the site's ``AccountRow``s
    there. Reads the master's readings and billed usage; writes nothing."""
    if not rule.active:
        return Computed([], [], None)
    master = session.get(Meter, rule.master_meter_id)
    assert master is not None  # a foreign key
    fen, qty, problem = master_month(session, master, month, tz)
    if problem:
        return Computed([], [problem], month)
    spec = rule.spec
    present: list[tuple[Any, int, str]] = []  # (account row, days, room weight)
    ratio = spec["accounts"] if isinstance(spec["accounts"], dict) else None
    for room in (ratio or spec["accounts"]):
        for a in by_room.get(room, ()):
            days = periods.days_present(a.opened, a.closed, month)
            if days > 0:
                present.append((a, days, ratio[room] if ratio else ""))
    if fen == 0:
        return Computed([], [], month)
    if not present:
        return Computed([], [f"rule {rule.name}: no account was present at its rooms in {month.key}"], month)
    weights: dict[int, Decimal] = {}
    problems = []
    if rule.basis == "ratio":
        weights = {a.id: Decimal(w) * days for a, days, w in present}
    elif rule.basis == "area":
        for a, days, _w in present:
            if not a.area:
                problems.append(f"rule {rule.name}: room {a.room} has no area_m2")
            else:
                weights[a.id] = a.area * days
    else:
        used = usage_of(session, [a.id for a, _d, _w in present], master.kind, month, tz)
        weights = {a.id: used.get(a.id, Decimal(0)) for a, _d, _w in present}
    if problems:
        return Computed([], problems, month)
    if sum(weights.values()) <= 0:
        return Computed([], [f"rule {rule.name}: every weight is 0 in {month.key} (no usage?)"], month)
    shares = split(fen, weights.items())
    utility = master.kind
    items = []
    for a, days, _w in present:
        share = shares[a.id]
        if share <= 0:
            continue
        meta = {"period": month.key, "rule": rule.name, "basis": rule.basis, "master": master.serial,
                "master_fen": fen, "master_usage": str(qty), "weight": str(weights[a.id]), "days": days,
                "room": a.room}
        if rule.basis == "area":
            meta["area_m2"] = str(a.area)
        items.append(item_row(site_id=rule.site_id, account_id=a.id, kind="apportion", source_id=rule.id,
                              code=f"apportion:{utility}", name=rule.name, period=month, amount_fen=share,
                              mode="bill" if rule.mode == "bill" or a.postpaid or a.closed else "deduct",
                              key=f"apportion:{rule.id}:{a.id}:{month.key}", revenue_code=apportion_revenue(utility),
                              meta=meta))
    return Computed(items, [], month)
