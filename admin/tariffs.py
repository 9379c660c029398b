"""Tariffs: list plans, create a plan or a new dated version of one, copy a template into a site,
and preview what a plan charges for some usage (the tariff engine's ``quote``, the same one
``meterpay tariff quote`` uses).

A plan belongs to a site or is a shared template. A manager sees the templates and the plans of
the sites they see; they edit a site's plans when they are an admin there, the templates when they
are an admin of all sites (``core.tariffs.store.can_edit_plans``); another site's plan is a 404."""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta

from flask import abort, flash, g, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from admin.web import actor, bp, db, render, site_or_404, visible_sites
from core.config import get_settings
from core.errors import MeterpayError, ValidationError
from core.models import Site, TariffPlan
from core.tariffs.store import add_plan, can_edit_plans, copy_plan, versions

EXAMPLES = {
    "flat": {"kind": "flat", "unit": "kWh", "price": "1.0"},
    "tiered": {"kind": "tiered", "unit": "kWh", "cycle": "month",
               "tiers": [{"upto": "240", "price": "0.4883"}, {"upto": "400", "price": "0.5383"},
                         {"upto": None, "price": "0.7883"}]},
    "tou": {"kind": "tou", "unit": "kWh",
            "prices": {"peak": "1.02", "flat": "0.6", "valley": "0.228"},
            "day_tables": {"normal": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"], ["12:00", "flat"],
                                      ["14:00", "peak"], ["19:00", "flat"]]},
            "default_table": "normal"},
}


def _may_edit(site_id: int | None) -> bool:
    return can_edit_plans(db(), g.manager.id, site_id)


def _editable_sites() -> list[Site]:
    return [s for s in visible_sites() if _may_edit(s.id)]


def _plans():
    """(plan, versions, site name or None, editable) for the templates and the visible sites' plans."""
    session = db()
    q = select(TariffPlan, Site.name).outerjoin(Site, Site.id == TariffPlan.site_id)
    if g.site_ids is not None:
        q = q.where(TariffPlan.site_id.is_(None) | TariffPlan.site_id.in_(g.site_ids or [-1]))
    rows = session.execute(q.order_by(Site.name.is_not(None), Site.name, TariffPlan.name)).all()
    editable: dict[int | None, bool] = {}
    out = []
    for plan, site_name in rows:
        if plan.site_id not in editable:
            editable[plan.site_id] = _may_edit(plan.site_id)
        out.append((plan, versions(session, plan.id), site_name, editable[plan.site_id]))
    return out


@bp.get("/tariffs")
def tariffs():
    sites = _editable_sites()
    return render("tariffs.html", plans=_plans(), copy_sites=sites,
                  can_create=bool(sites) or _may_edit(None))


def _editor(status=200, **ctx):
    ctx.setdefault("examples", {k: json.dumps(v, ensure_ascii=False, indent=2) for k, v in EXAMPLES.items()})
    ctx.setdefault("form", {})
    ctx.setdefault("sites", _editable_sites())
    ctx.setdefault("can_template", _may_edit(None))
    return render("tariff_edit.html", status, **ctx)


def _site_arg(value: str | None) -> int | None:
    """A form's or query's ``site_id``: "" is a template; a site the manager cannot see is a 404."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        site_id = int(value)
    except ValueError:
        abort(404)
    return site_or_404(site_id).id


@bp.get("/tariffs/new")
def tariff_new():
    site_id = _site_arg(request.args.get("site_id"))
    name = request.args.get("name", "")
    if name and not _may_edit(site_id):
        abort(403)
    if not name and not (_editable_sites() or _may_edit(None)):
        abort(403)
    today = date.today()
    first = today.replace(day=1)
    form = {"name": name, "site_id": "" if site_id is None else str(site_id), "effective_from": today.isoformat(),
            "start": first.isoformat(), "end": (first + timedelta(days=32)).replace(day=1).isoformat(),
            "spec": json.dumps(EXAMPLES["flat"], ensure_ascii=False, indent=2)}
    if name:
        where = TariffPlan.site_id.is_(None) if site_id is None else TariffPlan.site_id == site_id
        plan = db().scalar(select(TariffPlan).where(where, TariffPlan.name == name))
        if plan is None:
            abort(404)
        latest = versions(db(), plan.id)[-1]
        form["spec"] = json.dumps(latest.spec, ensure_ascii=False, indent=2)
    return _editor(form=form, fixed=bool(name))


def _spec(text: str) -> dict:
    try:
        spec = json.loads(text or "")
    except json.JSONDecodeError as exc:
        raise ValidationError(_("方案不是合法的 JSON：第 %(line)s 行 %(msg)s", line=exc.lineno, msg=exc.msg),
                              field="spec") from None
    if not isinstance(spec, dict):
        raise ValidationError(_("方案须是 JSON 对象。"), field="spec")
    return spec


def _date(text: str, field: str) -> date:
    try:
        return date.fromisoformat((text or "").strip())
    except ValueError:
        raise ValidationError(_("%(field)s：日期格式应为 2026-01-31", field=field), field=field) from None


@bp.post("/tariffs")
def tariff_save():
    form = request.form
    site_id = _site_arg(form.get("site_id"))
    session = db()
    try:
        plan, changed = add_plan(session, form.get("name", ""), _spec(form.get("spec", "")), site_id=site_id,
                                 manager_id=g.manager.id,
                                 effective_from=_date(form.get("effective_from", ""), "effective_from"))
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        return _editor(exc.http_status, form=dict(form), error=exc.message)
    flash(_("电价方案 %(name)s 已保存", name=plan.name) if changed else _("没有变化"), "ok")
    return redirect(url_for("admin.tariffs"), code=303)


@bp.post("/tariffs/<int:plan_id>/copy")
def tariff_copy(plan_id: int):
    """Copy a template into a site the manager edits plans of (same name, every version)."""
    session = db()
    template = session.get(TariffPlan, plan_id)
    if template is None or template.site_id is not None:
        abort(404)
    site_id = _site_arg(request.form.get("site_id"))
    if site_id is None:
        abort(404)
    if not _may_edit(site_id):
        abort(403)
    try:
        plan = copy_plan(session, template, site_id, actor=actor(), front="admin")
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        flash(exc.message, "err")
        return redirect(url_for("admin.tariffs"), code=303)
    site = session.get(Site, site_id)
    flash(_("已将模板 %(name)s 复制到 %(site)s", name=plan.name, site=site.name if site else ""), "ok")
    return redirect(url_for("admin.tariffs"), code=303)


def usage_spec(start: date, end: date, total: str, periods: dict[str, str], tz: str) -> dict:
    """Two readings, at local midnight of ``start`` and of ``end``, ``total`` apart."""
    from core.tariffs.zones import zone
    z = zone(tz)
    first = {"at": datetime.combine(start, time.min, tzinfo=z).isoformat(), "total": "0"}
    last = {"at": datetime.combine(end, time.min, tzinfo=z).isoformat(), "total": total}
    if periods:
        first["periods"] = {p: "0" for p in periods}
        last["periods"] = dict(periods)
    return {"readings": [first, last]}


@bp.post("/tariffs/preview")
def tariff_preview():
    """Price some usage with the plan in the editor; answers an HTML fragment (htmx) or JSON."""
    from core.tariffs import PERIODS, quote
    from core.tariffs.zones import zone
    form = request.form
    try:
        spec = _spec(form.get("spec", ""))
        start = _date(form.get("start", ""), "start")
        end = _date(form.get("end", ""), "end")
        if end <= start:
            raise ValidationError(_("结束日期须晚于开始日期。"), field="end")
        periods = {p: form.get(f"usage_{p}", "").strip() for p in PERIODS if form.get(f"usage_{p}", "").strip()}
        total = (form.get("usage") or "").strip()
        result = quote(spec, usage_spec(start, end, total, periods, get_settings().timezone),
                       tz=zone(get_settings().timezone))
    except MeterpayError as exc:
        if request.headers.get("HX-Request"):
            return render("_quote.html", 200, error=exc.message)
        return {"code": exc.code, "message": exc.message}, exc.http_status
    if request.headers.get("HX-Request"):
        return render("_quote.html", quote=result)
    return result
