"""The command outbox, hardware side: claim a command, send it, confirm it by reading back.

``execute_command(command_id)`` (queue "meters", enqueued by ``core.supply.commands.request``):

1. *Claim* in one short transaction: a conditional UPDATE pending -> running, so two workers
   never run the same command; past its deadline it ends ``expired`` instead. The claim takes a
   *lease*: a token of this batch (``lease_owner``) and ``lease_until`` = now +
   ``METERPAY_COMMAND_LEASE`` (30 s). While the attempts run, a heartbeat renews the batch's
   leases every third of that; a worker that dies stops renewing, and its commands are free for
   another worker one lease later.
2. *Attempt* outside any transaction, holding the gateway's bus lock: send, then read the
   meter back. Every send is *fenced*: right before it, one short transaction checks that the
   command is still this attempt's (state running, this attempt number, this lease token) and
   renews the lease; if not, nothing is sent (outcome ``fenced``). Recharge is exactly-once by
   the meter's purchase count: the count seen before the first send is stored on the command
   (``result.base_count``) before anything is sent, and a stored base is never overwritten (a
   later attempt gets the stored one back); the meter is sent ``base_count + 1``, and refuses a
   repeated count; any later attempt first reads the count, and a count that has already passed
   ``base_count`` confirms the recharge without sending it again.
3. *Finish* in one transaction, the commands locked: ``confirmed`` (read back agrees),
   ``failed`` (the meter or the profile said no), or back to ``pending`` with exponential
   backoff; past the deadline a pending command ends ``expired``. A meter that does not answer is
   never "delivered". An attempt whose command is no longer its own (released and taken over,
   or ended meanwhile) records only whether the meter answered, and changes nothing of the
   command (``"taken"``). A confirmed recharge of wallet money (key ``meter-recharge:<entry>``)
   moves that money from the wallet to ``clearing:meter-credit`` in the same transaction
   (``core.supply.meter_side.credit_confirmed``).

``execute_many(ids)`` does the same for a batch in one claim and one finish transaction, with
all gateways worked in parallel (each gateway's commands in id order on one connection).
``retry_due()`` (periodic) re-enqueues pending commands whose time has come (as
``execute_many`` batches), expires those past their deadline, and returns to pending any
running command whose lease ran out (its worker died or hung).
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, create_engine, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from core.db import get_engine, session_scope
from core.errors import MeterpayError
from core.jobs import enqueue_after_commit, job
from core.ledger.money import format_fen
from core.models import Gateway, Meter, MeterCommand, MeterCommandEvent
from core.supply import commands as outbox
from core.supply import meter_side
from core.utils import utcnow
from hardware import aio, profiles, settings
from hardware.availability import record_failure, record_success
from hardware.buslock import LowHold, bus_lock
from hardware.errors import CommError, HardwareError, MeterRefused, Unsupported
from hardware.transports import open_link
from hardware.values import MeterValues

log = logging.getLogger(__name__)

BATCH = 200                           # commands per execute_many job
# A command left running before leases existed (no lease_until) is freed this long after its attempt began.
LEGACY_LEASE = timedelta(minutes=5)
SUPERSEDING = {"relay_off": "relay", "relay_on": "relay", "valve_close": "valve", "valve_open": "valve",
               "keep_power_on": "keep", "keep_power_off": "keep"}


@dataclass
class Snapshot:
    command_id: int
    kind: str
    params: dict
    result: dict
    attempt: int
    meter_id: int
    profile: str
    address: str
    url: str
    protocol: str
    token: str = ""                # the batch's lease token (MeterCommand.lease_owner)


@dataclass
class Outcome:
    state: str                     # confirmed | failed | retry | fenced (no longer this attempt's: nothing sent)
    detail: str
    values: MeterValues | None = None
    result: dict = field(default_factory=dict)
    answered: bool = False         # the meter said something (even "no")
    comm_error: str | None = None  # the meter or gateway did not answer
    observed_at: datetime | None = None  # when the read-back that gave ``values`` began (under the bus lock)


@job("meters", timeout=300)
def execute_command(command_id: int) -> str:
    """Run one attempt of a command; returns the state it is left in."""
    return execute_many([command_id])[0]


@job("meters", timeout=900)
def execute_many(command_ids: list[int]) -> list[str]:
    """One attempt of each command, in one claim and one finish transaction; gateways in parallel,
    each gateway's commands in id order. Returns the state each command is left in."""
    return run_batch(command_ids)[0]


def run_batch(command_ids: list[int]) -> tuple[list[str], dict[str, float]]:
    """``execute_many`` with the seconds each phase took (claim, attempts, finish)."""
    t0 = time.perf_counter()
    claimed = _claim(list(command_ids))
    t1 = time.perf_counter()
    snaps = sorted((c for c in claimed.values() if isinstance(c, Snapshot)), key=lambda x: x.command_id)
    outcomes = aio.run(_attempt_all(snaps)) if snaps else {}
    t2 = time.perf_counter()
    finished = _finish(snaps, outcomes) if snaps else {}
    t3 = time.perf_counter()
    states = [finished[cid] if isinstance(claimed[cid], Snapshot) else claimed[cid] for cid in command_ids]
    return states, {"claim_s": t1 - t0, "attempts_s": t2 - t1, "finish_s": t3 - t2}


# --- claim --------------------------------------------------------------------------------

def _lease() -> timedelta:
    return timedelta(seconds=settings.command_lease())


def _claim(command_ids: list[int]) -> dict[int, Snapshot | str]:
    """Take the due commands among ``command_ids`` for one attempt each, in one short transaction.

    May: lock the command rows (SKIP LOCKED: a row another worker holds is "taken", never waited
    for), move each due one to ``running`` with ``attempts + 1``, a fresh lease token shared by this
    batch and ``lease_until = now + METERPAY_COMMAND_LEASE`` (renewed by the batch's heartbeat and by
    every fence), and expire the ones past their deadline. It sends nothing.

    Returns, per id, a Snapshot of what the attempt may do, or why it may not: "missing", "taken"
    (locked elsewhere, or already running), "not-due", "waiting" (an older command of the same meter
    goes first), or the final state it was moved to ("expired", "failed"). A running command whose
    lease ran out (its worker died or stalled) is put back to pending by ``retry_due`` and claimed
    again; the attempt that lost it is stopped by ``_fence`` before its next send, so one command
    never reaches a meter twice.
    """
    out: dict[int, Snapshot | str] = {cid: "missing" for cid in command_ids}
    token = uuid.uuid4().hex
    # Rows, not ORM objects (``_Row``: the same attributes for the same code), written back per set of
    # columns changed: a batch engine claims thousands of commands a minute.
    cmd_t, meter_t, gw_t = MeterCommand.__table__, Meter.__table__, Gateway.__table__
    with session_scope() as s:
        now = utcnow()
        lease_until = now + _lease()
        q = (select(cmd_t, meter_t.c.serial.label("_serial"), meter_t.c.profile.label("_profile"),
                    meter_t.c.address.label("_address"), gw_t.c.id.label("_gateway"), gw_t.c.url.label("_url"),
                    gw_t.c.protocol.label("_protocol"))
             .select_from(cmd_t.join(meter_t, cmd_t.c.meter_id == meter_t.c.id)
                          .outerjoin(gw_t, meter_t.c.gateway_id == gw_t.c.id))
             .where(cmd_t.c.id.in_(command_ids)).order_by(cmd_t.c.id)
             .with_for_update(of=cmd_t, skip_locked=True))
        rows = s.execute(q).mappings().all()
        cols = list(cmd_t.c.keys())
        cmds = {r["id"]: _Row({k: r[k] for k in cols}) for r in rows}
        where = {r["id"]: r for r in rows}  # the meter's and gateway's fields
        leftover = set(command_ids) - set(cmds)
        if leftover:  # locked by another worker right now (SKIP LOCKED), or no such command
            for cid in s.scalars(select(cmd_t.c.id).where(cmd_t.c.id.in_(leftover))):
                out[cid] = "taken"
        open_by_meter: dict[int, list[_Row]] = {}
        others: dict[int, _Row] = {}
        if cmds:
            for r in s.execute(select(cmd_t).where(
                    cmd_t.c.meter_id.in_({c.meter_id for c in cmds.values()}),
                    cmd_t.c.state.in_(("pending", "running"))).order_by(cmd_t.c.id)).mappings():
                other = cmds.get(r["id"]) or others.setdefault(r["id"], _Row(r))  # one object per command
                open_by_meter.setdefault(other.meter_id, []).append(other)
        eligible: dict[int, _Row] = {}
        for cid, cmd in cmds.items():
            w = where[cid]
            if cmd.state != "pending":
                out[cid] = "taken" if cmd.state == "running" else cmd.state
            elif now >= cmd.deadline:
                outbox.transition(s, cmd, "expired", _expiry_detail(cmd))  # type: ignore[arg-type]
                out[cid] = "expired"
            elif cmd.next_attempt_at and cmd.next_attempt_at > now:
                out[cid] = "not-due"
            elif w["_gateway"] is None:
                outbox.transition(s, cmd, "failed", f"meter {w['_serial']} is not behind a gateway")  # type: ignore[arg-type]
                out[cid] = "failed"
            elif _waits_for_older(s, cmd, open_by_meter.get(cmd.meter_id, []), now):  # type: ignore[arg-type]
                out[cid] = "waiting"
            else:
                eligible[cid] = cmd
        # what changed so far (expired, failed, superseded, put off) before the claim itself
        _write_changes(s, cmd_t, [*cmds.values(), *others.values()])
        if not eligible:
            _insert_events(s)
            return out
        # the claim itself: only rows still pending move to running, so two workers never share one
        won = set(s.scalars(update(cmd_t)
                            .where(cmd_t.c.id.in_(list(eligible)), cmd_t.c.state == "pending")
                            .values(state="running", attempts=cmd_t.c.attempts + 1, last_attempt_at=now,
                                    lease_owner=token, lease_until=lease_until)
                            .returning(cmd_t.c.id)))
        for cid, cmd in eligible.items():
            if cid not in won:
                out[cid] = "taken"
                continue
            cmd.written(state="running", attempts=(cmd.attempts or 0) + 1, last_attempt_at=now, lease_owner=token,
                        lease_until=lease_until)
            outbox.transition(s, cmd, "running", f"attempt {cmd.attempts}")  # type: ignore[arg-type]
            w = where[cid]
            out[cid] = Snapshot(cid, cmd.kind, dict(cmd.params or {}), dict(cmd.result or {}), cmd.attempts,
                                cmd.meter_id, w["_profile"], w["_address"], w["_url"], w["_protocol"], token)
        _write_changes(s, cmd_t, eligible.values())
        _insert_events(s)
    return out


def _waits_for_older(s: Session, cmd: MeterCommand, open_cmds: list[MeterCommand], now: datetime) -> bool:
    """Older open commands of the same meter go first: recharges strictly in order; an older
    pending relay/valve/keep-power command is superseded by this newer one."""
    wait = False
    for other in open_cmds:
        if other.id >= cmd.id or other.state not in ("pending", "running"):
            continue
        if cmd.kind == "recharge" and other.kind == "recharge":
            wait = True
        elif SUPERSEDING.get(cmd.kind) and SUPERSEDING.get(cmd.kind) == SUPERSEDING.get(other.kind):
            if other.state == "pending":
                outbox.transition(s, other, "failed", f"superseded by command {cmd.id} ({cmd.kind})")
            else:
                wait = True
    if wait:
        cmd.next_attempt_at = now + timedelta(seconds=1)
    return wait


# --- attempt ------------------------------------------------------------------------------

async def _attempt_all(snaps: list[Snapshot]) -> dict[int, Outcome]:
    by_gateway: dict[tuple[str, str], list[Snapshot]] = {}
    for snap in snaps:
        by_gateway.setdefault((snap.url, snap.protocol), []).append(snap)
    outcomes: dict[int, Outcome] = {}

    async def gateway(url: str, protocol: str, items: list[Snapshot]) -> None:
        try:
            link = open_link(url, protocol)
        except ValueError as exc:
            outcomes.update({x.command_id: Outcome("failed", str(exc)) for x in items})
            return
        try:
            for snap in items:
                try:
                    outcomes[snap.command_id] = await _attempt(snap, link)
                except Exception as exc:
                    log.exception("command %s attempt crashed", snap.command_id)
                    outcomes[snap.command_id] = Outcome("retry", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            await link.close()

    heartbeat = asyncio.create_task(_heartbeat({snap.token for snap in snaps}))
    try:
        await asyncio.gather(*(gateway(url, protocol, items) for (url, protocol), items in by_gateway.items()))
    finally:
        heartbeat.cancel()
    return outcomes


async def _heartbeat(tokens: set[str]) -> None:
    """Renew the batch's leases every third of a lease while its attempts run (cancelled after)."""
    every = settings.command_lease() / 3
    while True:
        await asyncio.sleep(every)
        try:
            await asyncio.to_thread(_renew, tokens)
        except Exception:  # a missed renewal is survivable: the next one, or the fence, renews
            log.warning("renewing command leases failed", exc_info=True)


def _renew(tokens: set[str]) -> int:
    """One short transaction: push back ``lease_until`` of the running commands these tokens hold."""
    with session_scope() as s:
        res = s.execute(update(MeterCommand)
                        .where(MeterCommand.lease_owner.in_(sorted(tokens)), MeterCommand.state == "running")
                        .values(lease_until=utcnow() + _lease())
                        .execution_options(synchronize_session=False))
        return int(getattr(res, "rowcount", 0) or 0)


def _fence(snap: Snapshot) -> bool:
    """Right before a send: is the command still this attempt's (running, this attempt number,
    this lease token)? If so the lease is renewed and True returned; else nothing may be sent.

    One statement, its own transaction (autocommit). It runs before every send, so on PostgreSQL
    it is a server-side prepared statement on a connection of its own pool (no ORM session, no
    checkout ping): about 0.1 ms of CPU instead of about 0.9 ms (1,000 relay commands: see
    docs/hardware.md)."""
    until = utcnow() + _lease()
    engine = _fence_engine()
    if engine.dialect.name == "postgresql":
        return _pg_fence(engine, (until, snap.command_id, snap.token, snap.attempt))
    with engine.begin() as conn:
        won = conn.execute(update(MeterCommand)
                           .where(MeterCommand.id == snap.command_id, MeterCommand.state == "running",
                                  MeterCommand.lease_owner == snap.token, MeterCommand.attempts == snap.attempt)
                           .values(lease_until=until)
                           .returning(MeterCommand.id)).scalar()
    return won is not None


_FENCE_SQL = ("UPDATE meter_commands SET lease_until = %s WHERE id = %s AND state = 'running' "
              "AND lease_owner = %s AND attempts = %s RETURNING id")
_fence_engine_of: tuple[Engine, int, Engine] | None = None  # (shared engine, pid, fence engine)
_fence_lock = threading.Lock()


def _fence_engine() -> Engine:
    """An autocommit engine beside the shared one (PostgreSQL; SQLite uses the shared engine), made
    again when the shared engine is replaced (tests switch databases) or in a forked process."""
    global _fence_engine_of
    shared = get_engine()
    if shared.dialect.name != "postgresql":
        return shared
    with _fence_lock:
        known = _fence_engine_of
        if known is not None and known[0] is shared and known[1] == os.getpid():
            return known[2]
        if known is not None:
            known[2].dispose(close=False)  # never close a socket a parent process may still use
        engine = create_engine(shared.url, isolation_level="AUTOCOMMIT", pool_size=4, max_overflow=8,
                               pool_recycle=300)
        _fence_engine_of = (shared, os.getpid(), engine)
        return engine


def _pg_fence(engine: Engine, params: tuple) -> bool:
    """The fence as a prepared statement; a connection that died is dropped and the fence tried once more."""
    import psycopg
    for attempt in (1, 2):
        conn: Any = engine.raw_connection()
        try:
            with conn.cursor() as cur:
                cur.execute(_FENCE_SQL, params, prepare=True)
                row = cur.fetchone()
        except psycopg.OperationalError as exc:
            conn.invalidate(exc)
            if attempt == 2:
                raise
            continue
        finally:
            conn.close()
        return row is not None
    return False


class LoopFence:
    """The fence (same statement, same guarantee) on asynchronous PostgreSQL connections of one event
    loop: a batch lane fences every command, and a hop to a worker thread and back costs more CPU
    than the statement. A few autocommit connections shared by the loop's lanes, each statement
    prepared once per connection; a connection that died is dropped and the fence tried once more.
    Elsewhere (SQLite) it runs ``_fence`` in a thread as before. ``close`` in the loop when done."""

    SIZE = 4

    def __init__(self) -> None:
        self.free: list[Any] = []
        self.made = 0
        self.cond: asyncio.Condition | None = None

    async def __call__(self, snap: Snapshot) -> bool:
        engine = _fence_engine()
        if engine.dialect.name != "postgresql":
            return await _thread_fence(snap)
        import psycopg
        params = (utcnow() + _lease(), snap.command_id, snap.token, snap.attempt)
        for attempt in (1, 2):
            conn = await self._get(engine)
            try:
                async with conn.cursor() as cur:
                    await cur.execute(_FENCE_SQL, params, prepare=True)
                    row = await cur.fetchone()
            except psycopg.OperationalError:
                await self._drop(conn)
                if attempt == 2:
                    raise
                continue
            except BaseException:
                await self._drop(conn)
                raise
            await self._put(conn)
            return row is not None
        return False

    async def _get(self, engine: Engine) -> Any:
        import psycopg
        if self.cond is None:
            self.cond = asyncio.Condition()
        async with self.cond:
            while not self.free and self.made >= self.SIZE:
                await self.cond.wait()
            if self.free:
                return self.free.pop()
            self.made += 1
        try:
            return await psycopg.AsyncConnection.connect(
                engine.url.set(drivername="postgresql").render_as_string(hide_password=False), autocommit=True)
        except BaseException:
            await self._drop(None)
            raise

    async def _put(self, conn: Any) -> None:
        assert self.cond is not None
        async with self.cond:
            self.free.append(conn)
            self.cond.notify()

    async def _drop(self, conn: Any) -> None:
        if conn is not None:
            import psycopg
            try:
                await conn.close()
            except psycopg.Error:  # already broken
                pass
        assert self.cond is not None
        async with self.cond:
            self.made -= 1
            self.cond.notify()

    async def close(self) -> None:
        free, self.free = self.free, []
        for conn in free:
            await conn.close()


def _fenced(snap: Snapshot, when: str, *, answered: bool) -> Outcome:
    log.warning("command %s attempt %s is no longer its own %s; nothing sent", snap.command_id, snap.attempt, when)
    return Outcome("fenced", f"attempt {snap.attempt} lost its lease {when}; nothing sent", answered=answered)


async def _thread_fence(snap: Snapshot) -> bool:
    return await asyncio.to_thread(_fence, snap)


async def _attempt(snap: Snapshot, link, *, low: bool = False, hold: LowHold | None = None,
                   fence: LoopFence | None = None) -> Outcome:
    """One attempt of one command on an open link; ``low``: a batch command, which gives the bus
    up to single commands and polls waiting for it (``hardware.buslock``); ``hold``: a batch lane's
    low hold on the bus, kept across its commands (taken here if not held, given up on an error);
    ``fence``: the lane's loop's fence connections (else each fence runs in a worker thread)."""
    afence = fence or _thread_fence
    try:
        profile = profiles.get(snap.profile)
        profile.check_protocol(snap.protocol)
        profile.supports(snap.kind)
    except (ValueError, Unsupported) as exc:
        return Outcome("failed", str(exc))
    try:
        async with (hold.turn() if hold is not None else bus_lock(snap.url, low=low)):
            if snap.kind == "recharge":
                return await _recharge(profile, link, snap, afence)
            return await _send_and_verify(profile, link, snap, afence)
    except CommError as exc:
        return Outcome("retry", f"no confirmation: {exc}", comm_error=str(exc))
    except (MeterRefused, Unsupported, ValueError) as exc:
        return Outcome("failed", str(exc), answered=isinstance(exc, MeterRefused))


async def _send_and_verify(profile, link, snap: Snapshot, afence=_thread_fence) -> Outcome:
    sent_error = None
    if not await afence(snap):
        return _fenced(snap, "before the send", answered=False)
    try:
        await profile.send(link, snap.address, snap.kind, snap.params)
    except CommError as exc:
        sent_error = str(exc)  # the command may still have arrived: the read-back decides
    observed_at = datetime.now(UTC)
    ok, values, seen = await profile.verify(link, snap.address, snap.kind, snap.params)
    if ok:
        return Outcome("confirmed", f"read back: {seen}", values, answered=True, observed_at=observed_at)
    why = f"meter reports {seen}" + (f" (send: {sent_error})" if sent_error else "")
    return Outcome("retry", why, values, answered=True, observed_at=observed_at)


async def _recharge(profile, link, snap: Snapshot, afence=_thread_fence) -> Outcome:
    amount = int(snap.params["amount_fen"])
    observed_at = datetime.now(UTC)
    count, remaining = await profile.read_purchase(link, snap.address)
    # Stored before anything is sent (a retry must know which count this recharge owns); an
    # earlier attempt's stored base always wins over what this one just read.
    base = await asyncio.to_thread(_record_base, snap, count, remaining)
    if base is None:
        return _fenced(snap, "before recording the base purchase count", answered=True)
    snap.result["base_count"] = base
    result = {"base_count": base, "purchase_count": count}
    if count > base:
        return _recharge_confirmed(profile, snap, count, remaining, result, "found applied on a retry", observed_at)
    if not await afence(snap):
        return _fenced(snap, "before the recharge send", answered=True)
    refused = None
    try:
        await profile.send_recharge(link, snap.address, amount, base + 1)
    except CommError:
        pass  # the reply may be lost while the meter took it: the count tells
    except MeterRefused as exc:
        refused = str(exc)
    observed_at = datetime.now(UTC)
    count, remaining = await profile.read_purchase(link, snap.address)
    result["purchase_count"] = count
    if count > base:
        return _recharge_confirmed(profile, snap, count, remaining, result, "purchase count advanced", observed_at)
    if refused:
        return Outcome("failed", f"meter refused the recharge: {refused}", answered=True, result=result)
    return Outcome("retry", f"purchase count still {count}", answered=True, result=result)


def _recharge_confirmed(profile, snap, count, remaining, result, how, observed_at: datetime) -> Outcome:
    from decimal import Decimal
    values = MeterValues(remaining_amount=Decimal(remaining).scaleb(-2), purchase_count=count)
    result.update(remaining_fen=remaining, purchase_count=count)
    return Outcome("confirmed", f"{how}: purchase count {count}, remaining {format_fen(remaining)}", values,
                   result=result, answered=True, observed_at=observed_at)


def _record_base(snap: Snapshot, count: int, remaining: int) -> int | None:
    """The purchase count this recharge owns, in one short transaction with the command locked.

    None when the command is no longer this attempt's (fenced: send nothing). A base an earlier
    attempt stored is returned unchanged, never overwritten; otherwise ``count`` (and the
    remaining amount seen with it) is stored and returned.
    """
    with session_scope() as s:
        cmd = s.scalar(select(MeterCommand).where(MeterCommand.id == snap.command_id).with_for_update())
        if cmd is None or not _is_ours(cmd, snap):
            return None
        stored = (cmd.result or {}).get("base_count")
        if stored is not None:
            return int(stored)
        cmd.result = {**(cmd.result or {}), "base_count": count, "remaining_before_fen": remaining}
        cmd.lease_until = utcnow() + _lease()
        return count


def _is_ours(cmd: MeterCommand, snap: Snapshot) -> bool:
    return cmd.state == "running" and cmd.lease_owner == snap.token and cmd.attempts == snap.attempt


# --- finish -------------------------------------------------------------------------------

def _finish(snaps: list[Snapshot], outcomes: dict[int, Outcome],
            after: Callable[[Session, dict[int, str]], object] | None = None) -> dict[int, str]:
    """End each attempt (see the module) in one transaction; ``after(session, states)`` runs in it
    last (the batch engine brings its items in step with the commands there)."""
    if not any(x.kind == "recharge" for x in snaps):
        return _finish_rows(snaps, outcomes, after)
    out: dict[int, str] = {}
    with session_scope() as s:
        now = utcnow()
        # Locked (in id order) so that retry_due, which skips locked rows, never releases a
        # command while its attempt is being finished.
        cmds = {c.id: c for c in s.scalars(select(MeterCommand).where(
            MeterCommand.id.in_([x.command_id for x in snaps])).order_by(MeterCommand.id).with_for_update())}
        # Meters locked too (after the commands, in id order): the poller's store holds them while it
        # mirrors a round, so observation times are compared with what was last committed.
        meters = {m.id: m for m in s.scalars(select(Meter).where(Meter.id.in_({x.meter_id for x in snaps}))
                                             .order_by(Meter.id).with_for_update()
                                             .execution_options(populate_existing=True))}
        for snap in snaps:
            out[snap.command_id] = _finish_one(s, cmds[snap.command_id], meters[snap.meter_id],
                                               outcomes.get(snap.command_id) or Outcome("retry", "no outcome"), now,
                                               snap)
        # Wallet money the meters confirmed moves to meter credit, wallets locked in account order.
        confirmed = [cmds[x.command_id] for x in snaps if out[x.command_id] == "confirmed"
                     and cmds[x.command_id].kind == "recharge"]
        for cmd, _account in sorted(((c, meter_side.account_of(s, c)) for c in confirmed),
                                    key=lambda pair: (pair[1] or 0, pair[0].id)):
            try:
                with s.begin_nested():
                    meter_side.credit_confirmed(s, cmd)
            except (MeterpayError, SQLAlchemyError):
                # the confirmation stands (the meter has the money); the meter-side sweep posts it later
                log.exception("meter credit of confirmed command %s failed", cmd.id)
        if after is not None:
            after(s, out)
    return out


class _Row:
    """One locked row's columns as attributes, for ``_finish_one`` to read and set as it does an
    ORM object; ``changes()`` is what it set to a new value."""

    def __init__(self, row) -> None:
        self.__dict__.update(row)
        self.__dict__["_was"] = dict(row)

    def written(self, **values: Any) -> None:
        """Values the database already holds (set by a statement of our own)."""
        self.__dict__.update(values)
        self.__dict__["_was"].update(values)

    def changes(self) -> dict[str, Any]:
        was = self.__dict__["_was"]
        return {k: v for k, v in self.__dict__.items() if k != "_was" and (k not in was or was[k] != v)}


def _insert_events(s: Session) -> None:
    """The command events ``outbox.transition`` added to the session, inserted by one executemany
    (an ORM flush fetches each new row's id back: one huge statement the driver re-parses)."""
    new = [o for o in s.new if isinstance(o, MeterCommandEvent)]
    if not new:
        return
    new.sort(key=lambda e: (e.command_id, e.at))
    for event in new:
        s.expunge(event)
    s.execute(insert(MeterCommandEvent.__table__), [{"command_id": e.command_id, "state": e.state, "at": e.at,
                                                     "detail": e.detail} for e in new])


def _write_changes(s: Session, table, rows) -> None:
    """Each row's changed columns, one executemany per set of columns changed."""
    groups: dict[tuple[str, ...], list[dict]] = {}
    for row in rows:
        changed = row.changes()
        if changed:
            groups.setdefault(tuple(sorted(changed)), []).append({"k_id": row.id, **{f"v_{k}": v
                                                                                    for k, v in changed.items()}})
    for cols, params in groups.items():
        s.execute(update(table).where(table.c.id == bindparam("k_id"))
                  .values({c: bindparam(f"v_{c}", type_=table.c[c].type) for c in cols}), params)


def _finish_rows(snaps: list[Snapshot], outcomes: dict[int, Outcome],
                 after: Callable[[Session, dict[int, str]], object] | None = None) -> dict[int, str]:
    """``_finish`` without ORM objects (no recharge among ``snaps``: no meter credit to post): the
    same rows locked in the same order, the same ``_finish_one`` on each, then each table's changes
    in one statement per set of columns (a batch engine finishes thousands of commands a minute)."""
    out: dict[int, str] = {}
    cmd_t, meter_t = MeterCommand.__table__, Meter.__table__
    with session_scope() as s:
        now = utcnow()
        cmds = {r["id"]: _Row(r) for r in s.execute(
            select(cmd_t).where(cmd_t.c.id.in_([x.command_id for x in snaps])).order_by(cmd_t.c.id)
            .with_for_update()).mappings()}
        meters = {r["id"]: _Row(r) for r in s.execute(
            select(meter_t).where(meter_t.c.id.in_({x.meter_id for x in snaps})).order_by(meter_t.c.id)
            .with_for_update()).mappings()}
        for snap in snaps:
            out[snap.command_id] = _finish_one(s, cmds[snap.command_id], meters[snap.meter_id],  # type: ignore[arg-type]
                                               outcomes.get(snap.command_id) or Outcome("retry", "no outcome"), now,
                                               snap)
        _write_changes(s, cmd_t, cmds.values())
        _write_changes(s, meter_t, meters.values())
        _insert_events(s)
        if after is not None:
            after(s, out)
    return out


def _finish_one(s: Session, cmd: MeterCommand, meter: Meter, outcome: Outcome, now: datetime,
                snap: Snapshot) -> str:
    ours = _is_ours(cmd, snap) and outcome.state != "fenced"
    if outcome.comm_error:
        record_failure(s, meter, outcome.comm_error, now)
    elif outcome.answered:
        # An attempt that lost its command may have read the meter before the new owner changed it.
        # Values are dated by when the read-back began: a poll round read before it, stored after,
        # does not undo them (hardware.availability.apply_values).
        record_success(s, meter, outcome.values if ours else None, now, observed_at=outcome.observed_at or now)
    if not ours:
        log.warning("command %s was %s (lease %s) when attempt %s finished (%s); left as it is", cmd.id, cmd.state,
                    "another worker's" if cmd.lease_owner and cmd.lease_owner != snap.token else "gone",
                    snap.attempt, outcome.state)
        return "taken"
    if outcome.result:
        merged = {**(cmd.result or {}), **outcome.result}
        if (cmd.result or {}).get("base_count") is not None:
            merged["base_count"] = cmd.result["base_count"]  # the recorded base is never overwritten
        cmd.result = merged
    if outcome.state == "confirmed" and cmd.kind in ("relay_off", "relay_on", "valve_close", "valve_open"):
        meter.mismatch_since = None  # the meter now reports what was commanded (core.supply.enforce)
    if outcome.state in ("confirmed", "failed"):
        outbox.transition(s, cmd, outcome.state, outcome.detail)
        return outcome.state
    cmd.last_error = outcome.detail[:2000]
    if now >= cmd.deadline:
        outbox.transition(s, cmd, "expired", _expiry_detail(cmd))
        return "expired"
    delay = min(settings.command_backoff() * 2 ** max(cmd.attempts - 1, 0), settings.command_backoff_max())
    cmd.next_attempt_at = min(now + timedelta(seconds=delay), cmd.deadline)
    outbox.transition(s, cmd, "pending", f"retry after {delay:g}s: {outcome.detail}")
    return "pending"


def _expiry_detail(cmd: MeterCommand) -> str:
    return (f"not confirmed by the deadline after {cmd.attempts} attempt(s)"
            + (f"; last: {cmd.last_error}" if cmd.last_error else ""))


# --- retry job ----------------------------------------------------------------------------

def retry_due() -> dict:
    """Periodic: expire what is past its deadline, free running commands whose lease ran out (the
    worker died or hung: nobody renewed it), re-enqueue due ones."""
    with session_scope() as s:
        now = utcnow()
        counts = {"expired": 0, "released": 0, "enqueued": 0}
        # SKIP LOCKED: a command being finished right now is its worker's, not a stale one.
        stale = s.scalars(select(MeterCommand).where(
            MeterCommand.state == "running",
            or_(MeterCommand.lease_until < now,
                and_(MeterCommand.lease_until.is_(None), MeterCommand.last_attempt_at < now - LEGACY_LEASE)))
            .order_by(MeterCommand.id).with_for_update(skip_locked=True)).all()
        for cmd in stale:
            outbox.transition(s, cmd, "pending", "its worker's lease ran out; retrying")
            counts["released"] += 1
        for cmd in s.scalars(select(MeterCommand).where(MeterCommand.state == "pending",
                                                        MeterCommand.deadline <= now)).all():
            outbox.transition(s, cmd, "expired", _expiry_detail(cmd))
            counts["expired"] += 1
        # batch tasks' commands (key batch:...) are sent by their task's engine on queue "batch"
        # (hardware.batch_engine; core.batch.runner.sweep restarts a dead one), not on "meters"
        due = s.scalars(select(MeterCommand.id).where(MeterCommand.state == "pending",
                                                      MeterCommand.next_attempt_at <= now,
                                                      ~MeterCommand.idempotency_key.like("batch:%"))
                        .order_by(MeterCommand.id)).all()
        for i in range(0, len(due), BATCH):
            enqueue_after_commit(s, execute_many, list(due[i:i + BATCH]), queue="meters")
        counts["enqueued"] = len(due)
    return counts


def run_pending(limit: int = 1000) -> list[str]:
    """Run every due command in this process, oldest first (the field CLI and tests use it)."""
    with session_scope() as s:
        ids = s.scalars(select(MeterCommand.id).where(MeterCommand.state == "pending",
                                                      MeterCommand.next_attempt_at <= utcnow())
                        .order_by(MeterCommand.id).limit(limit)).all()
    return [state for i in range(0, len(ids), BATCH) for state in execute_many(list(ids[i:i + BATCH]))]


__all__ = ["execute_command", "execute_many", "retry_due", "run_pending", "HardwareError"]
