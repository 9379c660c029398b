"""Balance alarms: three levels per account, fired when the balance crosses down, cleared by a recharge.

The state machine (one ``AlarmState`` row per account, locked while it changes):

- the balance falls to or below a deeper level than the row holds → a new *crossing*: the
  level is raised, notice 1 goes out at once, and notices 2..times follow every
  ``every_minutes`` (``send_due_repeats``, a periodic job);
- the balance rises above a level (a recharge) → the level drops to what the balance is at
  now and pending repeats stop; above every level the alarm is *cleared*;
- the same level again (more consumption inside it) → nothing.

Each notice has the key ``alarm:<account>:<crossing>:<level>:<n>`` per channel, so a replayed
event, a retried job or two workers at once never send one notice twice. Levels come from
``core.alarms.status.alarm_levels`` (account, else site, else the defaults 50/20/0 yuan).

The balance is the one the account shows (``core.alarms.shown``): the wallet, or for a
prepaid-meter account the remaining amount its meter last reported (a meter never read raises
and clears nothing). The ``balance_changed`` listener is the fast path; ``sweep()`` (periodic)
evaluates every account whose level disagrees with its balance, so a lost event is made up.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock, signals
from core.alarms import device, notifications  # noqa: F401  (device: registers the device alarm listeners)
from core.alarms.shown import shown_balance, shown_balances
from core.alarms.status import AlarmLevel, alarm_level_for, alarm_levels
from core.db import each_in_own_transaction, get_existing, locked_row, session_scope
from core.ledger.money import format_fen
from core.models import Account, AlarmState, LedgerAccount, Room, Site

log = logging.getLogger(__name__)

ALARMED_MODES = ("prepaid-platform", "prepaid-meter")


@signals.on("balance_changed")
def on_balance_changed(account_id: int, **_payload) -> None:
    """After a posting's commit: evaluate the account if its alarm level would change (one read
    first, ``needing_evaluation``, as the set-based form and the sweep do: a recharge of an account
    with no alarm costs one statement, not the locked alarm row, the site and an UPDATE)."""
    if not needing_evaluation([account_id]):
        return
    with session_scope() as session:
        evaluate(session, account_id)


@signals.handles_many(on_balance_changed)
def on_balances_changed(payloads: list[dict]) -> None:
    """Set-based form for bulk billing: one read of every account's mode, levels, alarm level and
    balance; only the accounts whose level changes are evaluated (each in its own transaction)."""
    ids = sorted({int(p["account_id"]) for p in payloads})
    each_in_own_transaction(needing_evaluation(ids), evaluate, "alarm evaluation", log)


def needing_evaluation(account_ids: list[int]) -> list[int]:
    """The accounts among ``account_ids`` whose alarm state would change with their balance now."""
    todo: list[int] = []
    with session_scope() as session:
        for k in range(0, len(account_ids), 5000):
            part = account_ids[k:k + 5000]
            rows = session.execute(
                select(Account.id, Account.status, Account.billing_mode, Account.alarm_levels, Site.settings,
                       LedgerAccount.balance_fen, AlarmState.level)
                .outerjoin(Site, Site.id == Account.site_id)
                .outerjoin(LedgerAccount, LedgerAccount.account_id == Account.id)
                .outerjoin(AlarmState, AlarmState.account_id == Account.id)
                .where(Account.id.in_(part))).all()
            # a prepaid-meter account shows its meter's remaining amount (one more query, for those only)
            meter_side = shown_balances(session, [r[0] for r in rows if r[2] == "prepaid-meter" and r[1] == "open"])
            for aid, status, mode, own_levels, site_settings, balance, level in rows:
                if status != "open" or mode not in ALARMED_MODES:
                    want = 0
                else:
                    fen = meter_side[aid].fen if aid in meter_side else (balance or 0)
                    if fen is None:  # a prepaid meter never read: nothing to alarm on or clear
                        continue
                    want = alarm_level_for(fen, alarm_levels(own_levels, site_settings))
                if want != (level or 0):
                    todo.append(aid)
    return todo


def sweep() -> dict[str, int]:
    """Periodic: evaluate every open alarmed account whose alarm level disagrees with its balance
    (an event lost between commit and listener, or a meter read that lowered a prepaid meter's
    remaining amount). Each in its own transaction; notices keep their keys, so nothing is sent twice."""
    with session_scope() as session:
        ids = list(session.scalars(select(Account.id).where(Account.status == "open",
                                                            Account.billing_mode.in_(ALARMED_MODES))
                                   .order_by(Account.id)))
    todo: list[int] = []
    for k in range(0, len(ids), 5000):
        todo.extend(needing_evaluation(ids[k:k + 5000]))
    each_in_own_transaction(todo, evaluate, "alarm sweep", log)
    return {"accounts": len(ids), "evaluated": len(todo)}


def state_for(session: Session, account_id: int) -> AlarmState:
    """The account's alarm row, created if missing, locked FOR UPDATE."""
    return locked_row(session, AlarmState, key={"account_id": account_id},
                      defaults={"level": 0, "crossing": 0, "notices_sent": 0, "last_balance_fen": 0})


def levels_of(session: Session, account: Account) -> list[AlarmLevel]:
    site = session.get(Site, account.site_id)
    return alarm_levels(account.alarm_levels, site.settings if site else None)


def evaluate(session: Session, account_id: int, *, now: datetime | None = None) -> AlarmState | None:
    """Bring an account's alarm state in line with its balance; send the notice of a new crossing."""
    now = now or clock.now()
    account = session.get(Account, account_id)
    if account is None:
        return None
    state = state_for(session, account_id)
    shown = _balance(session, account)
    balance = shown if shown is not None else state.last_balance_fen
    if account.status != "open" or account.billing_mode not in ALARMED_MODES:
        _clear(state, now, balance)
        return state
    if shown is None:  # a prepaid meter never read: unknown, so no alarm is raised or cleared
        return state
    levels = levels_of(session, account)
    level = alarm_level_for(balance, levels)
    if level > state.level:
        state.crossing += 1
        state.level = level
        state.notices_sent = 0
        state.fired_at = now
        state.cleared_at = None
        _send_notice(session, account, state, levels, balance, now)
    elif level < state.level:
        if level == 0:
            _clear(state, now, balance)
        else:
            state.level = level
            state.next_notice_at = None
    state.last_balance_fen = balance
    session.flush()
    return state


def send_due_repeats(now: datetime | None = None) -> int:
    """Periodic job: send the next notice of every crossing whose repeat is due. Returns how many."""
    now = now or clock.now()
    with session_scope() as session:
        ids = session.scalars(select(AlarmState.account_id).where(AlarmState.next_notice_at.is_not(None),
                                                                  AlarmState.next_notice_at <= now)).all()
    sent = 0
    for account_id in ids:
        with session_scope() as session:
            state = state_for(session, account_id)
            if state.next_notice_at is None or state.next_notice_at > now or state.level == 0:
                continue
            account = get_existing(session, Account, account_id)
            balance = _balance(session, account)
            if balance is None:
                continue
            levels = levels_of(session, account)
            if alarm_level_for(balance, levels) != state.level or account.status != "open":
                evaluate(session, account_id, now=now)
                continue
            _send_notice(session, account, state, levels, balance, now)
            sent += 1
    return sent


def _send_notice(session: Session, account: Account, state: AlarmState, levels: list[AlarmLevel],
                 balance: int, now: datetime) -> None:
    lvl = next(level for level in levels if level.level == state.level)
    n = state.notices_sent + 1
    room = session.get(Room, account.room_id)
    subject, body = alarm_text(room.number if room else "?", lvl, balance)
    notifications.notify_account(
        session, account, cause=f"alarm:{account.id}:{state.crossing}:{lvl.level}:{n}", kind="balance_alarm",
        subject=subject, body=body, level=lvl.level,
        data={"room": room.number if room else "", "balance": format_fen(balance), "level": lvl.level,
              "threshold": format_fen(lvl.amount_fen), "notice": n, "times": lvl.times,
              "time": now.isoformat(timespec="seconds")})
    state.notices_sent = n
    state.next_notice_at = now + timedelta(minutes=lvl.every_minutes) if n < lvl.times else None


def alarm_text(room: str, lvl: AlarmLevel, balance: int) -> tuple[str, str]:
    if balance <= 0 or lvl.amount_fen <= 0:
        return "余额已用完", (f"房间 {room} 余额 {format_fen(balance)} 元，已用完（第 {lvl.level} 级提醒）。"
                           "请尽快充值，以免停电停水。")
    return "余额不足提醒", (f"房间 {room} 余额 {format_fen(balance)} 元，已低于 {format_fen(lvl.amount_fen)} 元"
                      f"（第 {lvl.level} 级提醒）。请及时充值。")


def _clear(state: AlarmState, now: datetime, balance: int) -> None:
    if state.level:
        state.cleared_at = now
    state.level = 0
    state.notices_sent = 0
    state.next_notice_at = None
    state.last_balance_fen = balance


def _balance(session: Session, account: Account) -> int | None:
    """The balance the account shows (``core.alarms.shown``); None for a prepaid meter never read."""
    return shown_balance(session, account).fen
