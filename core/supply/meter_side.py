"""Meter-side prepaid: a recharge into the wallet is pushed to the meter as a "recharge" command,
and the money moves from the wallet to meter credit when the meter confirms it.

In meter-side mode (表端计费) the meter holds the balance, so money credited to the wallet must
reach the meter. The command is keyed by the journal entry (``meter-recharge:<entry id>``), so a
replayed signal, a second listener run or the sweep queue it once; the executor carries the
purchase count so a retried command is applied once by the meter too. When the meter confirms
it, ``credit_confirmed`` (called by the executor in the same transaction as the confirmation)
posts ``meter-credit:<command id>``: wallet -> ``clearing:meter-credit``. So a prepaid-meter
wallet holds only money paid in and not yet on the meter; what the tenant has is the meter's
remaining amount (``core.alarms.shown``).

The after-commit listener is the fast path. ``sweep()`` (periodic) makes it durable: a recharge
whose push was lost (the process died between commit and listener, or the listener failed) is
pushed, and a confirmed push without its meter credit is credited.
"""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import String, and_, cast, exists, literal, select
from sqlalchemy.orm import Session, aliased

from core import signals
from core.alarms.shown import credit_meter
from core.db import session_scope, utcnow
from core.ledger import PostResult, cashdesk
from core.models import Account, JournalEntry, LedgerAccount, MeterCommand, Posting
from core.supply import commands

log = logging.getLogger(__name__)

# Entry kinds that put tenant money on the meter (a desk top-up or a provider payment: both post "recharge").
PUSHED_KINDS = ("recharge",)
PUSH_PREFIX = "meter-recharge:"
SWEEP_WINDOW = timedelta(days=2)
SWEEP_BATCH = 500


@signals.on("balance_changed")
def push_recharge_to_meter(account_id: int, entry_kind: str, delta_fen: int, entry_id: int | None = None,
                           **_ignored) -> None:
    if entry_kind not in PUSHED_KINDS or delta_fen <= 0 or entry_id is None:
        return
    with session_scope() as session:
        push_entry(session, account_id, entry_id, int(delta_fen))


def push_entry(session: Session, account_id: int, entry_id: int, amount_fen: int, *,
               warn: bool = True, enqueue: bool = True, attempt: int = 1) -> MeterCommand | None:
    """Queue the recharge command that puts ``amount_fen`` of entry ``entry_id`` on the account's
    credit meter (key ``meter-recharge:<entry id>``: once, however often called). None when the
    account is not billed on the meter, is closed (its wallet was settled) or has no active meter.
    ``enqueue=False``: the row only (a batch engine sends it; ``retry_due`` would too).
    ``attempt`` > 1: a new push of the same money after the earlier one ended without reaching the
    meter (failed or expired; a batch item's retry): key ``meter-recharge:<entry id>:<attempt>``."""
    account = session.get(Account, account_id)
    if account is None or account.billing_mode != "prepaid-meter" or account.status != "open":
        return None
    meter = credit_meter(session, account_id)
    if meter is None:
        if warn:
            log.warning("meter-side account %s has no active meter; recharge %s not pushed", account_id, entry_id)
        return None
    return commands.request(session, meter.id, "recharge", {"amount_fen": int(amount_fen)},
                            key=f"{PUSH_PREFIX}{entry_id}" + (f":{attempt}" if attempt > 1 else ""),
                            actor="meter-side", front="system", enqueue=enqueue)


def account_of(session: Session, cmd: MeterCommand) -> int | None:
    """The account whose wallet paid for a ``meter-recharge:<entry>[:<attempt>]`` command (None for
    any other)."""
    key = cmd.idempotency_key or ""
    entry = key[len(PUSH_PREFIX):].split(":", 1)[0]
    if cmd.kind != "recharge" or not key.startswith(PUSH_PREFIX) or not entry.isdigit():
        return None
    return session.scalar(select(JournalEntry.account_id).where(JournalEntry.id == int(entry)))


def credit_confirmed(session: Session, cmd: MeterCommand) -> PostResult | None:
    """The meter confirmed recharge ``cmd``: if it carried wallet money (key ``meter-recharge:*``),
    move that money from the wallet to meter credit (``cashdesk.meter_credit``, key
    ``meter-credit:<command id>``, idempotent). None for a command that carried no wallet money."""
    if cmd.kind != "recharge" or cmd.state != "confirmed":
        return None
    account_id = account_of(session, cmd)
    amount = (cmd.params or {}).get("amount_fen")
    if account_id is None or not isinstance(amount, int) or amount <= 0:
        return None
    return cashdesk.meter_credit(session, account_id, amount, command_id=cmd.id, meter_id=cmd.meter_id)


def sweep(window: timedelta = SWEEP_WINDOW) -> dict[str, int]:
    """Periodic: make the after-commit effects of meter-side money converge.

    (a) a ``recharge`` entry of the last ``window`` on a prepaid-meter account that put money in
    the wallet, was not reversed and has no ``meter-recharge:<entry>`` command gets one (the same
    key as the listener's, so a late listener adds nothing); (b) a confirmed ``meter-recharge:*``
    command without its ``meter-credit:<command>`` entry is credited (also converts data from
    before meter credit existed). Each in its own transaction, at most 500 of each per run.
    """
    counts = {"pushed": 0, "no_meter": 0, "credited": 0}
    with session_scope() as session:
        missing = session.execute(_missing_pushes(utcnow() - window)).all()
        uncredited = list(session.scalars(_uncredited_commands()))
    for entry_id, account_id, amount in missing:
        try:
            with session_scope() as session:
                cmd = push_entry(session, account_id, entry_id, int(amount), warn=False)
            counts["pushed" if cmd is not None else "no_meter"] += 1
        except Exception:
            log.exception("pushing recharge entry %s to the meter failed", entry_id)
    for command_id in uncredited:
        try:
            with session_scope() as session:
                cmd = session.get(MeterCommand, command_id)
                if cmd is not None and credit_confirmed(session, cmd) is not None:
                    counts["credited"] += 1
        except Exception:
            log.exception("meter credit of command %s failed", command_id)
    if counts["pushed"] or counts["credited"]:
        log.info("meter-side sweep: %s", counts)
    return counts


def _missing_pushes(since):
    reversal = aliased(JournalEntry)
    push_key = literal(PUSH_PREFIX) + cast(JournalEntry.id, String)
    return (select(JournalEntry.id, JournalEntry.account_id, Posting.amount_fen)
            .join(Account, Account.id == JournalEntry.account_id)
            .join(LedgerAccount, LedgerAccount.account_id == Account.id)
            .join(Posting, and_(Posting.entry_id == JournalEntry.id, Posting.ledger_account_id == LedgerAccount.id))
            .where(JournalEntry.kind.in_(PUSHED_KINDS), JournalEntry.created_at >= since,
                   Account.billing_mode == "prepaid-meter", Account.status == "open", Posting.amount_fen > 0,
                   ~exists().where(reversal.reverses_id == JournalEntry.id),
                   ~exists().where(MeterCommand.idempotency_key == push_key))
            .order_by(JournalEntry.id).limit(SWEEP_BATCH))


def _uncredited_commands():
    credit_key = literal("meter-credit:") + cast(MeterCommand.id, String)
    return (select(MeterCommand.id)
            .where(MeterCommand.kind == "recharge", MeterCommand.state == "confirmed",
                   MeterCommand.idempotency_key.like(f"{PUSH_PREFIX}%"),
                   ~exists().where(JournalEntry.idempotency_key == credit_key))
            .order_by(MeterCommand.id).limit(SWEEP_BATCH))
