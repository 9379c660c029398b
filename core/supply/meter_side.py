"""Meter-side prepaid: a recharge into the wallet is pushed to the meter as a "recharge" command.

In meter-side mode (表端计费) the meter holds the balance, so money credited to the wallet must
reach the meter. The command is keyed by the journal entry (``meter-recharge:<entry id>``), so a
replayed signal or a second listener run queues it once; the executor carries the purchase count
so a retried command is applied once by the meter too.
"""
from __future__ import annotations

import logging

from sqlalchemy import select

from core import signals
from core.db import session_scope
from core.models import Account, Meter
from core.supply import commands

log = logging.getLogger(__name__)

# Entry kinds that put tenant money on the meter (a desk top-up or a provider payment: both post "recharge").
PUSHED_KINDS = ("recharge",)


@signals.on("balance_changed")
def push_recharge_to_meter(account_id: int, entry_kind: str, delta_fen: int, entry_id: int | None = None,
                           **_ignored) -> None:
    if entry_kind not in PUSHED_KINDS or delta_fen <= 0 or entry_id is None:
        return
    with session_scope() as session:
        account = session.get(Account, account_id)
        if account is None or account.billing_mode != "prepaid-meter":
            return
        meter = session.scalar(select(Meter).where(Meter.account_id == account_id, Meter.status == "active",
                                                   Meter.kind == "electricity").order_by(Meter.id))
        if meter is None:
            meter = session.scalar(select(Meter).where(Meter.account_id == account_id, Meter.status == "active")
                                   .order_by(Meter.id))
        if meter is None:
            log.warning("meter-side account %s has no active meter; recharge %s not pushed", account_id, entry_id)
            return
        commands.request(session, meter.id, "recharge", {"amount_fen": int(delta_fen)},
                         key=f"meter-recharge:{entry_id}", actor="meter-side", front="system")
