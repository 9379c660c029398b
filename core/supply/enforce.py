"""Desired supply, enforced: a relay or valve found in the other state is alarmed and commanded again.

What a meter's supply *should* be is what was last commanded (``Meter.commanded_state``: cut for
balance by automatic control, cut or restored by a manager, restored on recharge), unless
keep-power is on (then nothing is forced off). What it *is* comes from the poll
(``Meter.relay_state`` / ``valve_state``, dated ``supply_observed_at``). When they differ — the
meter restarted, or someone switched it at the box — ``check``:

- records the episode (``Meter.mismatch_since``; the monitor shows it) and raises the
  ``relay_mismatch`` device alarm once per desired state (``core.alarms.device.state_mismatch``);
- re-issues the desired command through the outbox (``core.supply.commands.request``, actor
  ``system:enforce``, key ``enforce:<meter>:<base command>:<n>``), at most
  METERPAY_ENFORCE_RETRIES times per *base* command (the latest relay/valve command not issued by
  this module: a manager's later command or a new automatic cut starts a new count), waiting
  METERPAY_ENFORCE_BACKOFF_MINUTES × 2^(n-1) after the n-th repeat before the next one;
- never forces an automatic cut (base by ``core.supply.auto``) during friendly hours;
- leaves alone: a meter with a relay/valve command still open, an unknown observed state, a
  meter or account with keep-power (nothing to force off), and a prepaid-meter account whose meter
  cut itself because its own credit ran out (observed off, remaining amount <= 0).

The poller calls ``check_many`` for the meters a round found worth it (``worth_checking``: no
query for agreeing meters); ``sweep`` (periodic, meterpay/periodic.py) checks stored
disagreements between polls. A confirmed relay/valve command clears ``mismatch_since``
(hardware.executor); so does a check that finds the meter as desired. No money moves here.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from core import clock, config
from core.alarms import device
from core.db import session_scope
from core.models import Account, Meter, MeterCommand, Site
from core.supply import commands, friendly_hours

log = logging.getLogger(__name__)

ACTOR = "system:enforce"
SWITCH_KINDS = ("relay_off", "relay_on", "valve_close", "valve_open")
_DESIRED = {"on": "on", "open": "on", "off": "off", "closed": "off"}
_OBSERVED = {"on": "on", "off": "off", "open": "on", "closed": "off", "abnormal": "abnormal"}


def desired(meter: Meter, account: Account | None) -> str | None:
    """"on", "off", or None (never commanded, or desired off while keep-power is on: keep-power wins)."""
    want = _DESIRED.get(meter.commanded_state or "")
    if want == "off" and (meter.keep_power or (account is not None and account.keep_power)):
        return None
    return want


def observed(meter: Meter) -> str | None:
    """"on", "off", "abnormal" (a valve that reports abnormal), or None when unknown."""
    state = meter.valve_state if meter.kind == "water" else meter.relay_state
    return _OBSERVED.get(state or "")


def worth_checking(meter: Meter) -> bool:
    """Without a query: can ``check`` do anything for this meter (a disagreement, or one to clear)?"""
    want = _DESIRED.get(meter.commanded_state or "")
    return meter.mismatch_since is not None or (want is not None and observed(meter) not in (None, want))


def retries() -> int:
    return int(config.get("METERPAY_ENFORCE_RETRIES"))


def backoff(n: int) -> timedelta:
    """How long after the n-th repeat (n >= 1) the next may go."""
    return timedelta(minutes=float(config.get("METERPAY_ENFORCE_BACKOFF_MINUTES")) * 2 ** max(n - 1, 0))


def check(session: Session, meter: Meter, observed_at: datetime, now: datetime | None = None) -> str:
    """Compare the meter's desired and observed supply; act as the module docstring says.

    Returns ``agree``, ``skipped``, ``reissued`` (a command was queued), ``waiting`` (backoff or
    friendly hours), or ``exhausted`` (METERPAY_ENFORCE_RETRIES repeats already made)."""
    now = now or clock.now()
    account = session.get(Account, meter.account_id) if meter.account_id else None
    want, seen = desired(meter, account), observed(meter)
    if want is None or seen is None:
        if want is None:
            meter.mismatch_since = None
        return "skipped"
    if session.scalar(select(MeterCommand.id).where(
            MeterCommand.meter_id == meter.id, MeterCommand.kind.in_(SWITCH_KINDS),
            MeterCommand.state.in_(("pending", "running"))).limit(1)) is not None:
        return "skipped"  # a command on its way decides
    if (account is not None and account.billing_mode == "prepaid-meter" and seen == "off" and want == "on"
            and meter.remaining_fen is not None and meter.remaining_fen <= 0):
        meter.mismatch_since = None  # the meter's own credit cut, not a disagreement
        return "skipped"
    if seen == want:
        meter.mismatch_since = None
        return "agree"
    base = session.scalar(select(MeterCommand).where(
        MeterCommand.meter_id == meter.id, MeterCommand.kind.in_(SWITCH_KINDS),
        MeterCommand.requested_by != ACTOR).order_by(MeterCommand.id.desc()).limit(1))
    base_id = base.id if base is not None else 0
    if meter.mismatch_since is None:
        meter.mismatch_since = observed_at
    device.state_mismatch(session, meter, want, seen, base_id)
    prefix = f"enforce:{meter.id}:{base_id}:"
    repeats = session.scalars(select(MeterCommand).where(
        MeterCommand.meter_id == meter.id, MeterCommand.idempotency_key.like(f"{prefix}%"))).all()
    n = len(repeats)
    if n >= retries():
        return "exhausted"
    if n:
        last_at = max(_issued_at(c) for c in repeats)
        if now < last_at + backoff(n):
            return "waiting"
    if want == "off" and base is not None and base.requested_by == _auto_actor():
        from core.supply import auto
        site = session.get(Site, meter.site_id)
        pol = auto.policy_for(site) if site is not None else None
        if pol is not None and friendly_hours.is_friendly(now, pol.friendly, pol.timezone):
            return "waiting"
    kind = ("valve_open" if want == "on" else "valve_close") if meter.kind == "water" else \
        ("relay_on" if want == "on" else "relay_off")
    commands.request(session, meter.id, kind, {"reason": "enforce", "at": now.isoformat()}, key=f"{prefix}{n + 1}",
                     actor=ACTOR, front="job")
    log.warning("meter %s reports %s, desired %s: command repeated (%s of %s)", meter.serial, seen, want, n + 1,
                retries())
    return "reissued"


def check_many(session: Session, items: Iterable[tuple[Meter, datetime]], now: datetime | None = None) -> dict:
    """``check`` for each (meter, observed_at) the poller found worth checking; counts by outcome."""
    out: dict[str, int] = {}
    for meter, at in items:
        res = check(session, meter, at, now)
        out[res] = out.get(res, 0) + 1
    return out


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Periodic: ``check`` again every meter whose stored relay/valve disagrees with its desired
    supply or that has a mismatch on record, against its newest observation (a poll whose check
    was skipped while a command was open, or whose repeat is due after backoff, is caught here
    between polls). Candidates in one query; each meter in its own transaction."""
    electric = and_(Meter.kind == "electricity", Meter.commanded_state.in_(("on", "off")),
                    Meter.relay_state.in_(("on", "off")), Meter.relay_state != Meter.commanded_state)
    water = and_(Meter.kind == "water", Meter.commanded_state.in_(("open", "closed")),
                 Meter.valve_state.in_(("open", "closed", "abnormal")), Meter.valve_state != Meter.commanded_state)
    not_kept = or_(Meter.keep_power.is_(False), Meter.commanded_state.in_(("on", "open")))
    # a meter that cut itself on its own credit (prepaid-meter) is not a disagreement (check says so)
    not_own_credit = or_(Meter.remaining_fen.is_(None), Meter.remaining_fen > 0,
                         Meter.commanded_state.in_(("off", "closed")))
    with session_scope() as session:
        ids = list(session.scalars(select(Meter.id).where(
            Meter.status == "active",
            or_(Meter.mismatch_since.is_not(None),
                and_(or_(electric, water), not_kept, not_own_credit)))
            .order_by(Meter.id)))
    out: dict[str, int] = {"candidates": len(ids)}
    for mid in ids:
        try:
            with session_scope() as session:
                meter = session.get(Meter, mid)
                if meter is None:
                    continue
                res = check(session, meter, meter.supply_observed_at or clock.now(), now)
            out[res] = out.get(res, 0) + 1
        except Exception:
            log.exception("desired-supply sweep of meter %s failed", mid)
            out["error"] = out.get("error", 0) + 1
    return out


def mismatches(session: Session, site_ids: list[int] | None = None) -> int:
    """How many meters disagree with their desired supply now."""
    q = select(func.count(Meter.id)).where(Meter.mismatch_since.is_not(None), Meter.status == "active")
    if site_ids is not None:
        q = q.where(Meter.site_id.in_(site_ids))
    return int(session.scalar(q) or 0)


def _issued_at(cmd: MeterCommand) -> datetime:
    """When a repeat was issued by the clock ``check`` runs on (params.at), else its row's time."""
    at = (cmd.params or {}).get("at")
    if at:
        try:
            return datetime.fromisoformat(at)
        except ValueError:
            pass
    return cmd.created_at


def _auto_actor() -> str:
    from core.supply import auto
    return auto.ACTOR


__all__ = ["ACTOR", "check", "check_many", "sweep", "desired", "observed", "worth_checking", "mismatches"]
