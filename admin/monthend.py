"""月末结算: a site's charge schemes (自定义收费方案), apportionment rules (公共区域分摊) with the
common-area meters' own plans, and the month-end preview and run. Each page calls one core service
(``core.monthend.schemes``, ``core.monthend.rules``, ``core.monthend.run``), the same as
``meterpay charges|apportion|month-end``."""
from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from admin.web import actor, bp, can_write, db, render, require_write, site_or_404
from core.errors import MeterpayError, ValidationError
from core.models import Meter, MonthEndStep, Room, TariffPlan
from core.monthend import periods, rules, schemes
from core.monthend.run import run_month_end
from core.reports.rollups import zone
from core.tariffs.store import plans_at

SCHEME_EXAMPLE = {"name": "物业费", "code": "property", "basis": "per_m2", "amount": "2.5", "every": "month",
                  "day": 1, "mode": "deduct", "prorate": "days", "start": "2026-01-01", "scope": "all"}


def _spec(text: str) -> object:
    try:
        return json.loads(text or "", parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise ValidationError(_("不是合法的 JSON：第 %(line)s 行 %(msg)s", line=exc.lineno, msg=exc.msg),
                              field="spec") from None


def _last_month(site) -> str:
    return periods.previous_month(datetime.now(zone(site.timezone)).date())


# --- 收费方案 -----------------------------------------------------------------------------------

@bp.get("/sites/<int:site_id>/charges")
def charges(site_id: int, status: int = 200, error: str | None = None, text: str | None = None):
    site = site_or_404(site_id)
    return render("charges.html", status, site=site, schemes=schemes.list_schemes(db(), site.id),
                  writable=can_write(site.id), error=error,
                  text=text or json.dumps(SCHEME_EXAMPLE, ensure_ascii=False, indent=2))


@bp.post("/sites/<int:site_id>/charges")
def charges_add(site_id: int):
    site = site_or_404(site_id)
    require_write(site.id)
    text = request.form.get("spec", "")
    try:
        scheme = schemes.add_scheme(db(), site.id, _spec(text), actor=actor(), front="admin")
        db().commit()
    except MeterpayError as exc:
        db().rollback()
        return charges(site_id, 400, exc.message, text)
    flash(_("已保存收费方案 %(name)s。", name=scheme.name), "ok")
    return redirect(url_for("admin.charges", site_id=site.id))


@bp.post("/sites/<int:site_id>/charges/<int:scheme_id>/active")
def charges_active(site_id: int, scheme_id: int):
    site = site_or_404(site_id)
    require_write(site.id)
    schemes.set_active(db(), scheme_id, site.id, request.form.get("active") == "1", actor=actor(), front="admin")
    db().commit()
    return redirect(url_for("admin.charges", site_id=site.id))


# --- 公摊规则 -----------------------------------------------------------------------------------

def _masters(site_id: int):
    """The site's meters on no account (common areas), with their room and own plan."""
    return db().execute(select(Meter, Room.number, TariffPlan.name)
                        .outerjoin(Room, Room.id == Meter.room_id)
                        .outerjoin(TariffPlan, TariffPlan.id == Meter.tariff_plan_id)
                        .where(Meter.site_id == site_id, Meter.account_id.is_(None), Meter.status == "active")
                        .order_by(Meter.serial)).all()


@bp.get("/sites/<int:site_id>/apportion")
def apportion(site_id: int, status: int = 200, error: str | None = None, text: str | None = None):
    site = site_or_404(site_id)
    masters = _masters(site.id)
    example = {"name": "公区电", "master": masters[0][0].serial if masters else "EM-COMMON", "basis": "area",
               "accounts": ["101", "102"], "mode": "deduct"}
    return render("apportion.html", status, site=site, rules=rules.list_rules(db(), site.id), masters=masters,
                  plans=plans_at(db(), site.id), writable=can_write(site.id), error=error,
                  text=text or json.dumps(example, ensure_ascii=False, indent=2))


@bp.post("/sites/<int:site_id>/apportion")
def apportion_add(site_id: int):
    site = site_or_404(site_id)
    require_write(site.id)
    text = request.form.get("spec", "")
    try:
        rule = rules.add_rule(db(), site.id, _spec(text), actor=actor(), front="admin")
        db().commit()
    except MeterpayError as exc:
        db().rollback()
        return apportion(site_id, 400, exc.message, text)
    flash(_("已保存公摊规则 %(name)s。", name=rule.name), "ok")
    return redirect(url_for("admin.apportion", site_id=site.id))


@bp.post("/sites/<int:site_id>/apportion/master")
def apportion_master(site_id: int):
    site = site_or_404(site_id)
    require_write(site.id)
    try:
        rules.set_master_plan(db(), site.id, request.form.get("meter", ""), request.form.get("tariff") or None,
                              actor=actor(), front="admin")
        db().commit()
    except MeterpayError as exc:
        db().rollback()
        return apportion(site_id, 400, exc.message)
    flash(_("已设置公区表的电价方案。"), "ok")
    return redirect(url_for("admin.apportion", site_id=site.id))


# --- 月末结算 -----------------------------------------------------------------------------------

@bp.get("/sites/<int:site_id>/month-end")
def month_end(site_id: int):
    site = site_or_404(site_id)
    period = request.args.get("period") or _last_month(site)
    result, error = None, None
    try:
        result = run_month_end(site.id, period, preview=True, actor=actor(), front="admin")
    except MeterpayError as exc:
        error = exc.message
    steps = list(db().scalars(select(MonthEndStep).where(MonthEndStep.site_id == site.id,
                                                         MonthEndStep.period == period)
                              .order_by(MonthEndStep.id))) if not error else []
    return render("month_end.html", 400 if error else 200, site=site, period=period, result=result, error=error,
                  steps=steps, done=any(s.step == "done" for s in steps), writable=can_write(site.id),
                  lines=(result.lines[:500] if result else []))


@bp.post("/sites/<int:site_id>/month-end")
def month_end_run(site_id: int):
    site = site_or_404(site_id)
    require_write(site.id)
    period = request.form.get("period", "")
    try:
        result = run_month_end(site.id, period, actor=actor(), front="admin", with_lines=False)
    except MeterpayError as exc:
        flash(exc.message, "err")
        return redirect(url_for("admin.month_end", site_id=site.id))
    flash(_("月末结算 %(period)s 已完成：本次记账 %(n)s 笔，账单 %(bills)s 张，问题 %(p)s 个。", period=period,
            n=result.entries, bills=result.bills, p=len(result.problems)), "ok")
    return redirect(url_for("admin.month_end", site_id=site.id, period=period))
