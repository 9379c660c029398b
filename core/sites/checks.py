"""Checks a manager acts on: meters whose usage no plan prices (``meterpay sites check``).

A meter of an open account is *unpriced* when the account has no plan for the meter's utility,
or (set by hand) one of another unit: billing stores its readings and holds its cursor, so
nothing is billed at a wrong price. Assigning a plan of the right unit bills the whole gap at
once, at that plan, on the next reading (which may raise a balance alarm or cut supply).
"""
from __future__ import annotations

from sqlalchemy import case, or_, select
from sqlalchemy.orm import Session, aliased

from core.models import Account, Meter, MeterBillingState, MeterEvent, Room, Site, TariffPlan
from core.models.meter import UTILITY_UNIT


def unpriced_meters(session: Session, site_id: int | None = None) -> list[dict]:
    """Active meters of open accounts with no plan of their utility's unit, by site and room:
    ``{"site", "room", "serial", "utility", "account_id", "reason", "waiting_since"}``
    (``waiting_since``: the last billed reading, the point billing resumes from)."""
    plan = aliased(TariffPlan)
    plan_id = case((Meter.kind == "water", Account.water_plan_id), else_=Account.electricity_plan_id)
    unit = case(*[(Meter.kind == k, u) for k, u in UTILITY_UNIT.items()], else_="")
    q = (select(Meter.id, Meter.serial, Meter.kind, Account.id.label("account_id"), Room.number, Site.name,
                plan.name.label("plan"), plan.unit, MeterBillingState.last_taken_at)
         .join(Account, Account.id == Meter.account_id).join(Room, Room.id == Account.room_id)
         .join(Site, Site.id == Account.site_id)
         .outerjoin(plan, plan.id == plan_id)
         .outerjoin(MeterBillingState, MeterBillingState.meter_id == Meter.id)
         .where(Account.status == "open", Meter.status == "active", or_(plan.id.is_(None), plan.unit != unit))
         .order_by(Site.name, Room.number, Meter.serial))
    if site_id is not None:
        q = q.where(Account.site_id == site_id)
    rows = session.execute(q).all()
    before = _mismatches(session, [r.id for r in rows])
    out = []
    for r in rows:
        need = UTILITY_UNIT.get(r.kind, "?")
        if r.plan is not None:
            reason = f"its {r.kind} plan {r.plan!r} is priced in {r.unit}, not {need}"
        else:
            reason = f"no {r.kind} plan"
            old = before.get(r.id)
            if old:
                reason += f" (it was priced with {old.get('plan')!r} in {old.get('unit')} until {old.get('by')})"
        out.append({"site": r.name, "room": r.number, "serial": r.serial, "utility": r.kind,
                    "account_id": r.account_id, "reason": reason,
                    "waiting_since": r.last_taken_at})
    return out


def _mismatches(session: Session, meter_ids: list[int]) -> dict[int, dict]:
    """The latest ``tariff_unit_mismatch`` event detail of each meter (migration 0004 wrote them)."""
    if not meter_ids:
        return {}
    found: dict[int, dict] = {}
    for mid, detail in session.execute(select(MeterEvent.meter_id, MeterEvent.detail)
                                       .where(MeterEvent.kind == "tariff_unit_mismatch",
                                              MeterEvent.meter_id.in_(meter_ids))
                                       .order_by(MeterEvent.at, MeterEvent.id)):
        found[mid] = detail or {}
    return found
