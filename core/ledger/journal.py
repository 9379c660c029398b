"""The ledger: balanced journal entries of integer fen, each under an idempotency key.

``post()`` is the one function that moves money. In one transaction it locks the wallets
involved (in id order, so two posts never deadlock), looks the key up again under the lock
(a duplicate is "already done", not an error), inserts the entry and its postings, and
updates the cached wallet balances. Only wallets carry a cached balance; system accounts
(cash, clearing, revenue, equity) are summed when asked, so they never become a hot row.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.errors import ValidationError
from core.ledger import balance_cache
from core.models import JournalEntry, LedgerAccount, Posting
from core.models.ledger import ENTRY_KINDS
from core.reports import rollups  # issue 15: report rollups, written with the postings

SYSTEM_KINDS = ("cash", "clearing", "revenue", "equity", "receivable")


@dataclass(frozen=True)
class Leg:
    """One side of an entry: a ledger account and a signed amount in fen."""

    ledger_account_id: int
    amount_fen: int


@dataclass(frozen=True)
class PostResult:
    entry_id: int
    created: bool  # False: the key was already posted; nothing moved this time


def new_key(prefix: str) -> str:
    return f"{prefix}:{uuid.uuid4().hex}"


def system_account(session: Session, code: str) -> LedgerAccount:
    """Get or create a system ledger account such as ``cash:desk`` or ``revenue:electricity``."""
    kind = code.split(":", 1)[0]
    if kind not in SYSTEM_KINDS:
        raise ValueError(f"not a system account code: {code!r}")
    acct = session.scalar(select(LedgerAccount).where(LedgerAccount.code == code))
    if acct is not None:
        return acct
    try:
        with session.begin_nested():
            acct = LedgerAccount(code=code, kind=kind, balance_fen=0)
            session.add(acct)
    except IntegrityError:  # another transaction created it first
        acct = session.scalars(select(LedgerAccount).where(LedgerAccount.code == code)).one()
    return acct


def create_wallet(session: Session, account_id: int) -> LedgerAccount:
    wallet = LedgerAccount(code=f"wallet:{account_id}", kind="wallet", account_id=account_id, balance_fen=0)
    session.add(wallet)
    session.flush()
    return wallet


def wallet_of(session: Session, account_id: int) -> LedgerAccount:
    wallet = session.scalar(select(LedgerAccount).where(LedgerAccount.account_id == account_id))
    if wallet is None:
        raise ValidationError(f"account {account_id} has no wallet")
    return wallet


def find_entry(session: Session, key: str) -> JournalEntry | None:
    return session.scalar(select(JournalEntry).where(JournalEntry.idempotency_key == key))


def lock_wallets(session: Session, ids: Iterable[int]) -> dict[int, int]:
    """Lock wallet rows in id order; return their current cached balances."""
    ids = sorted(set(ids))
    if not ids:
        return {}
    stmt = select(LedgerAccount.id, LedgerAccount.balance_fen).where(
        LedgerAccount.id.in_(ids), LedgerAccount.kind == "wallet").order_by(LedgerAccount.id).with_for_update()
    return {row.id: row.balance_fen for row in session.execute(stmt)}


def post(session: Session, *, key: str, kind: str, legs: Sequence[Leg], account_id: int | None = None,
         memo: str = "", actor: str = "system", front: str = "system", meta: dict | None = None,
         reverses_id: int | None = None, min_balance_fen: dict[int, int] | None = None) -> PostResult:
    """Post one balanced entry, exactly once per ``key``: the one place money moves.

    May: insert one ``JournalEntry`` and its ``Posting`` rows inside the caller's transaction, lock
    the wallets among ``legs`` (``SELECT .. FOR UPDATE`` in wallet id order, so two posts never
    deadlock), update their cached balances and tell the balance cache. It commits nothing, sends
    nothing and announces nothing: the caller commits, and the cashdesk verbs announce
    ``balance_changed`` after commit.

    Returns ``PostResult(entry_id, created=True)`` for a new entry; ``created=False`` with the
    existing entry's id when ``key`` was posted before (looked up again under the wallet locks, and
    once more after a unique-key race with a concurrent transaction): a duplicate cause is "already
    done", never an error and never a second movement. There is no unknown outcome: either the
    entry is in this transaction or an exception says why not.

    Raises ValidationError (empty or over-long key, unknown ``kind``, fewer than two legs, legs that
    do not sum to zero, a non-integer amount), and InsufficientFunds when a wallet in
    ``min_balance_fen`` (wallet id -> the lowest balance this entry may leave it at; a refund may not
    overdraw) would end below it. Nothing is written when it raises.
    """
    _validate(key, kind, legs)
    existing = find_entry(session, key)
    if existing is not None:
        return PostResult(existing.id, False)

    wallet_ids = _wallet_ids(session, [leg.ledger_account_id for leg in legs])
    balances = lock_wallets(session, wallet_ids)
    # Another transaction may have posted the same key while we waited for the lock.
    existing = find_entry(session, key)
    if existing is not None:
        return PostResult(existing.id, False)

    deltas: dict[int, int] = {}
    for leg in legs:
        deltas[leg.ledger_account_id] = deltas.get(leg.ledger_account_id, 0) + leg.amount_fen
    for wid, floor in (min_balance_fen or {}).items():
        if balances.get(wid, 0) + deltas.get(wid, 0) < floor:
            from core.errors import InsufficientFunds
            from core.ledger.money import format_fen
            raise InsufficientFunds(
                f"balance {format_fen(balances.get(wid, 0))} is not enough for this entry")

    try:
        with session.begin_nested():
            entry = JournalEntry(idempotency_key=key, kind=kind, account_id=account_id, memo=memo,
                                 actor=actor, front=front, meta=meta or {}, reverses_id=reverses_id)
            session.add(entry)
            session.flush()
            session.add_all([Posting(entry_id=entry.id, ledger_account_id=leg.ledger_account_id,
                                     amount_fen=leg.amount_fen) for leg in legs])
            for wid in sorted(wallet_ids):
                if deltas.get(wid):
                    session.execute(update(LedgerAccount).where(LedgerAccount.id == wid)
                                    .values(balance_fen=LedgerAccount.balance_fen + deltas[wid]))
            balance_cache.wallets_changed(session, [wid for wid in wallet_ids if deltas.get(wid)])
            session.flush()
            rollups.entry_posted(session, entry, legs, wallet_ids)  # issue 15: ledger_days, same transaction
    except IntegrityError:
        existing = find_entry(session, key)
        if existing is None:
            raise
        return PostResult(existing.id, False)
    # Keep loaded wallet objects in step with the UPDATE we just ran.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, LedgerAccount) and obj.id in wallet_ids:
            session.expire(obj, ["balance_fen"])
    return PostResult(entry.id, True)


def _validate(key: str, kind: str, legs: Sequence[Leg]) -> None:
    if not key or len(key) > 200:
        raise ValidationError("an entry needs an idempotency key of 1-200 characters", field="key")
    if kind not in ENTRY_KINDS:
        raise ValidationError(f"unknown entry kind {kind!r}", field="kind")
    if len(legs) < 2:
        raise ValidationError("an entry needs at least two postings")
    for leg in legs:
        if not isinstance(leg.amount_fen, int) or isinstance(leg.amount_fen, bool):
            raise ValidationError("posting amounts are integer fen")
    if sum(leg.amount_fen for leg in legs) != 0:
        raise ValidationError("postings of an entry must sum to zero")
    if all(leg.amount_fen == 0 for leg in legs):
        raise ValidationError("an entry must move money")


def _wallet_ids(session: Session, ids: list[int]) -> list[int]:
    rows = session.execute(select(LedgerAccount.id).where(LedgerAccount.id.in_(set(ids)),
                                                          LedgerAccount.kind == "wallet"))
    return [r.id for r in rows]


def reverse(session: Session, entry_id: int, *, actor: str = "system", front: str = "system",
            memo: str = "") -> PostResult:
    """Post the mirror image of an entry. An entry is reversed at most once."""
    original = session.get(JournalEntry, entry_id)
    if original is None:
        from core.errors import NotFound
        raise NotFound(f"no journal entry {entry_id}")
    if original.kind == "reversal":
        raise ValidationError("a reversal is not reversed; post a new entry instead")
    legs = [Leg(p.ledger_account_id, -p.amount_fen) for p in original.postings]
    return post(session, key=f"reversal:{original.id}", kind="reversal", legs=legs,
                account_id=original.account_id, memo=memo or f"reversal of entry {original.id}",
                actor=actor, front=front, reverses_id=original.id,
                meta={"reversed_kind": original.kind})


def balance_from_postings(session: Session, ledger_account_id: int) -> int:
    total = session.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0))
                           .where(Posting.ledger_account_id == ledger_account_id))
    return int(total or 0)


def account_balance(session: Session, account_id: int) -> int:
    """A tenant account's wallet balance in fen (the cached value, kept exact by post())."""
    bal = session.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.account_id == account_id))
    if bal is None:
        raise ValidationError(f"account {account_id} has no wallet")
    return int(bal)
