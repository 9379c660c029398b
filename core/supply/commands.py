"""The command outbox, core side: a command to a meter is a row first, then a job.

``request()`` inserts the row (once per idempotency key), records its first state, writes the
audit log for commands that change supply or move money on the meter, and enqueues the
executor after commit. The executor (``hardware.executor.execute_command``, named by path so
core does not import hardware) sends it, confirms it by reading the meter back, retries with
backoff until the deadline, and ends it confirmed, failed or expired via ``transition()``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import audit, signals
from core.errors import Conflict, MeterpayError, NotFound, ValidationError
from core.jobs import enqueue_after_commit
from core.ledger import new_key
from core.models import AuditLog, Meter, MeterCommand, MeterCommandEvent
from core.models.command import COMMAND_KINDS, FINAL_STATES
from core.utils import utcnow

EXECUTOR = "hardware.executor.execute_command"
DEFAULT_TTL = timedelta(hours=1)
SUPPLY_KINDS = ("relay_off", "relay_on", "valve_close", "valve_open", "keep_power_on", "keep_power_off")
ELECTRIC_ONLY = ("relay_off", "relay_on", "keep_power_on", "keep_power_off", "set_prices", "set_tou")
WATER_ONLY = ("valve_close", "valve_open")
COMMANDED = {"relay_off": "off", "relay_on": "on", "valve_close": "closed", "valve_open": "open"}


def request(session: Session, meter_id: int, kind: str, params: dict | None = None, *, key: str | None = None,
            actor: str = "system", front: str = "system", ttl: timedelta = DEFAULT_TTL,
            enqueue: bool = True) -> MeterCommand:
    """Queue a command for a meter (the outbox): a row in the caller's transaction, nothing sent.

    May: insert one ``MeterCommand`` (state pending, deadline ``now + ttl``) with its first event and
    audit record, and enqueue ``hardware.executor.execute_command`` after commit (when ``enqueue``;
    if the queue is down the commit stands and ``retry_due`` picks the command up later). It never
    talks to the meter, so it has no unknown outcome: what the meter did is the command's later
    state (confirmed, failed, expired), reached through the executor's fenced attempts.

    The same ``key`` again returns the first command unchanged, also when two transactions ask at
    once: the one that loses the insert race waits for the other's commit and returns its command
    (only the inserting call records the event, the audit record and the enqueue). Raises
    ValidationError (unknown kind, a kind the meter cannot do, a recharge without a positive
    ``amount_fen``), NotFound (no such meter) or Conflict (meter out of service)."""
    if kind not in COMMAND_KINDS:
        raise ValidationError(f"unknown command {kind!r}; one of {', '.join(COMMAND_KINDS)}", field="kind")
    key = key or new_key(f"cmd:{kind}")
    existing = session.scalar(select(MeterCommand).where(MeterCommand.idempotency_key == key))
    if existing is not None:
        return existing
    meter = session.get(Meter, meter_id) if isinstance(meter_id, int) else None
    if meter is None:
        raise NotFound(f"no meter {meter_id}")
    if meter.status != "active":
        raise Conflict(f"meter {meter.serial} is out of service")
    if kind in ELECTRIC_ONLY and meter.kind != "electricity":
        raise ValidationError(f"{kind} is for electricity meters; {meter.serial} is a {meter.kind} meter")
    if kind in WATER_ONLY and meter.kind != "water":
        raise ValidationError(f"{kind} is for water meters; {meter.serial} is a {meter.kind} meter")
    if kind == "recharge":
        amount = (params or {}).get("amount_fen")
        if not isinstance(amount, int) or amount <= 0:
            raise ValidationError("recharge needs params.amount_fen > 0", field="amount")
    now = utcnow()
    cmd = MeterCommand(meter_id=meter.id, kind=kind, params=params or {}, state="pending", idempotency_key=key,
                       attempts=0, created_at=now, next_attempt_at=now, deadline=now + ttl,
                       requested_by=actor, front=front, result={})
    try:
        with session.begin_nested():
            session.add(cmd)
            session.flush()
    except IntegrityError:  # another transaction inserted this key since the check above
        existing = session.scalar(select(MeterCommand).where(MeterCommand.idempotency_key == key))
        if existing is None:
            raise
        return existing
    session.add(MeterCommandEvent(command_id=cmd.id, state="pending", at=now, detail="requested"))
    if kind in SUPPLY_KINDS:
        meter.commanded_state = COMMANDED.get(kind, meter.commanded_state)
    if kind in SUPPLY_KINDS or kind == "recharge":
        audit.record(session, actor=actor, front=front, action=f"command:{kind}", site_id=meter.site_id,
                     account_id=meter.account_id, meter_id=meter.id, command_id=cmd.id, params=params or {})
    if enqueue:
        enqueue_after_commit(session, EXECUTOR, cmd.id, queue="meters")
    return cmd


def transition(session: Session, cmd: MeterCommand, state: str, detail: str = "") -> None:
    """Move a command to ``state`` and keep the change with its time. Final states are final."""
    if cmd.state in FINAL_STATES:
        raise Conflict(f"command {cmd.id} already ended {cmd.state}")
    now = utcnow()
    cmd.state = state
    if state != "running":  # the attempt's lease ends with it (hardware.executor)
        cmd.lease_owner = cmd.lease_until = None
    if state in FINAL_STATES:
        cmd.finished_at = now
    if state == "failed" or state == "expired":
        cmd.last_error = detail or cmd.last_error
    session.add(MeterCommandEvent(command_id=cmd.id, state=state, at=now, detail=detail[:2000]))
    if state in FINAL_STATES:
        signals.emit(session, "command_finished", command_id=cmd.id, state=state, kind=cmd.kind,
                     requested_at=cmd.created_at, finished_at=cmd.finished_at)


@dataclass(frozen=True)
class Made:
    """A command ``request_many`` made or found: its id and state."""
    id: int
    state: str


def request_many(session: Session, specs: list[tuple[int, str, dict, str]], *, actor: str = "system",
                 front: str = "system", ttl: timedelta = DEFAULT_TTL) -> dict[str, Made | MeterpayError]:
    """``request`` for many commands in one go (a batch task's feed): ``specs`` are (meter id, kind,
    params, key). Nothing is enqueued (the caller's engine sends them; ``retry_due`` would too).

    Returns, per key, the command's id and state (the existing one for a key already used, as
    ``request``) or the error ``request`` would have raised for it (nothing written for that one).
    The same rows as ``request`` (command, its first event, the audit record of a supply command,
    the meter's commanded state), each kind in one statement, without ORM objects; if another
    transaction inserted one of the keys meanwhile, it falls back to ``request`` one by one, which
    waits for that transaction and returns its command."""
    out: dict[str, Made | MeterpayError] = {}
    if not specs:
        return out
    keys = [key for _m, _k, _p, key in specs]
    for cid, key, state in session.execute(select(MeterCommand.id, MeterCommand.idempotency_key, MeterCommand.state)
                                           .where(MeterCommand.idempotency_key.in_(keys))):
        out[key] = Made(cid, state)
    meters = {m.id: m for m in session.execute(
        select(Meter.id, Meter.status, Meter.kind, Meter.serial, Meter.site_id, Meter.account_id)
        .where(Meter.id.in_({m for m, _k, _p, _key in specs})))}
    now = utcnow()
    rows: list[dict] = []
    for meter_id, kind, params, key in specs:
        if key in out:
            continue
        meter = meters.get(meter_id)
        try:
            if kind not in COMMAND_KINDS:
                raise ValidationError(f"unknown command {kind!r}", field="kind")
            if meter is None:
                raise NotFound(f"no meter {meter_id}")
            if meter.status != "active":
                raise Conflict(f"meter {meter.serial} is out of service")
            if kind in ELECTRIC_ONLY and meter.kind != "electricity":
                raise ValidationError(f"{kind} is for electricity meters; {meter.serial} is a {meter.kind} meter")
            if kind in WATER_ONLY and meter.kind != "water":
                raise ValidationError(f"{kind} is for water meters; {meter.serial} is a {meter.kind} meter")
            if kind == "recharge":
                raise ValidationError("recharges go through request() one by one", field="kind")
        except MeterpayError as exc:
            out[key] = exc
            continue
        rows.append({"meter_id": meter_id, "kind": kind, "params": params or {}, "state": "pending",
                     "idempotency_key": key, "attempts": 0, "created_at": now, "next_attempt_at": now,
                     "deadline": now + ttl, "requested_by": actor, "front": front, "result": {}})
        out[key] = Made(0, "pending")  # its id once inserted
    if not rows:
        return out
    try:
        with session.begin_nested():
            # executemany (one short statement, prepared), then the ids by key: a RETURNING insert of
            # hundreds of rows is one huge statement whose parameters the driver re-parses every time
            session.execute(insert(MeterCommand), rows)
    except IntegrityError:  # a key inserted by another transaction since the look-up: one by one
        for row in rows:
            cmd = request(session, row["meter_id"], row["kind"], row["params"], key=row["idempotency_key"],
                          actor=actor, front=front, ttl=ttl, enqueue=False)
            out[row["idempotency_key"]] = Made(cmd.id, cmd.state)
        return out
    ids = {key: cid for cid, key in session.execute(
        select(MeterCommand.id, MeterCommand.idempotency_key)
        .where(MeterCommand.idempotency_key.in_([r["idempotency_key"] for r in rows])))}
    session.execute(insert(MeterCommandEvent), [{"command_id": ids[r["idempotency_key"]], "state": "pending", "at": now,
                                                 "detail": "requested"} for r in rows])
    audits: list[dict] = []
    commanded: dict[str, list[int]] = {}
    for r in rows:
        made = out[r["idempotency_key"]] = Made(ids[r["idempotency_key"]], "pending")
        if r["kind"] in SUPPLY_KINDS:
            meter = meters[r["meter_id"]]
            relay = COMMANDED.get(r["kind"])
            if relay is not None:
                commanded.setdefault(relay, []).append(meter.id)
            audits.append({"at": now, **audit.values(actor=actor, front=front, action=f"command:{r['kind']}",
                                                     site_id=meter.site_id, account_id=meter.account_id,
                                                     meter_id=meter.id, command_id=made.id, params=r["params"])})
    if audits:
        session.execute(insert(AuditLog), audits)
    for state, meter_ids in commanded.items():
        session.execute(update(Meter).where(Meter.id.in_(meter_ids)).values(commanded_state=state)
                        .execution_options(synchronize_session=False))
    return out
