"""Automatic supply control for platform-billed prepaid accounts (平台计费).

- The balance reaches the cut line (zero, or minus the emergency credit the site allows) →
  trip the relay / close the valve through ``core.supply.control.trip`` (the outbox and the audit log),
  unless keep-power is on (the cut is *held*) or it is inside the site's friendly hours (the
  cut is *deferred* to the next allowed time, ``core.supply.friendly_hours.next_allowed``).
- A deferred or held cut is looked at again by ``run_due`` (a periodic job): it cuts once the
  time has come and the balance is still below the line and keep-power is off.
- An automatic cut or restore the meter never confirmed (the command ended failed or expired)
  is sent again by ``run_due``, once per lost command.
- A recharge lifts the balance above the restore line (``restore_above_fen``, default 0) →
  restore what automatic control cut (``core.supply.control.restore``). A cut a manager made by hand
  is never undone automatically.

Site settings (``Site.settings``): ``emergency_credit_fen``, ``restore_above_fen``,
``friendly_hours``; environment defaults ``METERPAY_EMERGENCY_CREDIT`` and
``METERPAY_RESTORE_ABOVE`` (yuan). One ``SupplyControl`` row per account holds the state,
locked while it changes; cut and restore commands are keyed ``auto-cut:<account>:<n>`` and
``auto-restore:<account>:<n>``, so a replayed event never sends a second command.

The ``balance_changed`` listener is the fast path, not the guarantee: an event is lost if the
process dies between the commit and the listener, or the listener fails. ``sweep()`` (periodic)
finds every account whose supply disagrees with its balance (cut but above the restore line, or
on and at or below the cut line) and evaluates it; it reuses the same command keys, so a sweep
and a late listener still make one command.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from core import audit, clock, config, signals
from core.alarms import notifications
from core.db import each_in_own_transaction, get_existing, locked_row, session_scope
from core.errors import MeterpayError, ValidationError
from core.ledger.money import format_fen
from core.models import Account, LedgerAccount, Meter, MeterCommand, Room, Site, SupplyControl
from core.supply import control as supply
from core.supply import friendly_hours

log = logging.getLogger(__name__)

ACTOR = "system:auto-supply"
SWITCH_KINDS = ("relay_off", "relay_on", "valve_close", "valve_open")
# How far back run_due looks for automatic commands that ended without effect.
LOST_WINDOW = timedelta(days=2)


@dataclass(frozen=True)
class Policy:
    cut_at_fen: int        # cut when the balance is at or below this (0, or minus the emergency credit)
    restore_above_fen: int  # restore when the balance rises above this
    friendly: friendly_hours.FriendlyHours
    timezone: str


def policy_for(site: Site) -> Policy:
    settings = site.settings or {}
    credit = int(settings.get("emergency_credit_fen", config.get("METERPAY_EMERGENCY_CREDIT")))
    if credit < 0:
        raise ValidationError("emergency_credit_fen must not be negative", field="emergency_credit_fen")
    restore_above = int(settings.get("restore_above_fen", config.get("METERPAY_RESTORE_ABOVE")))
    return Policy(cut_at_fen=-credit, restore_above_fen=max(restore_above, -credit),
                  friendly=friendly_hours.config_for(settings), timezone=site.timezone or "Asia/Shanghai")


@signals.on("balance_changed")
def on_balance_changed(account_id: int, **_payload) -> None:
    """After a posting's commit: evaluate the account if a cut, restore or change of a deferred or
    held cut is due (one read first, ``needing_evaluation``, as the set-based form and the sweep
    do: a recharge of an account that is on costs one or two statements, not a locked row)."""
    if not needing_evaluation([account_id]):
        return
    with session_scope() as session:
        evaluate(session, account_id)


@signals.handles_many(on_balance_changed)
def on_balances_changed(payloads: list[dict]) -> None:
    """Set-based form for bulk billing: one read of every account's state and balance; only the
    accounts that need a cut, restore or change of a deferred/held cut are evaluated (each in its
    own transaction, as the single listener does)."""
    ids = sorted({int(p["account_id"]) for p in payloads})
    each_in_own_transaction(needing_evaluation(ids), evaluate, "automatic supply control", log)


def needing_evaluation(account_ids: list[int]) -> list[int]:
    """The accounts among ``account_ids`` for which ``evaluate`` would do something now."""
    todo: list[int] = []
    policies: dict[int, Policy] = {}
    with session_scope() as session:
        for k in range(0, len(account_ids), 5000):
            part = account_ids[k:k + 5000]
            rows = session.execute(
                select(Account.id, Account.status, Account.billing_mode, Account.site_id, LedgerAccount.balance_fen,
                       SupplyControl.state)
                .outerjoin(LedgerAccount, LedgerAccount.account_id == Account.id)
                .outerjoin(SupplyControl, SupplyControl.account_id == Account.id)
                .where(Account.id.in_(part))).all()
            for aid, status, mode, site_id, balance, state in rows:
                if mode != "prepaid-platform":
                    continue
                state = state or "on"
                if status != "open":
                    if state != "on":
                        todo.append(aid)
                    continue
                if site_id not in policies:
                    try:
                        policies[site_id] = policy_for(get_existing(session, Site, site_id))
                    except ValidationError:
                        todo.append(aid)  # evaluate reports it as the single listener would
                        continue
                pol = policies[site_id]
                balance = balance or 0
                if balance <= pol.cut_at_fen:
                    if state != "cut":
                        todo.append(aid)
                elif state in ("deferred", "held") or (state == "cut" and balance > pol.restore_above_fen):
                    todo.append(aid)
    return todo


def sweep() -> dict[str, int]:
    """Periodic: make automatic supply control converge on the balances as they are.

    Candidates in one query: open platform-billed accounts that are cut, or on (no row counts as
    on) with a balance at or below zero; ``needing_evaluation`` keeps those whose cut line or
    restore line says act now, and each is evaluated in its own transaction (one failure does not
    stop the rest)."""
    with session_scope() as session:
        ids = list(session.scalars(
            select(Account.id)
            .join(LedgerAccount, LedgerAccount.account_id == Account.id)
            .outerjoin(SupplyControl, SupplyControl.account_id == Account.id)
            .where(Account.status == "open", Account.billing_mode == "prepaid-platform",
                   or_(SupplyControl.state == "cut",
                       and_(func.coalesce(SupplyControl.state, "on") == "on", LedgerAccount.balance_fen <= 0)))
            .order_by(Account.id)))
    todo = needing_evaluation(ids) if ids else []
    each_in_own_transaction(todo, evaluate, "supply sweep", log)
    return {"candidates": len(ids), "evaluated": len(todo)}


def control_for(session: Session, account_id: int) -> SupplyControl:
    """The account's supply-control row, created if missing, locked FOR UPDATE."""
    return locked_row(session, SupplyControl, key={"account_id": account_id},
                      defaults={"state": "on", "cuts": 0, "reason": "", "updated_at": clock.now()})


def evaluate(session: Session, account_id: int, *, now: datetime | None = None) -> str:
    """Decide and act for one account. Returns what happened: cut, restored, deferred, held,
    cancelled or none."""
    now = now or clock.now()
    account = session.get(Account, account_id)
    if account is None or account.billing_mode != "prepaid-platform":
        return "none"
    ctl = control_for(session, account_id)
    if account.status != "open":
        ctl.state, ctl.due_at = "on", None
        return "none"
    site = get_existing(session, Site, account.site_id)
    pol = policy_for(site)
    balance = _balance(session, account_id)
    if balance <= pol.cut_at_fen:
        return _below(session, account, ctl, pol, balance, now)
    if ctl.state in ("deferred", "held"):
        _set(ctl, "on", None, f"balance {format_fen(balance)} back above the cut line", now)
        audit.record(session, actor=ACTOR, front="job", action="supply_cut_cancelled", site_id=account.site_id,
                     account_id=account.id, balance=format_fen(balance))
        return "cancelled"
    if ctl.state == "cut" and balance > pol.restore_above_fen:
        supply.restore(session, account.id, actor=ACTOR, front="job", reason="recharged",
                       key=f"auto-restore:{account.id}:{ctl.cuts}")
        _set(ctl, "on", None, f"restored at balance {format_fen(balance)}", now)
        _tell(session, account, f"supply:{account.id}:{ctl.cuts}:restored", "已恢复供电",
              f"房间 {_room(session, account)} 充值成功，余额 {format_fen(balance)} 元，已恢复供电。")
        return "restored"
    return "none"


def _below(session: Session, account: Account, ctl: SupplyControl, pol: Policy, balance: int,
           now: datetime) -> str:
    if ctl.state == "cut":
        return "none"
    if account.keep_power:
        if ctl.state != "held":
            _set(ctl, "held", None, "keep-power is on", now)
            audit.record(session, actor=ACTOR, front="job", action="supply_cut_held", site_id=account.site_id,
                         account_id=account.id, balance=format_fen(balance))
        return "held"
    if friendly_hours.is_friendly(now, pol.friendly, pol.timezone):
        due = friendly_hours.next_allowed(now, pol.friendly, pol.timezone)
        if ctl.state != "deferred" or ctl.due_at != due:
            _set(ctl, "deferred", due, "friendly hours", now)
            audit.record(session, actor=ACTOR, front="job", action="supply_cut_deferred", site_id=account.site_id,
                         account_id=account.id, balance=format_fen(balance), due_at=due.isoformat())
            _tell(session, account, f"supply:{account.id}:{ctl.cuts + 1}:deferred:{due.isoformat()}", "停电预告",
                  f"房间 {_room(session, account)} 余额 {format_fen(balance)} 元，已欠费。"
                  f"将于 {due.astimezone(ZoneInfo(pol.timezone)):%m-%d %H:%M} 停电，请尽快充值。")
        return "deferred"
    try:
        supply.trip(session, account.id, actor=ACTOR, front="job", reason="balance",
                    key=f"auto-cut:{account.id}:{ctl.cuts + 1}")
    except MeterpayError as exc:
        log.warning("automatic cut of account %s failed: %s", account.id, exc.message)
        return "none"
    ctl.cuts += 1
    _set(ctl, "cut", None, f"cut at balance {format_fen(balance)}", now)
    _tell(session, account, f"supply:{account.id}:{ctl.cuts}:cut", "已停止供电",
          f"房间 {_room(session, account)} 余额 {format_fen(balance)} 元，已停止供电。充值后自动恢复。")
    return "cut"


def run_due(now: datetime | None = None) -> dict[str, int]:
    """Periodic job: act on deferred cuts whose time has come and on cuts held by keep-power, and
    send again an automatic cut or restore that the meter never confirmed (failed or expired)."""
    now = now or clock.now()
    with session_scope() as session:
        ids = session.scalars(select(SupplyControl.account_id).where(
            ((SupplyControl.state == "deferred") & (SupplyControl.due_at <= now)) |
            (SupplyControl.state == "held"))).all()
        lost = lost_commands(session, now)
    counts: dict[str, int] = {}
    for account_id in ids:
        with session_scope() as session:
            outcome = evaluate(session, account_id, now=now)
        counts[outcome] = counts.get(outcome, 0) + 1
    for account_id, command_id in lost.items():
        with session_scope() as session:
            outcome = resend(session, account_id, command_id)
        if outcome != "none":
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def lost_commands(session: Session, now: datetime, window: timedelta = LOST_WINDOW) -> dict[int, int]:
    """Accounts whose meter's latest supply command was automatic and ended failed or expired,
    with that command's id (only the latest per meter: a resent one hides the lost one)."""
    latest = (select(func.max(MeterCommand.id)).where(MeterCommand.kind.in_(SWITCH_KINDS),
                                                      MeterCommand.created_at >= now - window)
              .group_by(MeterCommand.meter_id))
    rows = session.execute(select(Meter.account_id, MeterCommand.id)
                           .join(Meter, Meter.id == MeterCommand.meter_id)
                           .where(MeterCommand.id.in_(latest), MeterCommand.requested_by == ACTOR,
                                  MeterCommand.state.in_(("failed", "expired")),
                                  Meter.account_id.is_not(None))).all()
    return {account_id: command_id for account_id, command_id in rows if account_id is not None}


def resend(session: Session, account_id: int, lost_command_id: int) -> str:
    """Send again the automatic cut or restore that command ``lost_command_id`` did not carry out,
    if the account still needs it; keyed by the lost command, so it is resent once per loss."""
    account = session.get(Account, account_id)
    lost = session.get(MeterCommand, lost_command_id)
    if account is None or lost is None or account.status != "open" or account.billing_mode != "prepaid-platform":
        return "none"
    ctl = control_for(session, account_id)
    pol = policy_for(get_existing(session, Site, account.site_id))
    balance = _balance(session, account_id)
    key = f"auto-resend:{account.id}:{lost.id}"
    try:
        if lost.kind in ("relay_off", "valve_close") and ctl.state == "cut" and balance <= pol.cut_at_fen \
                and not account.keep_power:
            supply.trip(session, account.id, actor=ACTOR, front="job", reason="cut not confirmed", key=key)
            return "cut_resent"
        if lost.kind in ("relay_on", "valve_open") and ctl.state == "on" and balance > pol.restore_above_fen:
            supply.restore(session, account.id, actor=ACTOR, front="job", reason="restore not confirmed", key=key)
            return "restore_resent"
    except MeterpayError as exc:
        log.warning("resending supply command for account %s failed: %s", account.id, exc.message)
    return "none"


def _set(ctl: SupplyControl, state: str, due: datetime | None, reason: str, now: datetime) -> None:
    ctl.state, ctl.due_at, ctl.reason, ctl.updated_at = state, due, reason[:200], now


def _tell(session: Session, account: Account, cause: str, subject: str, body: str) -> None:
    notifications.notify_account(session, account, cause=cause, kind="supply", subject=subject, body=body,
                                 data={"room": _room(session, account)}, level=3)


def _room(session: Session, account: Account) -> str:
    room = session.get(Room, account.room_id)
    return room.number if room else "?"


def _balance(session: Session, account_id: int) -> int:
    wallet = session.scalar(select(LedgerAccount).where(LedgerAccount.account_id == account_id)
                            .execution_options(populate_existing=True))
    return wallet.balance_fen if wallet else 0
