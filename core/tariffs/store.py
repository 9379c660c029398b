"""Store tariff plans and their dated versions (the engine in core.tariffs validates them).

Plans belong to a site (``site_id``) or are shared templates (``site_id`` NULL). A site's accounts
use only the site's plans: naming a template at a site copies it into the site once (same name,
every version, audit ``copy_tariff_template``), and later versions of the template never reach
the copy. A site plan is edited by an ``admin`` at that site; a template by an all-sites admin
(``can_edit_plans``). Every assignment of a plan to a meter's utility goes through ``plan_for``
(or ``plan_for_id``), which refuses a plan of the wrong unit: a kWh plan never prices water.
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from core import audit
from core.db import insert_if_absent, utcnow
from core.errors import Conflict, Forbidden, NotFound, ValidationError
from core.models import ManagerRole, Site, TariffPlan, TariffVersion
from core.models.meter import UTILITY_UNIT
from core.tariffs import parse_plan
from core.tariffs.engine import Version, version_at
from core.tariffs.quote import price_text
from core.utils import site_tz

EPOCH = date(2000, 1, 1)
UNIT_UTILITY = {unit: utility for utility, unit in UTILITY_UNIT.items()}


def add_plan(session: Session, name: str, spec: dict, *, site_id: int | None = None, manager_id: int | None = None,
             effective_from: date | None = None, today: date | None = None) -> tuple[TariffPlan, bool]:
    """Create plan ``name`` of site ``site_id`` (None: a template) or add a dated version to it.
    Returns (plan, changed). With ``manager_id``, raises ``Forbidden`` unless that manager may
    edit the plans there (``can_edit_plans``); without, the caller is the operator (CLI, seeding).

    History is never rewritten: a version already in force (dated today or earlier) keeps its
    prices, so past usage is never repriced. A changed plan without a date applies from today;
    a future version may be replaced until it takes effect. The same spec again changes nothing.
    """
    name = (name or "").strip()
    if not name:
        raise ValidationError("tariff name must not be empty", field="name")
    if site_id is not None and session.get(Site, site_id) is None:
        raise NotFound(f"no site {site_id}", field="site")
    if manager_id is not None and not can_edit_plans(session, manager_id, site_id):
        raise Forbidden("not allowed to edit " + ("the shared tariff templates" if site_id is None
                                                  else "the tariff plans of this site"), field="site")
    parsed = parse_plan(spec)
    today = today or datetime.now(site_tz()).date()
    plan = _named(session, name, site_id)
    if plan is None:
        plan = TariffPlan(site_id=site_id, name=name, kind=parsed.kind, unit=parsed.unit)
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


def can_edit_plans(session: Session, manager_id: int, site_id: int | None) -> bool:
    """May this manager add or change plans of site ``site_id`` (None: the shared templates)?

    A template: only an ``admin`` of all sites. A site's plan: the manager's role at that site
    (a role for the site itself first, else an all-sites role) is ``admin``."""
    roles = list(session.scalars(select(ManagerRole).where(ManagerRole.manager_id == manager_id)))
    if site_id is None:
        return any(r.site_id is None and r.role == "admin" for r in roles)
    for r in roles:
        if r.site_id == site_id:
            return r.role == "admin"
    return any(r.site_id is None and r.role == "admin" for r in roles)


def _named(session: Session, name: str, site_id: int | None) -> TariffPlan | None:
    where = TariffPlan.site_id.is_(None) if site_id is None else TariffPlan.site_id == site_id
    return session.scalars(select(TariffPlan).where(where, TariffPlan.name == name)
                           .order_by(TariffPlan.id).limit(1)).first()


def check_unit(plan: TariffPlan, utility: str, *, name: str | None = None) -> TariffPlan:
    """``plan`` if it may price meters of ``utility``; else a ValidationError on field ``tariff``."""
    if utility not in UTILITY_UNIT:
        raise ValidationError(f"utility: must be one of {', '.join(UTILITY_UNIT)} (got {utility!r})",
                              field="utility")
    need = UTILITY_UNIT[utility]
    if plan.unit != need:
        raise ValidationError(f"tariff: {name or plan.name!r} is priced in {plan.unit}; a {utility} meter needs "
                              f"{need}", field="tariff")
    return plan


def find_plan(session: Session, name: str, site_id: int | None) -> TariffPlan:
    """The plan a site means by ``name``: its own, else the template of that name (not copied);
    ``NotFound`` when neither exists. ``site_id`` None: templates only."""
    name = (name or "").strip()
    plan = _named(session, name, site_id) if site_id is not None else None
    if plan is None:
        plan = _named(session, name, None)
    if plan is None:
        raise NotFound(f"no tariff plan named {name!r}", field="tariff")
    return plan


def utility_of(plan: TariffPlan) -> str:
    """The utility a plan can price (its unit's): ``electricity`` or ``water``."""
    if plan.unit not in UNIT_UTILITY:
        raise ValidationError(f"tariff: {plan.name!r} is priced in {plan.unit}, which prices no meter", field="tariff")
    return UNIT_UTILITY[plan.unit]


def plan_for(session: Session, name: str, *, site_id: int, utility: str, copy: bool = True,
             actor: str = "system", front: str = "system") -> TariffPlan:
    """The plan called ``name`` for meters of ``utility`` at site ``site_id``: the site's own plan
    of that name, else the template of that name, copied into the site (``copy=False``: the
    template itself, for a check that writes nothing). Raises ``NotFound`` when neither exists and
    ``ValidationError`` (field ``tariff``) when its unit does not fit the utility. The one entry
    for every assignment: opening, tariff changes, import, presets, batch tasks."""
    plan = check_unit(find_plan(session, name, site_id), utility)
    if plan.site_id is None and copy:
        plan = copy_plan(session, plan, site_id, existing_ok=True, actor=actor, front=front)
    return plan


def plan_for_id(session: Session, plan_id: int, *, site_id: int, utility: str, actor: str = "system",
                front: str = "system") -> TariffPlan:
    """``plan_for`` for a stored plan id (a preset's): a template is copied into the site (or the
    site's plan of its name is used); another site's plan is a ``Conflict``."""
    plan = session.get(TariffPlan, plan_id)
    if plan is None:
        raise NotFound(f"no tariff plan {plan_id}", field="tariff")
    if plan.site_id is None:
        return plan_for(session, plan.name, site_id=site_id, utility=utility, actor=actor, front=front)
    if plan.site_id != site_id:
        raise Conflict(f"tariff: {plan.name!r} is another site's plan", field="tariff")
    return check_unit(plan, utility)


def copy_plan(session: Session, template: TariffPlan, site_id: int, *, existing_ok: bool = False,
              actor: str = "system", front: str = "system") -> TariffPlan:
    """Copy a template into a site: same name, kind, unit and every dated version (the copy then
    lives on its own). A site already holding a plan of that name: ``Conflict``, or that plan when
    ``existing_ok`` (two openings copying at once: one copy, both use it)."""
    if template.site_id is not None:
        raise ValidationError(f"tariff: {template.name!r} is a site's plan, not a template", field="tariff")
    if session.get(Site, site_id) is None:
        raise NotFound(f"no site {site_id}", field="site")
    new_id = insert_if_absent(session, TariffPlan, site_id=site_id, name=template.name, kind=template.kind,
                              unit=template.unit, created_at=utcnow())
    if new_id is None:
        existing = _named(session, template.name, site_id)
        if not existing_ok or existing is None:
            raise Conflict(f"tariff: the site has a plan named {template.name!r} already", field="tariff")
        return existing
    for v in versions(session, template.id):
        session.add(TariffVersion(plan_id=new_id, effective_from=v.effective_from, spec=dict(v.spec)))
    audit.record(session, actor=actor, front=front, action="copy_tariff_template", site_id=site_id,
                 template_id=template.id, plan_id=new_id, plan=template.name)
    session.flush()
    plan = session.get(TariffPlan, new_id)
    assert plan is not None
    return plan


def plans_at(session: Session, site_id: int, *, unit: str | None = None) -> list[TariffPlan]:
    """What a manager may pick at a site: its plans, then the templates it has no plan of the same
    name for (picking one copies it), each sorted by name; ``unit`` keeps one unit only."""
    q = select(TariffPlan).where((TariffPlan.site_id == site_id) | TariffPlan.site_id.is_(None))
    if unit is not None:
        q = q.where(TariffPlan.unit == unit)
    rows = list(session.scalars(q.order_by(TariffPlan.name, TariffPlan.id)))
    own = {p.name for p in rows if p.site_id is not None}
    return [p for p in rows if p.site_id is not None] + [p for p in rows if p.site_id is None and p.name not in own]


_PLAN_AND_VERSIONS = (select(TariffPlan, TariffVersion)   # built once: plan_summary is on the usage hot path
                      .outerjoin(TariffVersion, TariffVersion.plan_id == TariffPlan.id)
                      .where(TariffPlan.id == bindparam("plan_id")).order_by(TariffVersion.effective_from))


def plan_summary(session: Session, plan_id: int | None, today: date | None = None) -> dict | None:
    """``{"plan", "unit", "kind", "price"}`` of the version in force ``today`` (None: no plan)."""
    if plan_id is None:
        return None
    rows = session.execute(_PLAN_AND_VERSIONS, {"plan_id": plan_id}).all()
    if not rows:
        return None
    plan = rows[0][0]
    vs = [v for _, v in rows if v is not None]   # one statement: the plan and its versions
    if not vs:
        return {"plan": plan.name, "unit": plan.unit, "kind": plan.kind, "price": ""}
    today = today or datetime.now(site_tz()).date()
    current = version_at([Version(v.effective_from, parse_plan(v.spec)) for v in vs], today).plan
    return {"plan": plan.name, "unit": plan.unit, "kind": current.kind, "price": price_text(current)}


def versions(session: Session, plan_id: int) -> list[TariffVersion]:
    return list(session.scalars(select(TariffVersion).where(TariffVersion.plan_id == plan_id)
                                .order_by(TariffVersion.effective_from)))
