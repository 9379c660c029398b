"""批量操作: create a batch task with a preview of the selection (the preview is the confirmation
step of money and supply actions), the site's tasks, a task's detail with live progress and
per-item results, its controls (confirm, run now, cancel or stop, retry failed) and an .xlsx of
its items. Everything is ``core.batch.tasks`` (the same service as ``meterpay batch``)."""
from __future__ import annotations

import io
import json
from datetime import timedelta

from flask import abort, flash, jsonify, redirect, request, send_file, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from admin.web import actor, bp, db, new_op, render, require_write, site_or_404
from core.batch import actions, tasks
from core.batch.selection import STATUSES, RoomList, parse_floor, parse_rooms_file
from core.errors import MeterpayError, ValidationError
from core.models import BatchItem, BatchTask, Building, Floor
from core.models.batch import BATCH_ACTIONS
from core.utils import utcnow

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
FORM_FIELDS = ("action", "scope", "buildings", "floors", "rooms", "status", "amount", "sharp", "peak", "flat", "valley",
               "alarm1", "alarm2", "alarm3", "electricity", "water", "from", "code", "name", "at", "op", "room_list")


def _form_selection() -> tuple[dict, RoomList | None]:
    f = request.form
    scope = f.get("scope", "all")
    selection: dict = {}
    room_list = None
    if scope == "all":
        selection["all"] = True
    elif scope == "buildings":
        selection["buildings"] = [b for b in f.getlist("buildings") if b]
    elif scope == "floors":
        selection["floors"] = [list(parse_floor(x)) for x in f.getlist("floors") if x]
    elif scope == "rooms":
        upload = request.files.get("file")
        if upload is not None and upload.filename:
            room_list = parse_rooms_file(upload.filename, upload.read())
        elif f.get("room_list"):  # the preview carries the file's rooms on
            data = json.loads(f["room_list"])
            room_list = RoomList(rooms=list(data["rooms"]), amounts={k: int(v) for k, v in data["amounts"].items()})
        typed = [r.strip() for r in (f.get("rooms") or "").replace(",", "\n").splitlines() if r.strip()]
        if typed:
            selection["rooms"] = typed
        if room_list is None and not typed:
            raise ValidationError(_("请填写房间号或上传房间表"), field="rooms")
    elif scope != "status":
        raise ValidationError(_("请选择范围"), field="scope")
    if f.get("status"):
        selection["status"] = f["status"]
    return selection, room_list


def _form_params(action: str) -> dict:
    f = request.form
    if action == "recharge":
        return {"amount": f["amount"]} if f.get("amount") else {}
    if action == "charge":
        return {"code": f.get("code", ""), "name": f.get("name", ""), "amount": f.get("amount", "")}
    if action == "set_meter_prices":
        return {"prices": {k: f[k] for k in ("sharp", "peak", "flat", "valley") if f.get(k)}}
    if action == "set_alarms":
        return {k: f[k] for k in ("alarm1", "alarm2", "alarm3") if f.get(k)}
    if action == "set_tariff":
        return {k: f[k] for k in ("electricity", "water", "from") if f.get(k)}
    return {}


def _form_at() -> str | None:
    at = (request.form.get("at") or "").strip()
    return at.replace("T", " ") if at else None


def _choices(site) -> dict:
    session = db()
    buildings = list(session.scalars(select(Building.name).where(Building.site_id == site.id).order_by(Building.name)))
    floors = [f"{b}:{f}" for b, f in session.execute(
        select(Building.name, Floor.name).join(Floor, Floor.building_id == Building.id)
        .where(Building.site_id == site.id).order_by(Building.name, Floor.name))]
    return {"actions": BATCH_ACTIONS, "labels": actions.LABELS, "buildings": buildings, "floors": floors,
            "statuses": STATUSES}


def _list(site, **ctx):
    rows = list(db().scalars(select(BatchTask).where(BatchTask.site_id == site.id).order_by(BatchTask.id.desc())
                             .limit(100)))
    listed = [(t, tasks.counts(db(), t.id), actions.describe(t.action, t.params or {})) for t in rows]
    return render("batch.html", ctx.pop("status", 200), site=site, tasks=listed, op=new_op(), form=ctx.pop("form", {}),
                  **_choices(site), **ctx)


@bp.get("/sites/<int:site_id>/batch")
def batch_tasks(site_id: int):
    return _list(site_or_404(site_id))


@bp.post("/sites/<int:site_id>/batch/preview")
def batch_preview(site_id: int):
    """What the task would hold (counts and the first items): nothing is kept yet."""
    site = site_or_404(site_id)
    require_write(site.id)
    action = request.form.get("action", "")
    try:
        selection, room_list = _form_selection()
        if _form_at():
            tasks.parse_at(_form_at(), site)
        seen = tasks.preview(db(), site_id=site.id, action=action, selection=selection, params=_form_params(action),
                             rooms_file=room_list)
    except (MeterpayError, ValueError) as exc:
        db().rollback()
        message = exc.message if isinstance(exc, MeterpayError) else str(exc)
        return _list(site, status=422, error=message, form=request.form)
    fields = {k: v for k, v in request.form.items(multi=True) if k in FORM_FIELDS}
    multi = {k: request.form.getlist(k) for k in ("buildings", "floors")}
    if room_list is not None:
        fields["room_list"] = json.dumps({"rooms": room_list.rooms, "amounts": room_list.amounts})
    db().rollback()
    return render("batch_preview.html", site=site, preview=seen, action=action, label=actions.LABELS.get(action),
                  fields=fields, multi=multi, at=_form_at())


@bp.post("/sites/<int:site_id>/batch")
def batch_create(site_id: int):
    """Create the task from the preview's form. Money and supply actions come confirmed from the
    preview (``confirm=yes``); without it they wait unconfirmed for a manager's confirmation."""
    site = site_or_404(site_id)
    require_write(site.id)
    action, op = request.form.get("action", ""), request.form.get("op", "")
    session = db()
    # a second submit of the same form (op) opens the task the first one made
    recent = session.scalars(select(BatchTask).where(BatchTask.site_id == site.id, BatchTask.created_by == actor(),
                                                     BatchTask.created_at >= utcnow() - timedelta(hours=1)))
    for t in recent:
        if op and (t.selection or {}).get("op") == op:
            return redirect(url_for("admin.batch_task", task_id=t.id), code=303)
    try:
        selection, room_list = _form_selection()
        if op:
            selection["op"] = op
        task = tasks.create_task(session, site_id=site.id, action=action, selection=selection,
                                 params=_form_params(action), at=_form_at(), actor=actor(), front="admin",
                                 confirmed=request.form.get("confirm") == "yes", rooms_file=room_list)
        session.commit()
    except (MeterpayError, ValueError) as exc:
        session.rollback()
        message = exc.message if isinstance(exc, MeterpayError) else str(exc)
        return _list(site, status=422, error=message, form=request.form)
    flash(_("批量任务 %(id)s 已创建", id=task.id), "ok")
    return redirect(url_for("admin.batch_task", task_id=task.id), code=303)


def _task_or_404(task_id: int) -> BatchTask:
    task = db().get(BatchTask, task_id)
    if task is None:
        abort(404)
    site_or_404(task.site_id)
    return task


@bp.get("/batch/<int:task_id>")
def batch_task(task_id: int):
    task = _task_or_404(task_id)
    site = site_or_404(task.site_id)
    shown = tasks.show(db(), task.id)
    return render("batch_task.html", site=site, task=task, shown=shown, can_confirm=task.state == "unconfirmed")


@bp.get("/batch/<int:task_id>/progress.json")
def batch_progress(task_id: int):
    """The detail page polls this while the task runs: state, counts and every item's state."""
    task = _task_or_404(task_id)
    return jsonify(tasks.show(db(), task.id))


@bp.post("/batch/<int:task_id>/<op>")
def batch_control(task_id: int, op: str):
    task = _task_or_404(task_id)
    require_write(task.site_id)
    session = db()
    try:
        if op == "confirm":
            tasks.confirm_task(session, task.id, actor=actor(), front="admin")
            message = _("已确认")
        elif op == "run":
            started = tasks.run_now(session, task.id, actor=actor(), front="admin")
            message = _("已开始") if started else _("任务已执行过")
        elif op == "cancel":
            tasks.cancel(session, task.id, actor=actor(), front="admin")
            message = _("已取消或停止")
        elif op == "retry":
            n = tasks.retry(session, task.id, failed_only=True, actor=actor(), front="admin")
            message = _("%(n)s 条失败项已重新排队", n=n)
        else:
            abort(404)
        session.commit()
    except MeterpayError as exc:
        session.rollback()
        flash(exc.message, "err")
        return redirect(url_for("admin.batch_task", task_id=task_id), code=303)
    flash(message, "ok")
    return redirect(url_for("admin.batch_task", task_id=task_id), code=303)


@bp.get("/batch/<int:task_id>/items.xlsx")
def batch_export(task_id: int):
    from openpyxl import Workbook
    task = _task_or_404(task_id)
    site = site_or_404(task.site_id)
    wb = Workbook()
    ws = wb.active
    ws.title = f"batch {task.id}"
    ws.append([_("批量任务"), task.id, actions.describe(task.action, task.params or {}), site.name])
    ws.append([_("序号"), _("房间"), _("表号"), _("状态"), _("原因"), _("命令号"), _("流水号"), _("更新时间")])
    tz = tasks.site_zone(site)
    for it in db().scalars(select(BatchItem).where(BatchItem.task_id == task.id).order_by(BatchItem.seq)):
        ws.append([it.seq, it.room, it.meter, it.state, it.reason, it.command_id, it.entry_id,
                   it.updated_at.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S") if it.updated_at else ""])
    buf = io.BytesIO()
    wb.save(buf)
    buf.seek(0)
    return send_file(buf, mimetype=XLSX, as_attachment=True, download_name=f"batch-{task.id}.xlsx")
