"""电户开户: open an account at a room (one or several meters, tariff, alarm levels, opening
balance), fill the form from a preset, save a preset, and import a whole spreadsheet."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from flask import flash, redirect, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from admin import room_data as rd
from admin.web import actor, bp, db, new_op, render, require_write, site_or_404
from core.alarms.status import DEFAULT_ALARM_LEVELS
from core.errors import MeterpayError, NotFound, ValidationError
from core.ledger.money import parse_yuan
from core.models import Account, Gateway, Room, TariffPlan
from core.models.meter import METER_KINDS
from core.models.tenant import BILLING_MODES
from core.sites import accounts
from core.tariffs.store import plans_at

METER_ROWS = 3
PROFILES = ("acrel-ddsy1352", "acrel-dtsy1352", "dlt645-2007", "cjt188-water")


def known_profiles() -> dict[str, str]:
    """Meter profile name -> meter kind, from the hardware registry (the importer checks rows with it)."""
    from hardware import profiles
    return {name: profiles.get(name).kind for name in profiles.names()}


def _form_context(site, form=None, **extra):
    session = db()
    vacant = list(session.scalars(
        select(Room.number).where(Room.site_id == site.id,
                                  ~select(Account.id).where(Account.room_id == Room.id,
                                                            Account.status == "open").exists())
        .order_by(Room.number)))
    plan_names = dict(session.execute(select(TariffPlan.id, TariffPlan.name)).all())
    gateways = list(session.scalars(select(Gateway.name).where(Gateway.site_id == site.id).order_by(Gateway.name)))
    # The site's plans and the templates, per unit: an electricity plan and a water plan.
    tariffs = [(p.name, p.site_id is None) for p in plans_at(session, site.id, unit="kWh")]
    water_tariffs = [(p.name, p.site_id is None) for p in plans_at(session, site.id, unit="m3")]
    return dict(site=site, form=form or {}, vacant=vacant, tariffs=tariffs, water_tariffs=water_tariffs,
                plan_names=plan_names,
                presets=rd.presets_for(session, site), gateways=gateways, billing_modes=BILLING_MODES,
                meter_kinds=METER_KINDS,
                profiles=PROFILES, meter_rows=METER_ROWS, default_levels=DEFAULT_ALARM_LEVELS, op=new_op(),
                **extra)


@bp.get("/sites/<int:site_id>/accounts/new")
def open_account_form(site_id: int):
    site = site_or_404(site_id)
    form = {}
    room_id = request.args.get("room", type=int)
    if room_id:
        room = db().get(Room, room_id)
        if room is not None and room.site_id == site.id:
            form["room"] = room.number
    return render("open_account.html", **_form_context(site, form))


def _levels(form) -> list | None:
    levels = []
    for i in range(3):
        text = (form.get(f"level{i + 1}") or "").strip()
        if text:
            fen = parse_yuan(text, field=f"level{i + 1}", allow_zero=True, allow_negative=True)
            d = DEFAULT_ALARM_LEVELS[i]
            levels.append({"amount_fen": fen, "times": d["times"], "every_minutes": d["every_minutes"]})
    amounts = [lv["amount_fen"] for lv in levels]
    if amounts != sorted(amounts, reverse=True) or len(set(amounts)) != len(amounts):
        raise ValidationError(_("报警金额须从一级到三级递减。"),
                              field="alarm_levels")
    return levels or None


def _meters(form) -> tuple[accounts.MeterSpec, ...]:
    specs = []
    for i in range(METER_ROWS):
        serial = (form.get(f"meter{i}_serial") or "").strip()
        if not serial:
            continue
        specs.append(accounts.MeterSpec(
            serial=serial, kind=form.get(f"meter{i}_kind") or "electricity",
            profile=form.get(f"meter{i}_profile") or "acrel-ddsy1352",
            gateway=(form.get(f"meter{i}_gateway") or "").strip() or None,
            address=(form.get(f"meter{i}_address") or "1").strip()))
    return tuple(specs)


def _tariffs(form) -> dict[str, str]:
    """The plans chosen per utility: ``tariff`` (electricity) and ``water_tariff``."""
    chosen = {"electricity": (form.get("tariff") or "").strip(), "water": (form.get("water_tariff") or "").strip()}
    return {u: name for u, name in chosen.items() if name}


@bp.post("/sites/<int:site_id>/accounts/new")
def open_account_submit(site_id: int):
    site = site_or_404(site_id)
    require_write(site.id)
    form = request.form
    session = db()
    try:
        number = (form.get("room") or "").strip()
        room = session.scalar(select(Room).where(Room.site_id == site.id, Room.number == number))
        if room is None:
            raise NotFound(_("没有房间 %(room)s", room=repr(number)), field="room")
        opening = (form.get("opening_balance") or "").strip()
        levels = _levels(form)
        preset = (form.get("preset") or "").strip() or None
        meters = _meters(form)
        chosen = _tariffs(form)
        # A plan is set for the utilities the form has meters of (a preset fills in both selects).
        kinds = {m.kind for m in meters}
        account = accounts.open_account(session, accounts.OpenAccountRequest(
            room_id=room.id, tenant_name=form.get("tenant", ""), tenant_phone=form.get("phone", ""),
            meters=meters, tariffs={u: name for u, name in chosen.items() if u in kinds},
            billing_mode=form.get("billing_mode") or None,
            opening_balance_fen=parse_yuan(opening, field="opening_balance", allow_zero=True) if opening else None,
            alarm_levels=levels, preset=preset), actor=actor(), front="admin")
        save_as = (form.get("save_preset") or "").strip()
        if save_as:
            accounts.save_preset(session, save_as, tariffs=chosen,
                                 billing_mode=account.billing_mode, alarm_levels=levels,
                                 opening_balance_fen=parse_yuan(opening, allow_zero=True) if opening else 0,
                                 site_id=site.id)
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        return render("open_account.html", exc.http_status, error=exc.message,
                      **_form_context(site, dict(form)))
    flash(_("已为 %(room)s 开户", room=room.number), "ok")
    return redirect(url_for("admin.room", room_id=room.id), code=303)


@bp.route("/sites/<int:site_id>/import", methods=["GET", "POST"])
def import_sheet(site_id: int):
    site = site_or_404(site_id)
    if request.method == "GET":
        return render("import.html", site=site, report=None)
    require_write(site.id)
    upload = request.files.get("file")
    suffix = Path(upload.filename or "").suffix.lower() if upload else ""
    if upload is None or not upload.filename:
        return render("import.html", 400, site=site, report=None, error=_("请选择文件。"))
    if suffix not in (".csv", ".xlsx"):
        return render("import.html", 400, site=site, report=None,
                      error=_("请上传 .csv 或 .xlsx 文件。"))
    from core.sites.importer import import_file
    fd, path = tempfile.mkstemp(suffix=suffix, prefix="meterpay-import-")
    os.close(fd)
    session = db()
    try:
        upload.save(path)
        report = import_file(session, site.name, path, actor=actor(), front="admin", create_site=False,
                             profiles=known_profiles())
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        return render("import.html", exc.http_status, site=site, report=None, error=exc.message)
    finally:
        os.unlink(path)
    return render("import.html", 200 if report.ok else 422, site=site, report=report, filename=upload.filename)


@bp.get("/import-template.csv")
def import_template():
    """A sheet to fill in: the import's header and two example rows (one account with two meters)."""
    from flask import Response

    from core.sites.importer import COLUMNS
    rows = [",".join(COLUMNS),
            "1号楼,1,101,45,王记便利店,13800000001,E0001,electricity,acrel-ddsy1352,,1,商业电价,"
            "prepaid-platform,200",
            "1号楼,1,101,45,王记便利店,13800000001,W0001,water,cjt188-water,,00000000000001,"
            "商业水价,prepaid-platform,200"]
    body = "\ufeff" + "\r\n".join(rows) + "\r\n"  # BOM: Excel opens it as UTF-8
    return Response(body, mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=meterpay-import-template.csv"})
