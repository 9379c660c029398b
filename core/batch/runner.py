"""Running a batch task's items: each becomes a normal command or entry under its key.

``feed(task_id, limit)`` takes queued items (``FOR UPDATE SKIP LOCKED``, in (rank, id) order, so
all gateways get work at once and two engines never take the same item) and, in the same
transaction, turns each into what a single room action would do:

- a meter action: one outbox command (``core.supply.commands.request``) keyed
  ``batch:<task>:<item>``, not enqueued (the batch engine sends it); the item is ``sent``;
- ``recharge``: ``cashdesk.desk_recharge`` keyed ``batch:<task>:<item>``; on a prepaid-meter
  account also its meter push (``meter-recharge:<entry>``, as single recharges) in the same
  transaction, and the item is ``sent`` until the meter confirms;
- ``charge``: ``core.ledger.charges.post_charge`` keyed ``batch:<task>:<item>``;
- ``set_tariff``: ``core.sites.accounts.change_tariff`` per utility;
- ``set_alarms``: the account's alarm levels, and the meter's alarm amounts where its profile
  keeps them (a command); ``keep_power_*``: the account's flag, and the meter's where supported.

An item is skipped, with its reason, when the account is closed, the meter is out of service or
behind no gateway, or its profile cannot do the action. A key already used returns what it made
the first time, so a worker killed after a commit and a second engine on the same task add
nothing. ``sync`` brings ``sent`` items in step with their commands (confirmed; failed with the
command's error; expired: skipped, "meter offline past the deadline").
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from core import audit
from core.batch import actions, settings
from core.batch.tasks import counts, item_key
from core.db import session_scope
from core.errors import MeterpayError
from core.ledger import cashdesk, charges
from core.models import Account, Meter, MeterCommand
from core.models.batch import BatchItem, BatchTask
from core.models.command import FINAL_STATES
from core.supply import commands, control, meter_side
from core.utils import utcnow

log = logging.getLogger(__name__)

DRIVER_LEASE = timedelta(seconds=60)
# Set by hardware (``hardware.batch_engine``) on import: can this profile do this command kind?
# Unset (a process without hardware), every profile is assumed able and the executor says no.
supports: Callable[[str, str], bool] | None = None


@dataclass
class Fed:
    command_ids: list[int] = field(default_factory=list)
    taken: int = 0           # items taken from the queue
    running: bool = True     # False: the task is no longer running (stopped, cancelled, finished)


def command_kind(action: str, meter: Meter) -> str:
    if action in ("relay_off", "relay_on"):
        if meter.kind == "water":
            return "valve_close" if action == "relay_off" else "valve_open"
        return action
    return {"set_meter_prices": "set_prices"}.get(action, action)


def _can(meter: Meter, kind: str) -> bool:
    return supports is None or supports(meter.profile, kind)


def begin(task_id: int, token: str, *, exclusive: bool = False) -> bool:
    """An engine takes (a share of) a task: pending -> running, its lease noted. False when the task
    is not runnable (not confirmed, not due, stopped, cancelled, finished), or, ``exclusive``, when
    another engine's lease on it is still running (that engine took it on: one is enough)."""
    with session_scope() as s:
        task = s.scalar(select(BatchTask).where(BatchTask.id == task_id).with_for_update(key_share=True))
        if task is None or task.state not in ("pending", "running"):
            return False
        now = utcnow()
        if exclusive and task.state == "running" and task.driver_token not in (None, token) \
                and task.driver_until is not None and task.driver_until > now:
            return False
        _take(s, task, token, now)
    return True


def _take(s: Session, task: BatchTask, token: str, now) -> None:
    """The engine ``token`` drives ``task`` from ``now``: a pending task starts (audited), the lease is noted."""
    if task.state == "pending":
        task.state, task.started_at = "running", task.started_at or now
        audit.record(s, actor=task.confirmed_by or task.created_by, front="job", action="batch_start",
                     site_id=task.site_id, task_id=task.id)
    task.driver_token, task.driver_until = token, now + DRIVER_LEASE


def renew(task_id: int, token: str) -> str:
    """The engine's heartbeat: push back its lease; returns the task's state."""
    return renew_many([task_id], token).get(task_id, "missing")


def renew_many(task_ids: list[int], token: str) -> dict[int, str]:
    """``renew`` for every task an engine drives, in one transaction; returns each task's state
    ("missing" for one that is gone)."""
    with session_scope() as s:
        s.execute(update(BatchTask).where(BatchTask.id.in_(task_ids))
                  .values(driver_token=token, driver_until=utcnow() + DRIVER_LEASE)
                  .execution_options(synchronize_session=False))
        got = dict(s.execute(select(BatchTask.id, BatchTask.state).where(BatchTask.id.in_(task_ids))).all())
    return {t: got.get(t, "missing") for t in task_ids}


def adopt(token: str, have: set[int] | list[int]) -> list[int]:
    """Runnable tasks no engine drives (pending, or running with no live engine lease) become this
    engine's too (as ``begin``): one engine then drives every task on its gateways, one lane per bus.
    Tasks another transaction holds are skipped (SKIP LOCKED) and tried again later."""
    with session_scope() as s:
        now = utcnow()
        q = (select(BatchTask).where(
            or_(BatchTask.state == "pending",
                and_(BatchTask.state == "running",
                     or_(BatchTask.driver_until.is_(None), BatchTask.driver_until < now))))
             .order_by(BatchTask.id).with_for_update(skip_locked=True, key_share=True))
        if have:
            q = q.where(BatchTask.id.not_in(list(have)))
        out = []
        for task in s.scalars(q):
            _take(s, task, token, now)
            out.append(task.id)
    return out


def in_shard(shard: tuple[int, int] | None):
    """The items of one engine's share of the gateways (``shard`` = (k, n): gateway id % n == k;
    items behind no gateway belong to share 0); None: every item."""
    if shard is None or shard[1] <= 1:
        return True
    return func.coalesce(BatchItem.gateway_id, 0) % shard[1] == shard[0]


def feed(task_id: int, limit: int, shard: tuple[int, int] | None = None) -> Fed:
    """Take up to ``limit`` queued items of a running task (of ``shard``'s gateways, see
    ``in_shard``) and act on them, in one transaction."""
    out = Fed()
    with session_scope() as s:
        task = s.get(BatchTask, task_id)
        if task is None or task.state != "running":
            out.running = False
            return out
        if task.action in actions.METER_ACTIONS:
            _feed_meter_items(s, task, limit, shard, out)
            return out
        items = list(s.scalars(select(BatchItem).where(BatchItem.task_id == task_id, BatchItem.state == "queued",
                                                       in_shard(shard))
                               .order_by(BatchItem.rank, BatchItem.id).limit(limit)
                               .with_for_update(skip_locked=True)))
        if not items:
            return out
        meter_ids = {i.meter_id for i in items if i.meter_id}
        account_ids = {i.account_id for i in items if i.account_id}
        # held here: the session's identity map keeps only weak references
        meters = list(s.scalars(select(Meter).where(Meter.id.in_(meter_ids)))) if meter_ids else []
        accounts = list(s.scalars(select(Account).where(Account.id.in_(account_ids)))) if account_ids else []
        actor = task.confirmed_by or task.created_by
        ttl = timedelta(seconds=settings.command_ttl())
        now = utcnow()
        for item in items:
            item.updated_at = now
            try:
                with s.begin_nested():
                    _account_item(s, task, item, actor, ttl)
            except MeterpayError as exc:
                _refused(item, exc)
        out.command_ids = [i.command_id for i in items if i.state == "sent" and i.command_id]
        out.taken = len(items)
        del meters, accounts
        # a command a re-run found already ended
        sync_items(s, [i for i in items if i.state == "sent"])
    return out


def _skip(item: BatchItem, reason: str) -> None:
    item.state, item.reason = "skipped", reason


def _refused(item: BatchItem, exc: MeterpayError) -> None:
    item.state, item.reason = ("skipped" if exc.code in ("account_closed", "conflict") else "failed",
                               exc.message[:500])


def _feed_meter_items(s: Session, task: BatchTask, limit: int, shard: tuple[int, int] | None, out: Fed) -> None:
    """``feed`` for a meter action, in rows rather than ORM objects (a batch feeds thousands a
    minute): the items taken (SKIP LOCKED), their commands made in one go (``request_many``), the
    items marked in bulk; skips and refusals with their reasons as ``feed`` gives them."""
    items = s.execute(select(BatchItem.id, BatchItem.seq, BatchItem.tries, BatchItem.meter_id, BatchItem.account_id)
                      .where(BatchItem.task_id == task.id, BatchItem.state == "queued", in_shard(shard))
                      .order_by(BatchItem.rank, BatchItem.id).limit(limit).with_for_update(skip_locked=True)).all()
    if not items:
        return
    meter_ids = {i.meter_id for i in items if i.meter_id}
    account_ids = {i.account_id for i in items if i.account_id}
    meters = {m.id: m for m in s.execute(select(Meter.id, Meter.status, Meter.gateway_id, Meter.profile, Meter.kind)
                                         .where(Meter.id.in_(meter_ids)))} if meter_ids else {}
    accounts = {a.id: a for a in s.execute(select(Account.id, Account.status)
                                           .where(Account.id.in_(account_ids)))} if account_ids else {}
    actor = task.confirmed_by or task.created_by
    now = utcnow()
    specs: dict[str, tuple[int, tuple[int, str, dict, str]]] = {}
    ended: dict[int, tuple[str, str]] = {}  # item id -> (state, reason) for items that end here
    for item in items:
        spec, why = _meter_spec(task, item, meters.get(item.meter_id or 0), accounts.get(item.account_id or 0))
        if spec is None:
            ended[item.id] = ("skipped", why)
        else:
            specs[spec[3]] = (item.id, spec)
    sent: list[dict] = []
    finished: list[int] = []  # commands a re-run found already ended
    if specs:  # the meter commands in one go (commands.request_many: one INSERT, keys as request's)
        made = commands.request_many(s, [spec for _i, spec in specs.values()], actor=actor, front=task.front,
                                     ttl=timedelta(seconds=settings.command_ttl()))
        for key, (item_id, _spec) in specs.items():
            got = made[key]
            if isinstance(got, MeterpayError):
                ended[item_id] = ("skipped" if got.code in ("account_closed", "conflict") else "failed",
                                  got.message[:500])
            else:
                sent.append({"id": item_id, "state": "sent", "command_id": got.id, "updated_at": now})
                if got.state in FINAL_STATES:
                    finished.append(got.id)
    if sent:
        s.execute(update(BatchItem), sent)  # by primary key, in one executemany
    by_reason: dict[tuple[str, str], list[int]] = {}
    for item_id, state_reason in ended.items():
        by_reason.setdefault(state_reason, []).append(item_id)
    for (state, reason), ids in by_reason.items():
        s.execute(update(BatchItem).where(BatchItem.id.in_(ids)).values(state=state, reason=reason, updated_at=now)
                  .execution_options(synchronize_session=False))
    out.command_ids = [row["command_id"] for row in sent]
    out.taken = len(items)
    sync_locked(s, finished)


def _meter_spec(task: BatchTask, item, meter, account) -> tuple[tuple[int, str, dict, str] | None, str]:
    """The command an item of a meter action becomes (meter id, kind, params, key), or None and
    why it is skipped."""
    why = None
    if meter is None or meter.status != "active":
        why = "meter out of service"
    elif account is not None and account.status != "open":
        why = "account closed"
    elif meter.gateway_id is None:
        why = "meter is not behind a gateway"
    elif not _can(meter, command_kind(task.action, meter)):
        why = f"profile {meter.profile} cannot {command_kind(task.action, meter).replace('_', ' ')}"
    if why is not None or meter is None:
        return None, why or "meter out of service"
    kind = command_kind(task.action, meter)
    params = {"reason": f"batch {task.id}"} if task.action in ("relay_off", "relay_on") else dict(task.params or {})
    return (meter.id, kind, params, item_key(task.id, item.seq, item.tries)), ""


def _account_item(s: Session, task: BatchTask, item: BatchItem, actor: str, ttl: timedelta) -> None:
    account = s.get(Account, item.account_id) if item.account_id else None
    if account is None:
        return _skip(item, "no open account")
    if account.status != "open":
        return _skip(item, "account closed")
    key, p, front = item_key(task.id, item.seq, item.tries), task.params or {}, task.front
    meter = s.get(Meter, item.meter_id) if item.meter_id else None
    if meter is not None and meter.status != "active":
        meter = None
    if task.action == "recharge":
        amount = item.amount_fen or int(p["amount_fen"])
        if account.billing_mode == "prepaid-meter":
            credit = meter_side.credit_meter(s, account.id)
            if credit is not None and not _can(credit, "recharge"):  # before any money moves
                return _skip(item, f"profile {credit.profile} cannot take a recharge on the meter")
        # The money is posted once per item, under batch:<task>:<item> however often the item is
        # retried; a retry after the meter push failed or expired pushes the same entry again.
        result = cashdesk.desk_recharge(s, account.id, amount, key=item_key(task.id, item.seq), actor=actor,
                                        front=front, memo=f"batch {task.id} recharge")
        item.entry_id, item.state = result.entry_id, "confirmed"
        cmd = meter_side.push_entry(s, account.id, result.entry_id, amount, warn=False, enqueue=False,
                                    attempt=item.tries or 1)
        if cmd is not None:  # the money reaches the meter as single recharges do; the item waits for it
            item.state, item.command_id = "sent", cmd.id
    elif task.action == "charge":
        result = charges.post_charge(s, account_id=account.id, code=p["code"], name=p.get("name", ""),
                                     amount_fen=int(p["amount_fen"]), key=key, memo=f"batch {task.id} {p.get('name')}",
                                     meta={"batch_task": task.id, "item": item.seq}, actor=actor, front=front)
        item.entry_id, item.state = result.entry_id, "confirmed"
    elif task.action == "set_tariff":
        from core.sites.accounts import change_tariff
        done = []
        for utility in ("electricity", "water"):
            if p.get(utility) and any(m.kind == utility and m.status == "active" for m in account.meters):
                change_tariff(s, account.id, p[utility], utility=utility, actor=actor, front=front)
                done.append(utility)
        if not done:
            return _skip(item, "no meter of the utilities given")
        item.state = "confirmed"
    elif task.action == "set_alarms":
        old = list(account.alarm_levels or [])
        levels = [{"amount_fen": int(p[k]), "times": int(old[i]["times"]) if i < len(old) else 1,
                   "every_minutes": int(old[i]["every_minutes"]) if i < len(old) else 0}
                  for i, k in enumerate(("alarm1_fen", "alarm2_fen", "alarm3_fen")) if k in p]
        control.set_alarm_levels(s, account.id, levels, actor=actor, front=front)
        item.state = "confirmed"
        meter_params = {k: int(p[k]) for k in ("alarm1_fen", "alarm2_fen") if k in p}
        if meter is not None and meter.gateway_id is not None and _can(meter, "set_alarms"):
            cmd = commands.request(s, meter.id, "set_alarms", meter_params, key=key, actor=actor, front=front,
                                   ttl=ttl, enqueue=False)
            item.state, item.command_id = "sent", cmd.id
        else:
            item.reason = "account alarm amounts set; the meter keeps none"
    elif task.action in ("keep_power_on", "keep_power_off"):
        on = task.action == "keep_power_on"
        account.keep_power = on
        for m in account.meters:
            m.keep_power = on
        audit.record(s, actor=actor, front=front, action=task.action, site_id=account.site_id,
                     account_id=account.id, task_id=task.id)
        item.state = "confirmed"
        if meter is not None and meter.gateway_id is not None and _can(meter, task.action):
            cmd = commands.request(s, meter.id, task.action, {}, key=key, actor=actor, front=front, ttl=ttl,
                                   enqueue=False)
            item.state, item.command_id = "sent", cmd.id
    else:  # pragma: no cover - the actions are checked when the task is created
        raise ValueError(task.action)


def item_outcome(command_state: str | None, last_error: str | None) -> tuple[str, str | None] | None:
    """What a ``sent`` item becomes when its command ends: (state, reason; None keeps the reason),
    or None while the command has not ended."""
    if command_state == "confirmed":
        return "confirmed", None
    if command_state == "failed":
        return "failed", (last_error or "failed")[:500]
    if command_state == "expired":
        return "skipped", f"meter offline past the deadline ({(last_error or '')[:300]})"
    return None


def sync_items(s: Session, items: list[BatchItem]) -> int:
    """Bring ``sent`` items in step with their commands' final states; returns how many ended."""
    ids = [i.command_id for i in items if i.state == "sent" and i.command_id]
    if not ids:
        return 0
    cmds = {c.id: c for c in s.scalars(select(MeterCommand).where(MeterCommand.id.in_(ids)))}
    now, n = utcnow(), 0
    for item in items:
        cmd = cmds.get(item.command_id or 0)
        got = item_outcome(cmd.state, cmd.last_error) if item.state == "sent" and cmd is not None else None
        if got is None:
            continue
        item.state = got[0]
        if got[1] is not None:
            item.reason = got[1]
        item.updated_at, n = now, n + 1
    return n


def sync_commands(command_ids: list[int]) -> int:
    """``sync_items`` for the items of these commands, in one transaction; tasks that ran out of
    work are finished. The items are waited for, not skipped when locked (a feed or the sweep holds
    them for a moment), so none is left ``sent`` after its command ended."""
    if not command_ids:
        return 0
    with session_scope() as s:
        n = sync_locked(s, command_ids)
        for task_id in set(s.scalars(select(BatchItem.task_id).where(BatchItem.command_id.in_(command_ids)))):
            task = s.get(BatchTask, task_id)
            if task is not None:
                finish_if_done(s, task)
    return n


def sync_locked(s: Session, command_ids: list[int]) -> int:
    """``sync_items`` for the ``sent`` items of these commands, locked (in id order) in the caller's
    transaction: the batch engine calls it in the transaction that ends the commands, so an item
    follows its command at the same commit (never left ``sent``). Confirmed ones in one UPDATE."""
    if not command_ids:
        return 0
    rows = s.execute(select(BatchItem.id, BatchItem.command_id)
                     .where(BatchItem.command_id.in_(command_ids), BatchItem.state == "sent")
                     .order_by(BatchItem.id).with_for_update()).all()
    if not rows:
        return 0
    ended: dict[int | None, tuple[str | None, str | None]] = {cid: (state, err) for cid, state, err in s.execute(
        select(MeterCommand.id, MeterCommand.state, MeterCommand.last_error)
        .where(MeterCommand.id.in_({c for _i, c in rows}), MeterCommand.state.in_(FINAL_STATES)))}
    now, confirmed, n = utcnow(), [], 0
    for item_id, cid in rows:
        got = item_outcome(*ended.get(cid, (None, None)))
        if got is None:
            continue
        if got[0] == "confirmed":
            confirmed.append(item_id)
            continue
        s.execute(update(BatchItem).where(BatchItem.id == item_id).values(state=got[0], reason=got[1], updated_at=now)
                  .execution_options(synchronize_session=False))
        n += 1
    if confirmed:
        s.execute(update(BatchItem).where(BatchItem.id.in_(confirmed)).values(state="confirmed", updated_at=now)
                  .execution_options(synchronize_session=False))
    return n + len(confirmed)


def outstanding(task_id: int, shard: tuple[int, int] | None = None) -> list[int]:
    """Commands of the task's ``sent`` items that have not ended (what an engine still has to send)."""
    with session_scope() as s:
        return list(s.scalars(select(BatchItem.command_id).join(MeterCommand, MeterCommand.id == BatchItem.command_id)
                              .where(BatchItem.task_id == task_id, BatchItem.state == "sent", in_shard(shard),
                                     MeterCommand.state.in_(("pending", "running")))
                              .order_by(BatchItem.rank, BatchItem.id)))


def finish_if_done(s: Session, task: BatchTask) -> bool:
    """A running or stopped task whose items all ended is finished (stopped stays stopped)."""
    if task.state not in ("running", "stopped") or task.finished_at is not None:
        return False
    left = s.scalar(select(func.count()).select_from(BatchItem).where(
        BatchItem.task_id == task.id, BatchItem.state.in_(("queued", "sent"))))
    if left:
        return False
    task.finished_at = utcnow()
    if task.state == "running":
        task.state = "finished"
    task.driver_token = task.driver_until = None
    audit.record(s, actor=task.confirmed_by or task.created_by, front="job", action="batch_finish",
                 site_id=task.site_id, task_id=task.id, counts=counts(s, task.id))
    return True


def sweep() -> dict[str, int]:
    """Periodic: start scheduled tasks whose time came; bring sent items in step with ended
    commands; finish tasks with nothing left; and start an engine for every pending task and every
    running one whose engine's lease ran out (its worker died): the new engine goes on from the
    database, and the keys make sure nothing is done twice."""
    out = {"started": 0, "synced": 0, "finished": 0, "driven": 0}
    with session_scope() as s:
        now = utcnow()
        due = s.execute(update(BatchTask).where(BatchTask.state == "scheduled", BatchTask.scheduled_at <= now)
                        .values(state="pending").execution_options(synchronize_session=False))
        out["started"] = int(getattr(due, "rowcount", 0) or 0)
        ended = list(s.scalars(select(BatchItem).join(MeterCommand, MeterCommand.id == BatchItem.command_id)
                               .where(BatchItem.state == "sent", MeterCommand.state.in_(FINAL_STATES))
                               .limit(5000).with_for_update(of=BatchItem, skip_locked=True)))
        out["synced"] = sync_items(s, ended)
        for task in s.scalars(select(BatchTask).where(BatchTask.state.in_(("running", "stopped")),
                                                      BatchTask.finished_at.is_(None))):
            out["finished"] += finish_if_done(s, task)
        drive = list(s.scalars(select(BatchTask).where(
            or_(BatchTask.state == "pending",
                and_(BatchTask.state == "running",
                     or_(BatchTask.driver_until.is_(None), BatchTask.driver_until < now))))
            .with_for_update(skip_locked=True, key_share=True)))
        ids = []
        for task in drive:
            if not _has_work(s, task.id):  # every item was skipped when frozen, or ended meanwhile
                task.state = "running" if task.state == "pending" else task.state
                out["finished"] += finish_if_done(s, task)
                continue
            # so the next sweep does not start a second engine; no token: the engine it starts takes it
            task.driver_token, task.driver_until = None, now + DRIVER_LEASE
            ids.append(task.id)
    for task_id in ids:
        from core.jobs import enqueue
        enqueue("hardware.batch_engine.drive", task_id, queue="batch", timeout=86400)
        out["driven"] += 1
    return out


def _has_work(s: Session, task_id: int) -> bool:
    return bool(s.scalar(select(exists().where(BatchItem.task_id == task_id,
                                               BatchItem.state.in_(("queued", "sent"))))))


def gateway_count(task_id: int | list[int], shard: tuple[int, int] | None = None) -> int:
    """Gateways the items of a task (or of several tasks together) are behind."""
    ids = task_id if isinstance(task_id, list) else [task_id]
    with session_scope() as s:
        return int(s.scalar(select(func.count(func.distinct(BatchItem.gateway_id)))
                            .where(BatchItem.task_id.in_(ids), BatchItem.gateway_id.is_not(None),
                                   in_shard(shard))) or 0)


def feed_peek(task_id: int, shard: tuple[int, int] | None = None) -> int:
    """How many items of the task are queued (an engine's last look before it ends)."""
    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(BatchItem)
                            .where(BatchItem.task_id == task_id, BatchItem.state == "queued", in_shard(shard))) or 0)


def release(task_id: int, token: str) -> None:
    """The engine ends: its lease goes (if still its own) and a task with nothing left is finished."""
    with session_scope() as s:
        task = s.scalar(select(BatchTask).where(BatchTask.id == task_id).with_for_update(key_share=True))
        if task is None:
            return
        if task.driver_token == token:
            task.driver_token = task.driver_until = None
        finish_if_done(s, task)
