"""Many consumption entries at once, with every invariant of ``core.ledger.post``.

In the caller's transaction: lock the wallets involved in id order, look every key up under the
lock (an existing key is "already done" and moves nothing), write the entries and their two
balanced postings, and add each wallet's delta to its cached balance. On PostgreSQL a large batch
goes in with COPY; small batches and other databases go through ``core.ledger.post`` one by one.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.bulk_sql import copy_lines, copy_text, next_ids
from core.db import is_postgres, utcnow
from core.errors import ValidationError
from core.ledger import balance_cache
from core.ledger import journal as ledger
from core.ledger.journal import Leg
from core.models import LedgerAccount
from core.reports import rollups  # issue 15: report rollups, written with the postings

# Below this many entries the ordinary one-entry path is as quick and simpler.
COPY_THRESHOLD = 50


@dataclass(frozen=True)
class Consumption:
    """Deduct ``amount_fen`` (> 0) from ``wallet_id`` to ``revenue_id`` under ``key``."""

    key: str
    account_id: int
    wallet_id: int
    revenue_id: int
    amount_fen: int
    memo: str = ""
    meta: dict = field(default_factory=dict)


def post_consumptions(session: Session, items: list[Consumption], *, actor: str = "system",
                      front: str = "job") -> dict[str, int | None]:
    """Post each item once; returns key -> entry id for the entries created by this call
    (a key posted before maps to None)."""
    for it in items:
        if not isinstance(it.amount_fen, int) or isinstance(it.amount_fen, bool) or it.amount_fen <= 0:
            raise ValidationError(f"{it.key}: consumption amount must be positive integer fen")
    if len({it.key for it in items}) != len(items):
        raise ValidationError("one key twice in one batch of consumptions")
    if not items:
        return {}
    if len(items) < COPY_THRESHOLD or not is_postgres(session):
        out: dict[str, int | None] = {}
        for it in items:
            res = ledger.post(session, key=it.key, kind="consumption",
                              legs=[Leg(it.wallet_id, -it.amount_fen), Leg(it.revenue_id, it.amount_fen)],
                              account_id=it.account_id, memo=it.memo, actor=actor, front=front, meta=it.meta)
            out[it.key] = res.entry_id if res.created else None
        return out
    return _copy_post(session, items, actor=actor, front=front)


def _copy_post(session: Session, items: list[Consumption], *, actor: str, front: str) -> dict[str, int | None]:
    conn = session.connection()
    lock_wallets(session, {it.wallet_id for it in items})
    keys = [it.key for it in items]
    done = set(conn.execute(text("SELECT idempotency_key FROM journal_entries WHERE idempotency_key = ANY(:k)"),
                            {"k": keys}).scalars())
    todo = [it for it in items if it.key not in done]
    out: dict[str, int | None] = {k: None for k in done}
    if not todo:
        return out
    ids = next_ids(session, "journal_entries", len(todo))
    copy_lines(session, ENTRIES_COPY, entry_lines(ids, todo, actor=actor, front=front))
    copy_lines(session, POSTINGS_COPY, posting_lines(ids, todo))
    deltas: dict[int, int] = {}
    for it in todo:
        deltas[it.wallet_id] = deltas.get(it.wallet_id, 0) - it.amount_fen
    apply_wallet_deltas(session, deltas)
    rollups.consumptions_posted(session, ids, todo)  # issue 15: ledger_days, same transaction
    out.update({it.key: eid for eid, it in zip(ids, todo)})
    return out


# The pieces of the COPY path, also used by billing to stream entries behind its readings
# (core/billing/ingest.py): lock the wallets first, write entries and postings with ids taken
# from the sequence, then add each wallet's delta to its cached balance.

ENTRIES_COPY = ("COPY journal_entries (id, idempotency_key, kind, account_id, memo, actor, front, meta, created_at) "
                "FROM STDIN")
POSTINGS_COPY = "COPY postings (entry_id, ledger_account_id, amount_fen) FROM STDIN"


def lock_wallets(session: Session, wallet_ids) -> None:
    """Lock the wallets in id order (FOR UPDATE); refuse a ledger account that is not a wallet."""
    wallet_ids = sorted(set(wallet_ids))
    if not wallet_ids:
        return
    locked = session.connection().execute(
        text("SELECT id FROM ledger_accounts WHERE id = ANY(:ids) AND kind = 'wallet' ORDER BY id FOR UPDATE"),
        {"ids": wallet_ids}).scalars().all()
    if len(locked) != len(wallet_ids):
        raise ValidationError("a consumption names a ledger account that is not a wallet")


def entry_lines(ids: list[int], items: list[Consumption], *, actor: str, front: str) -> list[str]:
    now = utcnow().isoformat()
    t = copy_text
    who = f"{t(actor)}\t{t(front)}"
    return [f"{eid}\t{t(it.key)}\tconsumption\t{t(it.account_id)}\t{t(it.memo)}\t{who}\t"
            f"{t(json.dumps(it.meta))}\t{now}\n" for eid, it in zip(ids, items)]


def posting_lines(ids: list[int], items: list[Consumption]) -> list[str]:
    return [f"{eid}\t{it.wallet_id}\t{-it.amount_fen}\n{eid}\t{it.revenue_id}\t{it.amount_fen}\n"
            for eid, it in zip(ids, items)]


def apply_wallet_deltas(session: Session, deltas: dict[int, int]) -> None:
    """Add each wallet's delta (fen) to its cached balance; the wallets are locked already."""
    deltas = {w: d for w, d in deltas.items() if d}
    if not deltas:
        return
    wids = sorted(deltas)
    session.connection().execute(
        text("UPDATE ledger_accounts AS la SET balance_fen = la.balance_fen + d.delta "
             "FROM unnest(CAST(:ids AS bigint[]), CAST(:deltas AS bigint[])) AS d(id, delta) WHERE la.id = d.id"),
        {"ids": wids, "deltas": [deltas[w] for w in wids]})
    wallets_updated(session, wids)


def wallet_deltas_sql(deltas: dict[int, int]) -> str:
    """``apply_wallet_deltas``'s UPDATE as one statement with its values written in (integers
    only), for billing's streaming writer, which runs it on the transaction's connection while
    billing goes on (the wallets are locked already); the caller then calls ``wallets_updated``
    once for all of them. Empty when no delta is non-zero."""
    wids = sorted(w for w, d in deltas.items() if d)
    if not wids:
        return ""
    ids = ",".join(str(int(w)) for w in wids)
    amounts = ",".join(str(int(deltas[w])) for w in wids)
    return ("UPDATE ledger_accounts AS la SET balance_fen = la.balance_fen + d.delta "
            f"FROM unnest('{{{ids}}}'::bigint[], '{{{amounts}}}'::bigint[]) AS d(id, delta) WHERE la.id = d.id")


def wallets_updated(session: Session, wallet_ids) -> None:
    """After the cached balances of ``wallet_ids`` changed in this transaction: every process's
    balance cache is told at commit, and this session's loaded wallets read them again."""
    wids = sorted(set(wallet_ids))
    if not wids:
        return
    balance_cache.wallets_changed(session, wids)
    changed = set(wids)
    for obj in list(session.identity_map.values()):
        if isinstance(obj, LedgerAccount) and obj.id in changed:
            session.expire(obj, ["balance_fen"])
