"""Room detail and its remote actions. Each action calls the one core service the chat commands
and batch jobs call too, under a key from the form (a double submit acts once), and lands in the
audit log through that service. Actions that move money or cut supply need ``confirm=yes``:
without it the page asks first and nothing changes."""
from __future__ import annotations

from flask import abort, flash, jsonify, redirect, request, url_for
from flask_babel import gettext as _

from admin import room_data as rd
from admin.web import actor, bp, db, new_op, op_key, render, require_write, room_or_404
from core.errors import MeterpayError, NotFound, ValidationError
from core.ledger import cashdesk
from core.ledger.money import format_fen, parse_yuan
from core.models import Meter, Site
from core.models.meter import METER_KINDS, UTILITY_UNIT
from core.sites import accounts
from core.supply import control as supply
from core.tariffs.store import find_plan, plan_summary, plans_at, utility_of


def _page_context(room):
    session = db()
    site = session.get(Site, room.site_id)
    account = rd.open_account_of(session, room)
    meters = rd.meters_of(session, room, site)
    ctx = {"room": room, "site": site, "account": account, "meters": meters,
           "commands": rd.commands_of(session, [v.meter.id for v in meters]),
           "presets": rd.presets_for(session, site), "op": new_op()}
    if account is not None:
        utilities = [k for k in METER_KINDS if any(m.kind == k and m.status == "active" for m in account.meters)]
        # Per utility: the plan and its price now, and the plans of the right unit to change to.
        ctx["plans"] = [{"utility": u, "current": plan_summary(session, account.plan_id_for(u)),
                         "choices": [(p.name, p.site_id is None) for p in plans_at(session, site.id,
                                                                                   unit=UTILITY_UNIT[u])]}
                        for u in utilities]
        balance, fee, levels, shown = rd.account_fee(session, account, site)
        ctx.update(balance=balance, fee=fee, levels=levels, shown=shown, entries=rd.entries_of(session, account),
                   cost_today=rd.cost_today_fen(session, account, site))
    return ctx


@bp.get("/rooms/<int:room_id>")
def room(room_id: int):
    return render("room.html", **_page_context(room_or_404(room_id)))


@bp.get("/rooms/<int:room_id>/usage.json")
def room_usage(room_id: int):
    room = room_or_404(room_id)
    session = db()
    site = session.get(Site, room.site_id)
    meters = [v.meter for v in rd.meters_of(session, room, site)]
    return jsonify(rd.daily_usage(session, meters, site))


@bp.get("/rooms/<int:room_id>/commands.json")
def room_commands(room_id: int):
    """The room's latest commands and meter states: the page polls it while a command is open."""
    room = room_or_404(room_id)
    session = db()
    site = session.get(Site, room.site_id)
    meters = [v.meter for v in rd.meters_of(session, room, site)]
    cmds = rd.commands_of(session, [m.id for m in meters])
    return jsonify({"open": sum(c.state in ("pending", "running") for c in cmds),
                    "commands": [{"id": c.id, "kind": c.kind, "state": c.state} for c in cmds],
                    "meters": [{"id": m.id, "online": m.online, "relay": m.relay_state, "valve": m.valve_state}
                               for m in meters]})


# --- actions ----------------------------------------------------------------------------

def _account(room):
    account = rd.open_account_of(db(), room)
    if account is None:
        raise ValidationError(_("该房间没有在用的电户。"))
    return account


def _meter(room) -> Meter:
    try:
        meter_id = int(request.form.get("meter_id", ""))
    except ValueError:
        raise ValidationError(_("请选择表计。"), field="meter_id") from None
    meter = db().get(Meter, meter_id)
    if meter is None or meter.room_id != room.id:
        raise NotFound(_("该房间没有这块表。"), field="meter_id")
    return meter


def _amount(field: str = "amount") -> int:
    return parse_yuan(request.form.get(field, ""), field=field)


def _on() -> bool:
    value = request.form.get("on", "")
    if value not in ("0", "1"):
        raise ValidationError("on: 0 or 1", field="on")
    return value == "1"


def do_recharge(room):
    acct, amount = _account(room), _amount()
    cashdesk.desk_recharge(db(), acct.id, amount, key=op_key("recharge"), actor=actor(), front="admin",
                           memo=request.form.get("memo", "").strip()[:200])
    return _("已充值 ¥%(amount)s", amount=format_fen(amount))


def do_refund(room):
    acct, amount = _account(room), _amount()
    cashdesk.refund(db(), acct.id, amount, key=op_key("refund"), actor=actor(), front="admin",
                    memo=request.form.get("memo", "").strip()[:200])
    return _("已退款 ¥%(amount)s", amount=format_fen(amount))


def do_adjust(room):
    acct = _account(room)
    amount = parse_yuan(request.form.get("amount", ""), field="amount", allow_negative=True)
    cashdesk.adjust(db(), acct.id, amount, reason=request.form.get("reason", "")[:200], key=op_key("adjust"),
                    actor=actor(), front="admin")
    return _("已调账 ¥%(amount)s", amount=format_fen(amount))


def do_close(room):
    acct = _account(room)
    settlement = request.form.get("settlement", "refund")
    # closing_<serial>: the closing reading a manager read off the meter (blank: the last poll)
    totals = {m.serial: request.form.get(f"closing_{m.serial}", "").strip() for m in acct.meters
              if m.status == "active" and request.form.get(f"closing_{m.serial}", "").strip()}
    accounts.close_account(db(), acct.id, settlement=settlement, closing_totals=totals, actor=actor(), front="admin")
    return _("%(room)s 已销户", room=room.number)


def do_trip(room):
    cmds = supply.trip(db(), _account(room).id, actor=actor(), front="admin", key=op_key("trip"))
    return _("已下发拉闸命令（%(n)s 块表），等待表计确认", n=len(cmds))


def do_restore(room):
    cmds = supply.restore(db(), _account(room).id, actor=actor(), front="admin", key=op_key("restore"))
    return _("已下发合闸命令（%(n)s 块表），等待表计确认", n=len(cmds))


def do_switch(room):
    meter, on = _meter(room), _on()
    supply.switch_meter(db(), meter.id, on, actor=actor(), front="admin", key=op_key("switch"))
    return _("已向 %(serial)s 下发命令，等待表计确认", serial=meter.serial)


def do_keep_power(room):
    on = _on()
    supply.set_keep_power(db(), _account(room).id, on, actor=actor(), front="admin")
    return _("已开启保电") if on else _("已取消保电")


def do_alarms(room):
    acct = _account(room)
    site = db().get(Site, room.site_id)
    current = rd.alarm_levels(acct.alarm_levels, site.settings)
    levels = []
    for i in range(3):
        text = request.form.get(f"level{i + 1}", "").strip()
        if not text:
            continue
        fen = parse_yuan(text, field=f"level{i + 1}", allow_zero=True, allow_negative=True)
        old = current[i] if i < len(current) else None
        levels.append({"amount_fen": fen, "times": old.times if old else 1,
                       "every_minutes": old.every_minutes if old else 0})
    supply.set_alarm_levels(db(), acct.id, levels, actor=actor(), front="admin")
    return _("报警金额已保存")


def do_tariff(room):
    name = request.form.get("tariff", "").strip()
    utility = request.form.get("utility", "").strip() or None
    if not name:
        raise ValidationError(_("请选择电价方案。"), field="tariff")
    if utility is not None and utility not in METER_KINDS:
        raise ValidationError(f"utility: {utility!r}", field="utility")
    acct = _account(room)
    utility = utility or utility_of(find_plan(db(), name, acct.site_id))
    accounts.change_tariff(db(), acct.id, name, utility=utility, actor=actor(), front="admin")
    if utility == "water":
        return _("水价已改为 %(name)s", name=name)
    return _("电价已改为 %(name)s", name=name)


ACTIONS = {
    "recharge": do_recharge, "refund": do_refund, "adjust": do_adjust, "close": do_close, "trip": do_trip,
    "restore": do_restore,
    "switch": do_switch, "keep_power": do_keep_power, "alarms": do_alarms, "tariff": do_tariff,
}


def needs_confirm(name: str) -> bool:
    """Money moves and supply cuts are confirmed first."""
    if name in ("recharge", "refund", "adjust", "close", "trip"):
        return True
    return name == "switch" and request.form.get("on") == "0"


def confirm_text(name: str, room) -> str:
    amount = request.form.get("amount", "")
    texts = {
        "recharge": _("确认给 %(room)s 充值 ¥%(amount)s？", room=room.number, amount=amount),
        "refund": _("确认从 %(room)s 退款 ¥%(amount)s？", room=room.number, amount=amount),
        "adjust": _("确认给 %(room)s 调账 ¥%(amount)s？", room=room.number, amount=amount),
        "close": _("确认给 %(room)s 销户并结清余额？", room=room.number),
        "trip": _("确认对 %(room)s 拉闸断电（断水）？", room=room.number),
        "switch": _("确认断开 %(room)s 的这块表？", room=room.number),
    }
    return texts[name]


@bp.post("/rooms/<int:room_id>/actions/<name>")
def room_action(room_id: int, name: str):
    room = room_or_404(room_id)
    handler = ACTIONS.get(name)
    if handler is None:
        abort(404)
    require_write(room.site_id)
    if needs_confirm(name) and request.form.get("confirm") != "yes":
        fields = {k: v for k, v in request.form.items() if k not in ("confirm", "csrf_token")}
        return render("confirm.html", room=room, message=confirm_text(name, room), fields=fields,
                      action=url_for("admin.room_action", room_id=room.id, name=name))
    session = db()
    try:
        message = handler(room)
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        return render("room.html", exc.http_status, error=exc.message, **_page_context(room))
    flash(message, "ok")
    return redirect(url_for("admin.room", room_id=room.id), code=303)
