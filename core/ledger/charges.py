"""Custom charges and common-area apportionment: tenant wallet -> a revenue account (issue 12).

- ``post_charge``: one charge (property fee, rent, ...) from the wallet to ``revenue:charge:<code>``,
  entry kind ``charge``. The batch task and the admin call it for one-off charges; the month-end run
  for small batches.
- ``post_apportion``: one account's share of a master meter to ``revenue:apportion:<utility>``,
  entry kind ``apportionment``.
- ``post_many``: many of both at once with every invariant of ``journal.post`` (the month-end run:
  100,000 accounts). On PostgreSQL from ``bulk.COPY_THRESHOLD`` items: the COPY path of
  ``core.ledger.bulk`` (wallets locked in id order, keys looked up under the lock, entries and
  postings by COPY, cached balances and the ``ledger_days`` rollups in the same transaction).

The contract they share: each item is one balanced entry of two postings (wallet -amount, revenue
+amount) under the caller's key (``charge:<scheme id>:<account id>:<period>``,
``apportion:<rule id>:<account id>:<period>``), whose last part is the period, and ``meta.period``
says it too, so finance dates it at the period's start and splits income by revenue account. A key
posted before moves nothing (``created=False`` / None), whoever posted it. A charge may take the
wallet below zero (arrears): alarms and supply control act on the balance afterwards (announced as
``balance_changed`` after commit). Nothing is committed here and nothing talks to a meter or a
provider, so there is no unknown outcome: the entries are in the caller's transaction or an
exception says why not and nothing was written. Raises ValidationError for an amount that is not
positive integer fen, an empty code, an account without a wallet or two items with one key.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import signals
from core.bulk_sql import copy_lines, copy_text, ids_in, next_ids
from core.db import is_postgres, utcnow
from core.errors import ValidationError
from core.ledger import balance_cache, bulk
from core.ledger import journal as ledger
from core.ledger.journal import Leg, PostResult
from core.models import LedgerAccount
from core.reports import rollups  # issue 15: ledger_days, in the same transaction

CODE = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
KINDS = {"charge": "charge", "apportion": "apportionment"}  # item kind -> entry kind


def charge_revenue(code: str) -> str:
    if not CODE.match(code or ""):
        raise ValidationError("code: ascii letters, digits, '_', '-' or '.', at most 40", field="code")
    return f"revenue:charge:{code}"


def apportion_revenue(utility: str) -> str:
    if utility not in ("electricity", "water"):
        raise ValidationError(f"unknown utility {utility!r}", field="utility")
    return f"revenue:apportion:{utility}"


def _check_amount(amount_fen: int) -> None:
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise ValidationError("amount: must be positive integer fen", field="amount")


def post_charge(session: Session, *, account_id: int, code: str, name: str, amount_fen: int, key: str,
                memo: str = "", meta: dict | None = None, actor: str = "system", front: str = "system") -> PostResult:
    """Deduct a custom charge: wallet -> ``revenue:charge:<code>``, kind ``charge``, under ``key``.

    May take the wallet below zero. ``meta`` should carry ``period`` (finance dates the entry at the
    period's start; without it, the key's last part, else the posting time). Returns PostResult
    (``created=False``: the key was posted before, nothing moved). Announces ``balance_changed``
    after commit when it moved money. Raises ValidationError (see the module)."""
    _check_amount(amount_fen)
    revenue = ledger.system_account(session, charge_revenue(code))
    wallet = ledger.wallet_of(session, account_id)
    result = ledger.post(session, key=key, kind="charge",
                         legs=[Leg(wallet.id, -amount_fen), Leg(revenue.id, amount_fen)], account_id=account_id,
                         memo=memo or name, actor=actor, front=front,
                         meta={"code": code, "name": name, **(meta or {})})
    _announce(session, [(account_id, -amount_fen, result.entry_id)] if result.created else [], "charge")
    return result


def post_apportion(session: Session, *, account_id: int, utility: str, name: str, amount_fen: int, key: str,
                   memo: str = "", meta: dict | None = None, actor: str = "system",
                   front: str = "system") -> PostResult:
    """Deduct an apportioned share: wallet -> ``revenue:apportion:<utility>``, kind ``apportionment``.
    Same contract as ``post_charge``."""
    _check_amount(amount_fen)
    revenue = ledger.system_account(session, apportion_revenue(utility))
    wallet = ledger.wallet_of(session, account_id)
    result = ledger.post(session, key=key, kind="apportionment",
                         legs=[Leg(wallet.id, -amount_fen), Leg(revenue.id, amount_fen)], account_id=account_id,
                         memo=memo or name, actor=actor, front=front, meta={"name": name, **(meta or {})})
    _announce(session, [(account_id, -amount_fen, result.entry_id)] if result.created else [], "apportionment")
    return result


@dataclass(frozen=True)
class Deduction:
    """One item of ``post_many``: ``kind`` "charge" or "apportion"; ``revenue_code`` the ledger
    account credited (``revenue:charge:<code>`` or ``revenue:apportion:<utility>``)."""

    key: str
    kind: str
    account_id: int
    amount_fen: int
    revenue_code: str
    memo: str = ""
    meta: dict = field(default_factory=dict)


def post_many(session: Session, items: Sequence[Deduction], *, actor: str = "system",
              front: str = "job") -> dict[str, int | None]:
    """Post each item once (see the module). Returns key -> the id of the entry this call created,
    None for a key posted before. Announces ``balance_changed`` for every wallet it moved, as one
    job after commit."""
    items = list(items)
    for it in items:
        _check_amount(it.amount_fen)
        if it.kind not in KINDS:
            raise ValidationError(f"{it.key}: unknown item kind {it.kind!r}")
        if not it.revenue_code.startswith(("revenue:charge:", "revenue:apportion:")):
            raise ValidationError(f"{it.key}: {it.revenue_code!r} is not a charge or apportionment revenue account")
    if len({it.key for it in items}) != len(items):
        raise ValidationError("one key twice in one batch of charges")
    if not items:
        return {}
    revenue = {code: ledger.system_account(session, code).id for code in sorted({it.revenue_code for it in items})}
    accounts = {it.account_id for it in items}
    if is_postgres(session):  # the ids as one text: no per-element adaptation of a 100,000-id list
        rows = session.execute(text(f"SELECT account_id, id FROM ledger_accounts WHERE account_id = "
                                    f"{_BIGINTS.format('ids')}"), {"ids": _joined(accounts)})
    else:
        rows = session.execute(select(LedgerAccount.account_id, LedgerAccount.id).where(
            ids_in(session, LedgerAccount.account_id, accounts)))
    wallets: dict[int, int] = {int(a): int(w) for a, w in rows if a is not None}
    missing = sorted({it.account_id for it in items} - set(wallets))
    if missing:
        raise ValidationError(f"account {missing[0]} has no wallet")
    out: dict[str, int | None] = {}
    moved: list[tuple[int, int, int]] = []
    if len(items) < bulk.COPY_THRESHOLD or not is_postgres(session):
        for it in items:
            res = ledger.post(session, key=it.key, kind=KINDS[it.kind], account_id=it.account_id,
                              legs=[Leg(wallets[it.account_id], -it.amount_fen),
                                    Leg(revenue[it.revenue_code], it.amount_fen)],
                              memo=it.memo, actor=actor, front=front, meta=it.meta)
            out[it.key] = res.entry_id if res.created else None
            if res.created:
                moved.append((it.account_id, -it.amount_fen, res.entry_id))
    else:
        out = _copy_post(session, items, wallets, revenue, actor=actor, front=front, moved=moved)
    _announce(session, moved, "charge")
    return out


def _copy_post(session: Session, items: list[Deduction], wallets: dict[int, int], revenue: dict[str, int], *,
               actor: str, front: str, moved: list) -> dict[str, int | None]:
    """``bulk``'s COPY path for charges: wallets locked in id order, keys looked up under the lock,
    entries and postings by COPY, cached balances and ``ledger_days`` in the same transaction. Id
    and key lists go to PostgreSQL as one text each (``string_to_array``): no per-element adaptation."""
    conn = session.connection()
    wids = sorted(set(wallets.values()))
    locked = conn.execute(text(f"SELECT id FROM ledger_accounts WHERE id = {_BIGINTS.format('ids')} "
                               "AND kind = 'wallet' ORDER BY id FOR UPDATE"), {"ids": _joined(wids)}).scalars().all()
    if len(locked) != len(wids):
        raise ValidationError("a charge names a ledger account that is not a wallet")
    done = set(conn.execute(text("SELECT idempotency_key FROM journal_entries WHERE idempotency_key = "
                                 "ANY(string_to_array(:k, :sep))"),
                            {"k": "\n".join(it.key for it in items), "sep": "\n"}).scalars())
    todo = [it for it in items if it.key not in done]
    out: dict[str, int | None] = {k: None for k in done}
    if not todo:
        return out
    ids = next_ids(session, "journal_entries", len(todo))
    now = utcnow().isoformat()
    who = f"{copy_text(actor)}\t{copy_text(front)}"
    texts: dict[str, str] = {}  # items of one batch share memos and meta objects: escape and encode each once
    metas: dict[int, str] = {}

    def memo(it: Deduction) -> str:
        return texts.get(it.memo) or texts.setdefault(it.memo, copy_text(it.memo))

    def meta(it: Deduction) -> str:
        m = metas.get(id(it.meta))
        if m is None:
            m = metas[id(it.meta)] = copy_text(json.dumps(it.meta, ensure_ascii=False))
        return m
    # generators, not lists: COPY sends each block as it is made (PostgreSQL inserts while Python formats)
    copy_lines(session, bulk.ENTRIES_COPY, (
        f"{eid}\t{_key(it.key)}\t{KINDS[it.kind]}\t{it.account_id}\t{memo(it)}\t{who}\t{meta(it)}\t{now}\n"
        for eid, it in zip(ids, todo)))
    copy_lines(session, bulk.POSTINGS_COPY, (
        f"{eid}\t{wallets[it.account_id]}\t{-it.amount_fen}\n{eid}\t{revenue[it.revenue_code]}\t{it.amount_fen}\n"
        for eid, it in zip(ids, todo)))
    deltas: dict[int, int] = {}
    for it in todo:
        w = wallets[it.account_id]
        deltas[w] = deltas.get(w, 0) - it.amount_fen
    _apply_deltas(session, deltas)
    _rollup(session, todo, revenue)
    for eid, it in zip(ids, todo):
        out[it.key] = eid
        moved.append((it.account_id, -it.amount_fen, eid))
    return out


_BIGINTS = "ANY(CAST(string_to_array(:{}, ',') AS bigint[]))"


def _joined(values) -> str:
    return ",".join(map(str, values))


def _apply_deltas(session: Session, deltas: dict[int, int]) -> None:
    """``bulk.apply_wallet_deltas`` with the lists as text: add each locked wallet's delta."""
    deltas = {w: d for w, d in deltas.items() if d}
    if not deltas:
        return
    wids = sorted(deltas)
    session.connection().execute(text(
        "UPDATE ledger_accounts AS la SET balance_fen = la.balance_fen + d.delta FROM unnest("
        "CAST(string_to_array(:ids, ',') AS bigint[]), CAST(string_to_array(:deltas, ',') AS bigint[])) "
        "AS d(id, delta) WHERE la.id = d.id"), {"ids": _joined(wids), "deltas": _joined(deltas[w] for w in wids)})
    balance_cache.wallets_changed(session, wids)
    for obj in list(session.identity_map.values()):
        if isinstance(obj, LedgerAccount) and obj.id in deltas:
            session.expire(obj, ["balance_fen"])


_PLAIN = re.compile(r"^[A-Za-z0-9_.:-]+$")


def _key(key: str) -> str:
    """A key as COPY text: charge and apportionment keys are plain (ids, codes, a period), others escaped."""
    return key if _PLAIN.match(key) else copy_text(key)


def _rollup(session: Session, items: list[Deduction], revenue: dict[str, int]) -> None:
    """The revenue postings of COPY-written entries into ``ledger_days``, dated as
    ``rollups.entry_day`` dates a charge: the local start of ``meta.period`` (else the key's end).

    The same sums ``rollups.LedgerRows`` would write, merged the way ``rollups`` merges (a temporary
    table, one ``INSERT .. SELECT .. ON CONFLICT`` in key order), with the rows written as plain
    COPY text here: one row per (account, day, revenue account, kind), the site joined in."""
    if not rollups.ENABLED:
        return
    zones: dict[int, str] = dict(session.execute(text(
        "SELECT a.id, s.timezone FROM accounts a JOIN sites s ON s.id = a.site_id WHERE a.id = "
        + _BIGINTS.format("ids")), {"ids": _joined({it.account_id for it in items})}).all())
    now = utcnow()
    tzs: dict[str | None, object] = {}
    days: dict[tuple, object] = {}
    sums: dict[tuple, list[int]] = {}
    for it in items:
        tz_name = zones.get(it.account_id)
        kind = KINDS[it.kind]
        dkey = (tz_name, id(it.meta), kind)  # items share meta objects (one period each)
        day = days.get(dkey)
        if day is None or it.meta.get("period") is None:
            tz = tzs.get(tz_name) or tzs.setdefault(tz_name, rollups.zone(tz_name))
            day = days[dkey] = rollups.entry_day(kind, it.key, it.meta, now, tz)  # type: ignore[arg-type]
        k = (it.account_id, day, revenue[it.revenue_code], kind)
        row = sums.get(k)
        if row is None:
            sums[k] = [it.amount_fen, 1]
        else:
            row[0] += it.amount_fen
            row[1] += 1
    conn = session.connection()
    conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS _charge_ledger_days (account_id bigint, day date, "
                         "ledger_account_id bigint, kind varchar(20), amount_fen bigint, postings integer) "
                         "ON COMMIT DELETE ROWS")
    conn.exec_driver_sql("DELETE FROM _charge_ledger_days")
    copy_lines(session, "COPY _charge_ledger_days FROM STDIN", [
        f"{a}\t{d}\t{r}\t{k}\t{v[0]}\t{v[1]}\n" for (a, d, r, k), v in sums.items()])
    conn.exec_driver_sql(
        "INSERT INTO ledger_days (account_id, day, ledger_account_id, kind, site_id, amount_fen, postings) "
        "SELECT t.account_id, t.day, t.ledger_account_id, t.kind, min(a.site_id), sum(t.amount_fen), "
        "sum(t.postings) FROM _charge_ledger_days t LEFT JOIN accounts a ON a.id = t.account_id "
        "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 ON CONFLICT (account_id, day, ledger_account_id, kind) "
        "DO UPDATE SET amount_fen = ledger_days.amount_fen + EXCLUDED.amount_fen, "
        "postings = ledger_days.postings + EXCLUDED.postings")


def _announce(session: Session, moved: list[tuple[int, int, int]], kind: str) -> None:
    if not moved:
        return
    per: dict[int, list[int]] = {}
    for account_id, delta, entry_id in moved:
        row = per.setdefault(account_id, [0, entry_id])
        row[0] += delta
        row[1] = entry_id
    signals.emit_many(session, "balance_changed", [
        {"account_id": a, "entry_kind": kind, "delta_fen": d, "entry_id": e} for a, (d, e) in sorted(per.items())])
