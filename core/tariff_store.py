"""Store tariff plans and their dated versions (the engine in core.tariffs validates them)."""
from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import NotFound, ValidationError
from core.models import TariffPlan, TariffVersion
from core.tariffs import parse_plan

EPOCH = date(2000, 1, 1)


def add_plan(session: Session, name: str, spec: dict, *, effective_from: date | None = None) -> tuple[TariffPlan, bool]:
    """Create plan ``name`` or add a version to it. Same spec and date again: nothing changes.

    Returns (plan, changed).
    """
    name = (name or "").strip()
    if not name:
        raise ValidationError("tariff name must not be empty", field="name")
    parsed = parse_plan(spec)
    effective_from = effective_from or EPOCH
    plan = session.scalar(select(TariffPlan).where(TariffPlan.name == name))
    if plan is None:
        plan = TariffPlan(name=name, kind=parsed.kind, unit=parsed.unit)
        session.add(plan)
        session.flush()
    elif plan.unit != parsed.unit:
        raise ValidationError(f"unit: plan {name!r} is priced in {plan.unit}, not {parsed.unit}", field="unit")
    version = session.scalar(select(TariffVersion).where(TariffVersion.plan_id == plan.id,
                                                         TariffVersion.effective_from == effective_from))
    if version is not None:
        if version.spec == spec:
            return plan, False
        version.spec = spec
    else:
        session.add(TariffVersion(plan_id=plan.id, effective_from=effective_from, spec=spec))
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
