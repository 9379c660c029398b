"""Tariffs: list plans, create a plan or a new dated version of one, and preview what a plan
charges for some usage (the tariff engine's ``quote``, the same one ``meterpay tariff quote`` uses)."""
from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta

from flask import abort, flash, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from admin.web import bp, db, is_admin, render
from core.config import get_settings
from core.errors import MeterpayError, ValidationError
from core.models import TariffPlan
from core.tariffs.store import add_plan, versions

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


def _plans():
    session = db()
    plans = list(session.scalars(select(TariffPlan).order_by(TariffPlan.name)))
    return [(p, versions(session, p.id)) for p in plans]


@bp.get("/tariffs")
def tariffs():
    return render("tariffs.html", plans=_plans(), can_edit=is_admin())


def _editor(status=200, **ctx):
    ctx.setdefault("examples", {k: json.dumps(v, ensure_ascii=False, indent=2) for k, v in EXAMPLES.items()})
    ctx.setdefault("form", {})
    return render("tariff_edit.html", status, **ctx)


@bp.get("/tariffs/new")
def tariff_new():
    if not is_admin():
        abort(403)
    name = request.args.get("name", "")
    today = date.today()
    first = today.replace(day=1)
    form = {"name": name, "effective_from": today.isoformat(), "start": first.isoformat(),
            "end": (first + timedelta(days=32)).replace(day=1).isoformat(),
            "spec": json.dumps(EXAMPLES["flat"], ensure_ascii=False, indent=2)}
    if name:
        plan = db().scalar(select(TariffPlan).where(TariffPlan.name == name))
        if plan is None:
            abort(404)
        latest = versions(db(), plan.id)[-1]
        form["spec"] = json.dumps(latest.spec, ensure_ascii=False, indent=2)
    return _editor(form=form)


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
    if not is_admin():
        abort(403)
    form = request.form
    session = db()
    try:
        plan, changed = add_plan(session, form.get("name", ""), _spec(form.get("spec", "")),
                                 effective_from=_date(form.get("effective_from", ""), "effective_from"))
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        return _editor(exc.http_status, form=dict(form), error=exc.message)
    flash(_("电价方案 %(name)s 已保存", name=plan.name) if changed else _("没有变化"), "ok")
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
