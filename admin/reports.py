"""报表: 用电综合报表 (per shop for a month, TOU split and fees; 用水 too), 能耗同比 (year on year by
room, building or site) and 能耗日月年报表 (one meter by day, month or year, gaps and anomalies
marked). Each page renders its table, draws its chart from the JSON under ``/admin/api`` and exports
.xlsx; the numbers are ``core.reports.energy`` (the same as ``meterpay report``)."""
from __future__ import annotations

from flask import abort, g, jsonify, request
from sqlalchemy import select

from admin.finance import today, xlsx_response
from admin.web import bp, db, render, site_or_404, visible_sites
from core.errors import MeterpayError
from core.models import Meter
from core.reports import base, energy, export

# --- 用电综合报表 ------------------------------------------------------------------------------


def _energy(site):
    period = request.args.get("period") or today(site).strftime("%Y-%m")
    utility = request.args.get("utility") or "electricity"
    building = request.args.get("building") or None
    floor = request.args.get("floor") or None
    report = energy.energy(db(), site, period, utility=utility, building=building, floor=floor)
    return report, {"period": period, "utility": utility, "building": building or "", "floor": floor or ""}


@bp.get("/sites/<int:site_id>/reports/energy")
def reports_energy(site_id: int):
    site = site_or_404(site_id)
    try:
        report, args = _energy(site)
        error = None
    except MeterpayError as exc:
        report, error = None, exc.message
        args = {k: request.args.get(k, "") for k in ("period", "utility", "building", "floor")}
    places = base.places(db(), site.id).values()
    buildings = sorted({p[0] for p in places}, key=base.natural)
    floors = sorted({p[1] for p in places if not args.get("building") or p[0] == args["building"]}, key=base.natural)
    return render("reports_energy.html", site=site, sites=visible_sites(), report=report, args=args, error=error,
                  buildings=buildings, floors=floors)


@bp.get("/api/sites/<int:site_id>/energy")
def api_energy(site_id: int):
    report, _args = _energy(site_or_404(site_id))
    return jsonify(report.as_json())


@bp.get("/sites/<int:site_id>/reports/energy.xlsx")
def reports_energy_xlsx(site_id: int):
    report, args = _energy(site_or_404(site_id))
    return xlsx_response(export.energy_xlsx, report, f"energy-{args['utility']}-{args['period']}.xlsx")


# --- 能耗同比 ---------------------------------------------------------------------------------

def _yoy(site):
    year = request.args.get("year") or str(today(site).year)
    by = request.args.get("by") or "room"
    utility = request.args.get("utility") or "electricity"
    return energy.yoy(db(), site, year, by=by, utility=utility), {"year": year, "by": by, "utility": utility}


@bp.get("/sites/<int:site_id>/reports/yoy")
def reports_yoy(site_id: int):
    site = site_or_404(site_id)
    try:
        report, args = _yoy(site)
        error = None
    except MeterpayError as exc:
        report, error = None, exc.message
        args = {k: request.args.get(k, "") for k in ("year", "by", "utility")}
    keys = list(dict.fromkeys(r["key"] for r in report.rows)) if report else []
    return render("reports_yoy.html", site=site, sites=visible_sites(), report=report, args=args, error=error,
                  keys=keys)


@bp.get("/api/sites/<int:site_id>/yoy")
def api_yoy(site_id: int):
    report, _args = _yoy(site_or_404(site_id))
    return jsonify(report.as_json())


@bp.get("/sites/<int:site_id>/reports/yoy.xlsx")
def reports_yoy_xlsx(site_id: int):
    report, args = _yoy(site_or_404(site_id))
    return xlsx_response(export.yoy_xlsx, report, f"yoy-{args['by']}-{args['year']}.xlsx")


# --- 能耗日月年报表 ----------------------------------------------------------------------------

def _meter_of(site, serial: str | None) -> Meter:
    meter = base.meter_serial(db(), serial)
    if meter.site_id != site.id or (g.site_ids is not None and meter.site_id not in g.site_ids):
        abort(404)
    return meter


def _meter(site):
    by = request.args.get("by") or "day"
    t = today(site)
    period = request.args.get("period") or (t.strftime("%Y-%m") if by == "day" else str(t.year))
    meter = _meter_of(site, request.args.get("meter"))
    return energy.meter_report(db(), meter, by, period), {"meter": meter.serial, "by": by, "period": period}


@bp.get("/sites/<int:site_id>/reports/meter")
def reports_meter(site_id: int):
    site = site_or_404(site_id)
    serials = list(db().scalars(select(Meter.serial).where(Meter.site_id == site.id).order_by(Meter.serial)))
    report, error = None, None
    args = {k: request.args.get(k, "") for k in ("meter", "by", "period")}
    if args["meter"] or not serials:
        try:
            report, args = _meter(site)
        except MeterpayError as exc:
            error = exc.message
    elif serials:
        args["meter"] = serials[0]
        report, args = _meter_for(site, serials[0])
    return render("reports_meter.html", site=site, sites=visible_sites(), report=report, args=args, error=error,
                  serials=serials)


def _meter_for(site, serial: str):
    t = today(site)
    return energy.meter_report(db(), _meter_of(site, serial), "day", t.strftime("%Y-%m")), {
        "meter": serial, "by": "day", "period": t.strftime("%Y-%m")}


@bp.get("/api/sites/<int:site_id>/meter-report")
def api_meter(site_id: int):
    report, _args = _meter(site_or_404(site_id))
    return jsonify(report.as_json())


@bp.get("/sites/<int:site_id>/reports/meter.xlsx")
def reports_meter_xlsx(site_id: int):
    report, args = _meter(site_or_404(site_id))
    return xlsx_response(export.meter_xlsx, report, f"meter-{args['meter']}-{args['period']}.xlsx")
