"""Store tariff plans and their dated versions (the engine in core.tariffs validates them)."""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, ValidationError
from core.models import TariffPlan, TariffVersion
from core.tariffs import parse_plan
from core.utils import site_tz

EPOCH = date(2000, 1, 1)


def add_plan(session: Session, name: str, spec: dict, *, effective_from: date | None = None,
             today: date | None = None) -> tuple[TariffPlan, bool]:
    """Create plan ``name`` or add a dated version to it. Returns (plan, changed).

    History is never rewritten: a version already in force (dated today or earlier) keeps its
    prices, so past usage is never repriced. A changed plan without a date applies from today;
    a future version may be replaced until it takes effect. The same spec again changes nothing.
    """
    name = (name or "").strip()
    if not name:
        raise ValidationError("tariff name must not be empty", field="name")
    parsed = parse_plan(spec)
    today = today or datetime.now(site_tz()).date()
    plan = session.scalar(select(TariffPlan).where(TariffPlan.name == name))
    if plan is None:
        plan = TariffPlan(name=name, kind=parsed.kind, unit=parsed.unit)
        session.add(plan)
        session.flush()
        session.add(TariffVersion(plan_id=plan.id, effective_from=effective_from or EPOCH, spec=spec))
        session.flush()
        return plan, True
    if plan.unit != parsed.unit:
        raise ValidationError(f"unit: plan {name!r} is priced in {plan.unit}, not {parsed.unit}", field="unit")
    if effective_from is None:
        latest = session.scalar(select(TariffVersion).where(TariffVersion.plan_id == plan.id)
                                .order_by(TariffVersion.effective_from.desc()).limit(1))
        if latest is not None and latest.spec == spec:
            return plan, False
        effective_from = today
    version = session.scalar(select(TariffVersion).where(TariffVersion.plan_id == plan.id,
                                                         TariffVersion.effective_from == effective_from))
    if version is not None:
        if version.spec == spec:
            return plan, False
        if effective_from <= today:
            raise Conflict(f"effective_from: the version of {name!r} from {effective_from.isoformat()} is already in "
                           "force and changing it would reprice past usage; add a version with a later "
                           "effective date", field="effective_from")
        version.spec = spec
    else:
        session.add(TariffVersion(plan_id=plan.id, effective_from=effective_from, spec=spec))
    latest_from = max([v.effective_from for v in versions(session, plan.id)] + [effective_from])
    if effective_from >= latest_from:
        plan.kind = parsed.kind
    session.flush()
    return plan, True


def get_plan(session: Session, name: str) -> TariffPlan:
    plan = session.scalar(select(TariffPlan).where(TariffPlan.name == name))
    if plan is None:
        raise NotFound(f"no tariff plan named {name!r}")
    return plan


def versions(session: Session, plan_id: int) -> list[TariffVersion]:
    return list(session.scalars(select(TariffVersion).where(TariffVersion.plan_id == plan_id)
                                .order_by(TariffVersion.effective_from)))
