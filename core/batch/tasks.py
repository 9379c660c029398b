"""Batch tasks: create (the selection frozen into items), confirm, run early, cancel or stop,
retry, and show. One service for the CLI, the admin pages and the manager chat.

States of a task: ``unconfirmed`` (a money or supply action waiting for its confirmation step),
``scheduled`` (waits for ``scheduled_at``), ``pending`` (starts as soon as an engine takes it),
``running``, then ``finished``; ``cancelled`` (never started) or ``stopped`` (stopped while
running: queued items are cancelled, items in flight finish honestly).
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from core import audit
from core.batch import actions, settings
from core.batch.selection import RoomList, Target, resolve
from core.config import get_settings
from core.errors import Conflict, NotFound, ValidationError
from core.models import MeterCommand, Site
from core.models.batch import ITEM_STATES, BatchItem, BatchTask
from core.supply import commands
from core.utils import utcnow

NOT_STARTED = ("unconfirmed", "scheduled", "pending")
AT_FORMAT = "%Y-%m-%d %H:%M"


def site_zone(site: Site) -> ZoneInfo:
    return ZoneInfo(site.timezone or get_settings().timezone)


def parse_at(text: str | None, site: Site, *, now: datetime | None = None) -> datetime | None:
    """``"YYYY-MM-DD HH:MM"`` in the site's timezone -> an aware UTC datetime (None for none).
    Refused (ValidationError, field ``at``) when malformed or more than a minute in the past."""
    if not text or not str(text).strip():
        return None
    try:
        local = datetime.strptime(str(text).strip(), AT_FORMAT)
    except ValueError:
        raise ValidationError(f"at: give \"YYYY-MM-DD HH:MM\" in the site's time, not {text!r}", field="at") from None
    at = local.replace(tzinfo=site_zone(site)).astimezone(UTC)
    if at < (now or utcnow()) - timedelta(minutes=1):
        raise ValidationError(f"at: {text} ({site.timezone}) has passed", field="at")
    return at


def format_at(at: datetime | None, site: Site) -> str | None:
    return at.astimezone(site_zone(site)).strftime(AT_FORMAT) if at else None


def item_key(task_id: int, seq: int, tries: int = 1) -> str:
    """The idempotency key of an item's command or entry: ``batch:<task id>:<item>``; a retry of a
    failed item (whose command ended and cannot be sent again) is ``batch:<task id>:<item>:<try>``."""
    return f"batch:{task_id}:{seq}" if tries <= 1 else f"batch:{task_id}:{seq}:{tries}"


def build_items(action: str, targets: list[Target], *, params: dict, amounts: dict[str, int]) -> list[dict]:
    """The frozen items of a task (rows for ``batch_items``, without task_id)."""
    out: list[dict] = []
    ranks: dict[int | None, int] = {}

    def add(t: Target, meter=None, *, state: str = "queued", reason: str = "", amount: int | None = None) -> None:
        gw = meter.gateway_id if meter is not None else None
        rank = ranks[gw] = ranks.get(gw, -1) + 1
        out.append({"seq": len(out) + 1, "room_id": t.room_id, "room": t.room,
                    "account_id": t.account.id if t.account is not None else None,
                    "meter_id": meter.id if meter is not None else None,
                    "meter": meter.serial if meter is not None else "",
                    "gateway_id": gw, "rank": rank, "amount_fen": amount, "state": state, "reason": reason,
                    "tries": 1, "updated_at": utcnow()})

    for t in targets:
        if action in actions.METER_ACTIONS:
            meters = [m for m in t.meters if action not in actions.ELECTRIC_ACTIONS or m.kind == "electricity"]
            if not meters:
                add(t, state="skipped", reason="no electricity meter in service" if action in actions.ELECTRIC_ACTIONS
                    else "no meter in service")
            for m in meters:
                add(t, m)
            continue
        meter = next((m for m in t.meters if m.kind == "electricity"), t.meters[0] if t.meters else None)
        if t.account is None:
            add(t, meter, state="skipped", reason="no open account")
        elif action == "recharge" and t.room not in amounts and "amount_fen" not in params:
            add(t, meter, state="skipped", reason="no amount for this room")
        else:
            add(t, meter, amount=amounts.get(t.room) if action == "recharge" else None)
    return out


def create_task(session: Session, *, site_id: int, action: str, selection: dict, params: dict | None = None,
                at: str | datetime | None = None, actor: str = "system", front: str = "system",
                confirmed: bool = False, rooms_file: RoomList | None = None, kick_engine: bool = True) -> BatchTask:
    """Freeze the selection into items and keep the task. Nothing is sent or posted here: an
    engine does that once the task starts (now, or at ``at`` in the site's timezone).

    A money or supply action (``actions.CONFIRMED_ACTIONS``) starts only once confirmed: pass
    ``confirmed=True`` when the caller's own confirmation step was taken (the CLI, a confirmed chat
    code), else the task waits ``unconfirmed`` for ``confirm_task``. Raises ValidationError (action,
    params, selection, time, too many items), NotFound (site). ``kick_engine=False``: the caller
    starts the engine itself (the bench); otherwise a pending task is enqueued after commit (Redis)
    or started by the periodic sweep."""
    site = session.get(Site, site_id) if isinstance(site_id, int) else None
    if site is None:
        raise NotFound(f"no site {site_id}")
    actions.check_action(action)
    selection = dict(selection or {})
    amounts: dict[str, int] = {}
    if rooms_file is not None:
        selection["rooms"] = list(dict.fromkeys([*selection.get("rooms", []), *rooms_file.rooms]))
        if not selection["rooms"]:
            raise ValidationError("rooms: the file lists no room", field="rooms")
        amounts = dict(rooms_file.amounts)
    clean = actions.clean_params(session, site.id, action, params, amounts_from_file=bool(amounts))
    when = at if isinstance(at, datetime) else parse_at(at, site)
    if action == "set_tariff" and clean.get("from"):
        start = datetime.combine(date.fromisoformat(clean["from"]), time()).replace(tzinfo=site_zone(site))
        # a plan from a later day is assigned on that day, never before it (an earlier --at waits for it)
        if start > (when or utcnow()):
            when = start.astimezone(UTC)
    targets = resolve(session, site, selection)
    rows = build_items(action, targets, params=clean, amounts=amounts)
    if not rows:
        raise ValidationError("the selection holds no room", field="selection")
    if len(rows) > settings.max_items():
        raise ValidationError(f"{len(rows)} items: a task holds at most {settings.max_items()} "
                              "(METERPAY_BATCH_MAX_ITEMS)", field="selection")
    need = actions.needs_confirmation(action) and not confirmed
    task = BatchTask(site_id=site.id, action=action, params=clean, selection=selection, scheduled_at=when,
                     state="unconfirmed" if need else ("scheduled" if when else "pending"), created_at=utcnow(),
                     created_by=actor, front=front, item_count=len(rows))
    if confirmed and actions.needs_confirmation(action):
        task.confirmed_by, task.confirmed_at = actor, utcnow()
    session.add(task)
    session.flush()
    for k in range(0, len(rows), 2000):
        session.execute(insert(BatchItem), [{**r, "task_id": task.id} for r in rows[k:k + 2000]])
    audit.record(session, actor=actor, front=front, action="batch_create", site_id=site.id, task_id=task.id,
                 batch_action=action, what=actions.describe(action, clean), items=len(rows),
                 scheduled_at=format_at(when, site))
    if task.confirmed_by:
        audit.record(session, actor=actor, front=front, action="batch_confirm", site_id=site.id, task_id=task.id)
    if task.state == "pending" and kick_engine:
        kick(session, task)
    return task


def preview(session: Session, *, site_id: int, action: str, selection: dict, params: dict | None = None,
            rooms_file: RoomList | None = None) -> dict[str, Any]:
    """What ``create_task`` would freeze, without keeping anything: counts and the first items."""
    site = session.get(Site, site_id) if isinstance(site_id, int) else None
    if site is None:
        raise NotFound(f"no site {site_id}")
    actions.check_action(action)
    selection = dict(selection or {})
    amounts = dict(rooms_file.amounts) if rooms_file is not None else {}
    if rooms_file is not None:
        selection["rooms"] = [*selection.get("rooms", []), *rooms_file.rooms]
    clean = actions.clean_params(session, site.id, action, params, amounts_from_file=bool(amounts))
    rows = build_items(action, resolve(session, site, selection), params=clean, amounts=amounts)
    return {"items": len(rows), "rooms": len({r["room"] for r in rows}),
            "skipped": sum(1 for r in rows if r["state"] == "skipped"), "what": actions.describe(action, clean),
            "needs_confirmation": actions.needs_confirmation(action), "sample": rows[:50]}


def get_task(session: Session, task_id: int, *, lock: bool = False) -> BatchTask:
    q = select(BatchTask).where(BatchTask.id == task_id)
    # FOR NO KEY UPDATE: items written meanwhile (which take KEY SHARE on their task) are not blocked
    task = session.scalar(q.with_for_update(key_share=True) if lock else q) if isinstance(task_id, int) else None
    if task is None:
        raise NotFound(f"no batch task {task_id}")
    return task


def confirm_task(session: Session, task_id: int, *, actor: str, front: str) -> BatchTask:
    """The confirmation step of a money or supply task: it becomes scheduled or pending."""
    task = get_task(session, task_id, lock=True)
    if task.state != "unconfirmed":
        raise Conflict(f"batch task {task.id} is {task.state}, not waiting for confirmation")
    task.state = "scheduled" if task.scheduled_at and task.scheduled_at > utcnow() else "pending"
    task.confirmed_by, task.confirmed_at = actor, utcnow()
    audit.record(session, actor=actor, front=front, action="batch_confirm", site_id=task.site_id, task_id=task.id)
    if task.state == "pending":
        kick(session, task)
    return task


def run_now(session: Session, task_id: int, *, actor: str, front: str) -> bool:
    """Start a scheduled (or pending) task now; True if this call started it. A task that already
    ran, or runs, is left as it is (False). An unconfirmed one is refused (Conflict)."""
    task = get_task(session, task_id, lock=True)
    if task.state == "unconfirmed":
        raise Conflict(f"batch task {task.id} waits for its confirmation")
    if task.state not in ("scheduled", "pending"):
        return False
    task.state = "pending"
    audit.record(session, actor=actor, front=front, action="batch_run", site_id=task.site_id, task_id=task.id)
    kick(session, task)
    return True


def cancel(session: Session, task_id: int, *, actor: str, front: str) -> str:
    """Cancel a task that has not started (all its items cancelled), or stop one that runs (see
    ``stop``). Returns the task's new state; a finished, stopped or cancelled task is left as it is."""
    task = get_task(session, task_id, lock=True)
    if task.state == "running":
        return stop(session, task_id, actor=actor, front=front)
    if task.state not in NOT_STARTED:
        return task.state
    task.state, task.finished_at, task.stopped_by = "cancelled", utcnow(), actor
    _cancel_queued(session, task.id, "task cancelled")
    audit.record(session, actor=actor, front=front, action="batch_cancel", site_id=task.site_id, task_id=task.id)
    return task.state


def stop(session: Session, task_id: int, *, actor: str, front: str) -> str:
    """Stop a running task: items not yet sent are cancelled (queued ones, and those whose command
    no worker has taken yet: that command ends failed, "stopped before it was sent"); items in
    flight finish honestly (their commands run to confirmed, failed or expired)."""
    task = get_task(session, task_id, lock=True)
    if task.state in NOT_STARTED:
        return cancel(session, task_id, actor=actor, front=front)
    if task.state != "running":
        return task.state
    task.state, task.stopped_by = "stopped", actor
    _cancel_queued(session, task.id, "task stopped")
    unsent = session.execute(
        select(BatchItem, MeterCommand).join(MeterCommand, MeterCommand.id == BatchItem.command_id)
        .where(BatchItem.task_id == task.id, BatchItem.state == "sent", MeterCommand.state == "pending",
               MeterCommand.attempts == 0)
        .order_by(MeterCommand.id).with_for_update(of=MeterCommand, skip_locked=True)).all()
    now = utcnow()
    for item, cmd in unsent:
        commands.transition(session, cmd, "failed", f"batch task {task.id} stopped before it was sent")
        item.state, item.reason, item.updated_at = "cancelled", "task stopped before it was sent", now
    audit.record(session, actor=actor, front=front, action="batch_stop", site_id=task.site_id, task_id=task.id,
                 unsent=len(unsent))
    from core.batch.runner import finish_if_done
    finish_if_done(session, task)
    return task.state


def _cancel_queued(session: Session, task_id: int, reason: str) -> int:
    res = session.execute(update(BatchItem).where(BatchItem.task_id == task_id, BatchItem.state == "queued")
                          .values(state="cancelled", reason=reason, updated_at=utcnow())
                          .execution_options(synchronize_session=False))
    return int(getattr(res, "rowcount", 0) or 0)


def retry(session: Session, task_id: int, *, failed_only: bool = True, actor: str, front: str) -> int:
    """Queue again the items that did not succeed: failed ones (``failed_only``), or also skipped
    and cancelled ones. A confirmed item is never queued again, and a retried item gets a fresh key
    ``batch:<task>:<item>:<try>`` (its failed command keeps the old one), so nothing is done twice.
    The task runs again (pending). Returns how many items were queued."""
    task = get_task(session, task_id, lock=True)
    if task.state in ("unconfirmed", "cancelled"):
        raise Conflict(f"batch task {task.id} is {task.state}")
    states = ("failed",) if failed_only else ("failed", "skipped", "cancelled")
    res = session.execute(update(BatchItem).where(BatchItem.task_id == task.id, BatchItem.state.in_(states))
                          .values(state="queued", reason="", tries=BatchItem.tries + 1, command_id=None,
                                  entry_id=None, updated_at=utcnow())
                          .execution_options(synchronize_session=False))
    n = int(getattr(res, "rowcount", 0) or 0)
    audit.record(session, actor=actor, front=front, action="batch_retry", site_id=task.site_id, task_id=task.id,
                 items=n, failed_only=failed_only)
    if n and task.state != "running":
        task.state, task.finished_at = "pending", None
        kick(session, task)
    return n


def counts(session: Session, task_id: int) -> dict[str, int]:
    out = dict.fromkeys(ITEM_STATES, 0)
    for state, n in session.execute(select(BatchItem.state, func.count()).where(BatchItem.task_id == task_id)
                                    .group_by(BatchItem.state)):
        out[state] = int(n)
    return out


def show(session: Session, task_id: int, *, with_items: bool = True) -> dict[str, Any]:
    """The task as ``meterpay batch show --json`` prints it."""
    task = get_task(session, task_id)
    site = session.get(Site, task.site_id)
    assert site is not None
    out: dict[str, Any] = {
        "id": task.id, "state": task.state, "action": task.action, "site": site.name,
        "what": actions.describe(task.action, task.params or {}), "params": task.params,
        "scheduled_at": format_at(task.scheduled_at, site), "created_by": task.created_by,
        "confirmed_by": task.confirmed_by, "counts": counts(session, task.id), "total": task.item_count}
    if with_items:
        out["items"] = [{"item": it.seq, "room": it.room, "meter": it.meter, "state": it.state, "reason": it.reason,
                         "command_id": it.command_id, "entry_id": it.entry_id}
                        for it in session.scalars(select(BatchItem).where(BatchItem.task_id == task.id)
                                                  .order_by(BatchItem.seq))]
    return out


def kick(session: Session, task: BatchTask) -> None:
    """Start the task's engine after commit when there are RQ workers (queue "batch"). Without Redis
    the periodic sweep (``core.batch.runner.sweep``) starts it; either way it starts by itself."""
    if get_settings().redis_url:
        from core.jobs import enqueue_after_commit
        enqueue_after_commit(session, "hardware.batch_engine.drive", task.id, queue="batch", timeout=86400)
