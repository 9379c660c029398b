"""The balance an account shows: what tenants, managers, alarms and reports read as "余额".

- Platform-billed and postpaid accounts (平台计费, 后付费): the wallet's balance.
- Prepaid-meter accounts (表端计费): the meter holds the money, so the balance is the remaining
  amount its credit meter last reported, with the time it was read. The wallet holds only money
  paid in that the meter has not confirmed yet; it is shown beside it as ``pending_fen``
  (a confirmed recharge moves it to ``clearing:meter-credit``, ``core.ledger.cashdesk.meter_credit``).
  A meter never read shows ``fen=None``: unknown, never a number made up from the wallet.

One rule for everyone: the monitor, the room page, the mini-program, the bot and the balance
alarms all read it here (``shown_balance`` for one account, ``shown_balances`` for many).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.alarms.status import AlarmLevel, fee_status
from core.models import Account, LedgerAccount, Meter

SOURCES = ("wallet", "meter")


@dataclass(frozen=True)
class ShownBalance:
    fen: int | None                 # the balance in fen; None: a prepaid meter that was never read
    source: str = "wallet"          # wallet | meter
    read_at: datetime | None = None  # when the meter reported it (source "meter")
    pending_fen: int = 0            # prepaid-meter: wallet money not yet confirmed on the meter


def credit_meter(session: Session, account_id: int) -> Meter | None:
    """The meter that holds a prepaid-meter account's credit: its first active electricity meter,
    else its first active meter; None when it has none."""
    return pick_credit_meter(session.scalars(select(Meter).where(Meter.account_id == account_id,
                                                                 Meter.status == "active").order_by(Meter.id)
                                             .execution_options(populate_existing=True)))


def pick_credit_meter(meters: Iterable[Meter]) -> Meter | None:
    first: Meter | None = None
    for m in meters:
        if m.status != "active":
            continue
        if m.kind == "electricity":
            return m
        first = first or m
    return first


def shown_from(billing_mode: str, wallet_fen: int | None, meter: Meter | None) -> ShownBalance:
    """The shown balance from an account's mode, wallet balance and credit meter (pure)."""
    if billing_mode != "prepaid-meter":
        return ShownBalance(int(wallet_fen or 0))
    return meter_shown(wallet_fen, meter.remaining_fen if meter else None, meter.remaining_read_at if meter else None)


def meter_shown(wallet_fen: int | None, remaining_fen: int | None, read_at: datetime | None) -> ShownBalance:
    """A prepaid-meter account's shown balance from its credit meter's last report (pure)."""
    wallet = int(wallet_fen or 0)
    if remaining_fen is None:
        return ShownBalance(None, "meter", None, wallet)
    return ShownBalance(int(remaining_fen), "meter", read_at, wallet)


def shown_fee_status(shown: ShownBalance, levels: list[AlarmLevel], *, keep_power: bool = False,
                     closed: bool = False) -> str:
    """``core.alarms.status.fee_status`` of the shown balance; ``unread`` for a prepaid meter never read."""
    if shown.fen is None and not closed and not keep_power:
        return "unread"
    return fee_status(shown.fen or 0, levels, keep_power=keep_power, closed=closed)


def shown_balance(session: Session, account: Account) -> ShownBalance:
    wallet = session.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.account_id == account.id)
                            .execution_options(populate_existing=True))
    meter = credit_meter(session, account.id) if account.billing_mode == "prepaid-meter" else None
    return shown_from(account.billing_mode, wallet, meter)


def shown_balances(session: Session, account_ids: Iterable[int]) -> dict[int, ShownBalance]:
    """``shown_balance`` of many accounts in two queries (accounts with wallets, then the meters of
    the prepaid-meter ones)."""
    ids = sorted(set(account_ids))
    out: dict[int, ShownBalance] = {}
    for k in range(0, len(ids), 5000):
        part = ids[k:k + 5000]
        rows = session.execute(select(Account.id, Account.billing_mode, LedgerAccount.balance_fen)
                               .outerjoin(LedgerAccount, LedgerAccount.account_id == Account.id)
                               .where(Account.id.in_(part))).all()
        meter_side = [aid for aid, mode, _ in rows if mode == "prepaid-meter"]
        meters: dict[int, list[Meter]] = {}
        if meter_side:
            for m in session.scalars(select(Meter).where(Meter.account_id.in_(meter_side), Meter.status == "active")
                                     .order_by(Meter.account_id, Meter.id)):
                meters.setdefault(int(m.account_id or 0), []).append(m)
        for aid, mode, wallet in rows:
            out[aid] = shown_from(mode, wallet, pick_credit_meter(meters.get(aid, [])))
    return out
