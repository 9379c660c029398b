"""Custom charge schemes (自定义收费方案): check and store them, and compute what each account owes.

The scheme JSON (``meterpay charges add --site NAME --scheme FILE.json``)::

    {"name": "物业费", "code": "property", "basis": "fixed" | "per_m2", "amount": "30.00",
     "every": "month" | "quarter" | "year" | "once", "day": 1 (1-28) | "date": "2026-05-01" (once),
     "mode": "deduct" | "bill", "prorate": "none" | "days", "start": "2026-01-01", "end": "2026-12-31",
     "scope": "all" | {"buildings": ["A"]} | {"floors": [["A", "1"]]} | {"rooms": ["101"]}}

- ``amount``: yuan per room (``fixed``, two places at most) or per m² of the room's ``area_m2``
  (``per_m2``, four places at most).
- Due: a period's charge falls on its ``day`` (of the period's first month) or on ``date``; the
  month-end run of the month holding that day posts it. So a monthly scheme is charged by every
  run, a quarterly one by the runs of January, April, July and October (period ``YYYY-Qn``), a
  yearly one by January's (``YYYY``), a one-time one by the run of its date's month (period
  ``YYYY-MM-DD``). A period is charged when its due day lies within ``start`` .. ``end``.
- Who: the accounts of the rooms in ``scope`` present on any day of the period (opened on or before
  its last day, not closed before its first; an open account counts as present to the period's end).
- How much: ``amount`` (``fixed``) or ``amount x area_m2`` (``per_m2``); with ``prorate: days`` times
  ``days present / days in the period``. The exact product is rounded to fen once, half up. A room
  without an area under a ``per_m2`` scheme is reported and not charged (never guessed).
- Mode: ``deduct`` posts from the wallet at month end (it may go below zero); ``bill`` posts
  nothing then and the item waits for a bill. A postpaid account's items always go on its bill, and
  so do a closed account's (its wallet was settled when it closed: the share is billed, not
  deducted from a wallet nobody tops up).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import audit
from core.errors import Conflict, ValidationError
from core.ledger.charges import CODE, charge_revenue
from core.ledger.money import decimal_of, format_fen, parse_yuan, to_fen
from core.models import Building, ChargeScheme, Floor, Room
from core.monthend import periods
from core.monthend.periods import Period

BASES = ("fixed", "per_m2")
EVERY = ("month", "quarter", "year", "once")
MODES = ("deduct", "bill")
PRORATE = ("none", "days")
FIELDS = {"name", "code", "basis", "amount", "every", "day", "date", "mode", "prorate", "start", "end", "scope"}


def _date(value: Any, field: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValidationError(f"{field}: {value!r} is not a date YYYY-MM-DD", field=field) from None


def choice(spec: Mapping, field: str, choices: Sequence[str], default: str | None = None) -> str:
    value = spec.get(field, default)
    if value not in choices:
        raise ValidationError(f"{field}: must be one of {', '.join(choices)} (got {value!r})", field=field)
    return str(value)


def rate(text: Any, *, field: str = "amount") -> Decimal:
    """A per-m² rate in yuan: a decimal string (or integer), > 0, at most four places."""
    value = decimal_of(text, field=field)
    if value <= 0 or value.adjusted() > 9:
        raise ValidationError(f"{field}: {text!r} is not a positive amount in yuan", field=field)
    if value != value.quantize(Decimal("0.0001")):
        raise ValidationError(f"{field}: {text!r} has more than four decimal places", field=field)
    return value


def spec_name(spec: Any, fields: set[str] | frozenset[str], what: str) -> str:
    """A scheme's or rule's spec is a JSON object of known fields with a name: its name, or
    ValidationError naming the field."""
    if not isinstance(spec, dict):
        raise ValidationError(f"{what} is a JSON object")
    unknown = sorted(set(spec) - fields)
    if unknown:
        raise ValidationError(f"unknown field(s): {', '.join(unknown)}", field=unknown[0])
    name = str(spec.get("name") or "").strip()
    if not name or len(name) > 120:
        raise ValidationError("name: 1-120 characters", field="name")
    return name


def normalise(session: Session, site_id: int, spec: Any) -> dict:
    """The scheme as stored: every field checked (ValidationError naming the field), defaults filled."""
    name = spec_name(spec, FIELDS, "a scheme")
    code = spec.get("code")
    if not isinstance(code, str) or not CODE.match(code):
        raise ValidationError("code: ascii letters, digits, '_', '-' or '.', at most 40", field="code")
    basis = choice(spec, "basis", BASES)
    amount = spec.get("amount")
    if basis == "fixed":
        amount_text = format_fen(parse_yuan(amount if amount is not None else "", field="amount"))
    else:
        amount_text = str(rate(amount if amount is not None else ""))
    every = choice(spec, "every", EVERY)
    out: dict[str, Any] = {"name": name, "code": code, "basis": basis, "amount": amount_text, "every": every,
                           "mode": choice(spec, "mode", MODES), "prorate": choice(spec, "prorate", PRORATE, "none")}
    if every == "once":
        if spec.get("date") in (None, ""):
            raise ValidationError("date: a one-time scheme needs its date YYYY-MM-DD", field="date")
        out["date"] = _date(spec["date"], "date").isoformat()
        out["start"] = _date(spec.get("start") or out["date"], "start").isoformat()
    else:
        day = spec.get("day", 1)
        if not isinstance(day, int) or isinstance(day, bool) or not 1 <= day <= 28:
            raise ValidationError("day: a day of the period from 1 to 28", field="day")
        out["day"] = day
        if spec.get("start") in (None, ""):
            raise ValidationError("start: the date the scheme starts, YYYY-MM-DD", field="start")
        out["start"] = _date(spec["start"], "start").isoformat()
    if spec.get("end") not in (None, ""):
        out["end"] = _date(spec["end"], "end").isoformat()
        if out["end"] < out["start"]:
            raise ValidationError("end: before start", field="end")
    out["scope"] = check_scope(session, site_id, spec.get("scope", "all"))
    return out


def check_scope(session: Session, site_id: int, scope: Any) -> Any:
    """``"all"`` or one of ``{"buildings": [..]}``, ``{"floors": [[b, f], ..]}``, ``{"rooms": [..]}``,
    every name known at the site."""
    if scope == "all":
        return "all"
    if not isinstance(scope, dict) or len(scope) != 1 or next(iter(scope)) not in ("buildings", "floors", "rooms"):
        raise ValidationError('scope: "all", {"buildings": [..]}, {"floors": [[building, floor], ..]} or '
                              '{"rooms": [..]}', field="scope")
    (what, names), = scope.items()
    if not isinstance(names, list) or not names:
        raise ValidationError(f"scope: {what} must be a non-empty list", field="scope")
    if what == "buildings":
        known = set(session.scalars(select(Building.name).where(Building.site_id == site_id)))
        wanted = [str(n) for n in names]
        missing = [n for n in wanted if n not in known]
    elif what == "rooms":
        known = set(session.scalars(select(Room.number).where(Room.site_id == site_id)))
        wanted = [str(n) for n in names]
        missing = [n for n in wanted if n not in known]
    else:
        pairs = set(session.execute(select(Building.name, Floor.name).join(Floor, Floor.building_id == Building.id)
                                    .where(Building.site_id == site_id)).all())
        floors: list[list[str]] = []
        for p in names:
            if not isinstance(p, list) or len(p) != 2:
                raise ValidationError("scope: floors are [building, floor] pairs", field="scope")
            floors.append([str(p[0]), str(p[1])])
        missing = [f"{b}/{f}" for b, f in floors if (b, f) not in pairs]
        if missing:
            raise ValidationError(f"scope: no floor {missing[0]!r} at this site", field="scope")
        return {what: floors}
    if missing:
        raise ValidationError(f"scope: no {what[:-1]} {missing[0]!r} at this site", field="scope")
    return {what: wanted}


def add_scheme(session: Session, site_id: int, spec: Any, *, actor: str = "system", front: str = "system"
               ) -> ChargeScheme:
    """Store a scheme (checked by ``normalise``); Conflict when the site has one of that code."""
    norm = normalise(session, site_id, spec)
    if session.scalar(select(ChargeScheme.id).where(ChargeScheme.site_id == site_id,
                                                    ChargeScheme.code == norm["code"])) is not None:
        raise Conflict(f"code: the site has a scheme {norm['code']!r} already", field="code")
    scheme = ChargeScheme(site_id=site_id, name=norm["name"], code=norm["code"], every=norm["every"],
                          mode=norm["mode"], active=True, spec=norm, created_by=actor)
    session.add(scheme)
    session.flush()
    audit.record(session, actor=actor, front=front, action="charge_scheme_add", site_id=site_id,
                 scheme_id=scheme.id, code=scheme.code, name=scheme.name)
    return scheme


def list_schemes(session: Session, site_id: int) -> list[ChargeScheme]:
    return list(session.scalars(select(ChargeScheme).where(ChargeScheme.site_id == site_id)
                                .order_by(ChargeScheme.id)))


def set_active(session: Session, scheme_id: int, site_id: int, active: bool, *, actor: str, front: str) -> None:
    from core.errors import NotFound
    scheme = session.get(ChargeScheme, scheme_id)
    if scheme is None or scheme.site_id != site_id:
        raise NotFound(f"no charge scheme {scheme_id}")
    if scheme.active != active:
        scheme.active = active
        audit.record(session, actor=actor, front=front, action="charge_scheme_active", site_id=site_id,
                     scheme_id=scheme.id, active=active)


def due_period(spec: Mapping, month: Period, *, late: bool = False) -> Period | None:
    """The scheme's period charged by the run of ``month``, or None when nothing falls due in it.

    ``late``: for a quarterly or yearly scheme, the period under way in ``month`` when ``month`` is
    not its first: the run of that month charges the accounts opened in it, which the run of the
    period's first month could not see (``compute``)."""
    every = spec["every"]
    if every == "once":
        if late:
            return None
        when = date.fromisoformat(spec["date"])
        if not month.start <= when <= month.end:
            return None
        period = periods.day(when)
    else:
        period = {"month": lambda d: Period(month.key, month.start, month.end), "quarter": periods.quarter,
                  "year": periods.year}[every](month.start)
        first = period.start == month.start  # quarters and years fall due in their first month
        if first == late:
            return None
        when = period.start + timedelta(days=int(spec.get("day", 1)) - 1)
    if when < date.fromisoformat(spec["start"]) or (spec.get("end") and when > date.fromisoformat(spec["end"])):
        return None
    return period


@dataclass(frozen=True)
class Computed:
    """What a scheme or rule owes for a period: items (dicts of ``month_items`` columns) and the
    problems that stopped a part of it (text; a rule with a problem posts nothing)."""

    items: list[dict]
    problems: list[str]
    period: Period | None


def compute(scheme: ChargeScheme, month: Period, accounts: Sequence[Any]) -> Computed:
    """The items of ``scheme`` for the run of ``month`` over the site's ``accounts`` (``AccountRow``s).
    Pure: reads nothing, writes nothing. Amounts (and their ``meta``, shared between items) are
    computed once per distinct (area, days present)."""
    spec = scheme.spec
    period = due_period(spec, month)
    # A quarter's or a year's later months charge only the accounts opened in them (by days present
    # with ``prorate: days``): the run of the period's first month charged everyone open by its end.
    late = period is None and spec["every"] in ("quarter", "year")
    if late:
        period = due_period(spec, month, late=True)
    if period is None or not scheme.active:
        return Computed([], [], None)
    items, problems = [], []
    per_room = spec["basis"] == "fixed"
    amount = Decimal(parse_yuan(spec["amount"])) / 100 if per_room else Decimal(spec["amount"])
    prorate = spec["prorate"] == "days"
    revenue = charge_revenue(scheme.code)
    wanted = _scope_test(spec["scope"])
    base = {"period": period.key, "basis": spec["basis"], "rate": spec["amount"], "scheme": scheme.name}
    if late:  # the run of a later month of the period made it (``run.items_of`` counts it there)
        base["late"] = month.key
    cache: dict[tuple, tuple[int, dict]] = {}
    # plain locals: an ORM attribute read costs a microsecond, 100,000 times per scheme
    site_id, scheme_id, code, name, bill = scheme.site_id, scheme.id, scheme.code, scheme.name, spec["mode"] == "bill"
    pkey, pstart, pend, pdays = period.key, period.start, period.end, period.days
    mstart, mend = month.start, month.end
    for a in accounts:
        if wanted is not None and not wanted(a):
            continue
        if late and not mstart <= a.opened <= mend:
            continue
        days = periods.days_present(a.opened, a.closed, period)
        if days <= 0:
            continue
        if not per_room and not a.area:
            problems.append(f"room {a.room}: no area_m2 for the per-m² scheme {code}")
            continue
        part = prorate and days < pdays
        ck = (None if per_room else a.area, days if part else 0)
        hit = cache.get(ck)
        if hit is None:
            exact = amount if per_room else amount * a.area
            meta = dict(base)
            if not per_room:
                meta["area_m2"] = str(a.area)
            if part:
                exact = exact * days / pdays
                meta.update(days=days, period_days=pdays)
            hit = cache[ck] = (to_fen(exact), meta)
        fen, meta = hit
        if fen <= 0:
            continue
        items.append({"site_id": site_id, "account_id": a.id, "kind": "charge", "source_id": scheme_id,
                      "code": code, "name": name, "period": pkey, "period_start": pstart, "period_end": pend,
                      "amount_fen": fen, "mode": "bill" if bill or a.postpaid or a.closed else "deduct",
                      "key": f"charge:{scheme_id}:{a.id}:{pkey}", "revenue_code": revenue, "meta": meta})
    return Computed(items, problems, period)


def _scope_test(scope: Any):
    """None for "all", else a test of an ``AccountRow``."""
    if scope == "all":
        return None
    (what, names), = scope.items()
    if what == "buildings":
        buildings = set(names)
        return lambda a: a.building in buildings
    if what == "rooms":
        rooms = set(names)
        return lambda a: a.room in rooms
    floors = {(b, f) for b, f in names}
    return lambda a: (a.building, a.floor) in floors


def item_row(*, site_id: int, account_id: int, kind: str, source_id: int, code: str, name: str, period: Period,
             amount_fen: int, mode: str, key: str, revenue_code: str, meta: dict) -> dict:
    return {"site_id": site_id, "account_id": account_id, "kind": kind, "source_id": source_id, "code": code,
            "name": name, "period": period.key, "period_start": period.start, "period_end": period.end,
            "amount_fen": amount_fen, "mode": mode, "key": key, "revenue_code": revenue_code, "meta": meta}
