"""A per-process cache of the tenant balance read, kept exact by PostgreSQL LISTEN/NOTIFY.

The write side is one helper, ``wallets_changed(session, wallet_ids)``, called by
``core.ledger.post`` and the bulk ledger path wherever a wallet's cached balance changes, and by
``core.sites.selfservice.unbind``. Inside the writer's transaction it issues ``pg_notify`` on the channel
``meterpay_balance``; PostgreSQL delivers the notification only if and when that transaction
commits (a rolled-back transaction or savepoint sends nothing). The helper also drops the entries
in its own process right after the commit, so a process always reads its own writes.

The read side (``BalanceCache``, one per database and process, used by
``core.sites.selfservice.bound_balance_fen``) keeps ``(openid, account id) -> balance`` for reads that
found a binding (a miss -- not bound, no such account -- is never cached, so a new binding needs no
notification). A listener thread holds its own connection with ``LISTEN meterpay_balance`` and
drops the entries a notification names. Rules that keep it exact:

* nothing is served or stored until LISTEN is in place; the cache is emptied when it starts;
* a read stores its value only if no notification arrived between its start and its end (a
  generation counter), so a value read just before a commit cannot outlive that commit's
  notification;
* when the listener connection fails (or a periodic ping on it does), the cache is emptied and
  disabled, every read goes to the database, and the thread reconnects with a backoff;
* entries also expire after ``METERPAY_BALANCE_CACHE_TTL`` seconds (default 60): a safety net for
  writes that bypass the ledger (hand-written SQL, a restored dump), which send no notification.

Between a commit in another process and the moment this process's listener receives its
notification (well under a millisecond on a healthy connection) a read can still return the
balance from just before the commit, as a read that started a moment earlier would have.

The same listener keeps a second, smaller map exact: the tariff plan summaries the usage chart
shows (``plan_summary``: plan name, unit, the price in force on a day), dropped whenever a plan or
one of its versions is written (``p`` notifications, sent by the ORM's flush of a ``TariffPlan`` or
``TariffVersion``; every plan write goes through the ORM, ``core.tariffs.store``), under the same
rules (stored only when no notification came in during the read, emptied with the cache, the TTL).

``METERPAY_BALANCE_CACHE=0`` turns the cache off (every read goes to the database); writers notify
regardless, so processes with the cache on stay exact whatever the others are configured to do.
SQLite never caches.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from sqlalchemy import event, inspect, text
from sqlalchemy.orm import Session, object_session

from core import config
from core.models import LedgerAccount, TariffPlan, TariffVersion, TenantBinding

CHANNEL = "meterpay_balance"
MAX_ENTRIES = 100_000
PING_SECONDS = 5.0          # the listener checks its connection this often when idle
WAKE_SECONDS = 1.0          # and looks at its stop flag this often
MAX_BACKOFF_SECONDS = 5.0
_MAX_PAYLOAD = 7900         # bytes of one notification's payload (PostgreSQL: under 8000)

log = logging.getLogger(__name__)


def enabled() -> bool:
    return bool(config.get("METERPAY_BALANCE_CACHE"))


def ttl_seconds() -> float:
    return float(config.get("METERPAY_BALANCE_CACHE_TTL"))


# --- the write side -----------------------------------------------------------------------

def wallets_changed(session: Session, wallet_ids: Iterable[int]) -> None:
    """Tell every process's balance cache, at commit, that these wallets' balances changed.

    Call it inside the transaction that changes them (after the UPDATE). PostgreSQL only; a
    no-op elsewhere."""
    _notify(session, "w", wallet_ids)


def _notify(session: Session, kind: str, ids: Iterable[int], connection=None) -> None:
    ids = sorted({int(i) for i in ids if i is not None})
    if not ids or (connection or session.get_bind()).dialect.name != "postgresql":
        return
    run = (connection or session).execute
    for payload in _payloads(kind, ids):
        run(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})
    from core.db import after_commit
    after_commit(session, lambda: _invalidate_locally(kind, ids))


# A safety net for ORM writes that would otherwise need to remember the calls above: a binding
# deleted or changed, or a wallet's balance changed on a loaded object, notifies by itself when
# the session flushes it. (ledger.post and the bulk path write with UPDATE statements and call
# wallets_changed themselves.)

@event.listens_for(TenantBinding, "after_delete")
@event.listens_for(TenantBinding, "after_update")
def _binding_written(_mapper, connection, target) -> None:
    session = object_session(target)
    if session is not None:
        ids = [target.account_id, *inspect(target).attrs.account_id.history.deleted]
        _notify(session, "a", ids, connection)


@event.listens_for(LedgerAccount, "after_update")
def _wallet_written(_mapper, connection, target) -> None:
    session = object_session(target)
    if session is not None and inspect(target).attrs.balance_fen.history.has_changes():
        _notify(session, "w", [target.id], connection)


def _plan_written(_mapper, connection, target) -> None:
    """A plan or one of its versions was inserted, updated or deleted: its plan's summaries go."""
    session = object_session(target)
    if session is None:
        return
    if isinstance(target, TariffPlan):
        ids = [target.id]
    else:  # a version: its plan, and the plan it left if it was moved
        ids = [target.plan_id, *inspect(target).attrs.plan_id.history.deleted]
    _notify(session, "p", ids, connection)


for _model in (TariffPlan, TariffVersion):
    for _event in ("after_insert", "after_update", "after_delete"):
        event.listen(_model, _event, _plan_written)


def _payloads(kind: str, ids: list[int]) -> list[str]:
    """``w12,13,14``: as few payloads as fit PostgreSQL's limit (under 8000 bytes each)."""
    out: list[str] = []
    part: list[str] = []
    size = 1
    for i in ids:
        s = str(i)
        if part and size + len(s) + 1 > _MAX_PAYLOAD:
            out.append(kind + ",".join(part))
            part, size = [], 1
        part.append(s)
        size += len(s) + 1
    if part:
        out.append(kind + ",".join(part))
    return out


def _invalidate_locally(kind: str, ids: list[int]) -> None:
    for cache in list(_caches.values()):
        cache.invalidate(kind, ids)


# --- the read side ------------------------------------------------------------------------

_caches: dict[str, BalanceCache] = {}
_caches_lock = threading.Lock()


def cache_for(key: str, connect_args: Callable[[], tuple[Any, Any]]) -> BalanceCache | None:
    """The cache of this process for one database (``key``: its URL; ``connect_args``: how the
    listener connects, asked once), started on first use; None when turned off."""
    if not enabled():
        return None
    cache = _caches.get(key)
    if cache is not None and cache.pid == os.getpid():
        return cache
    with _caches_lock:
        cache = _caches.get(key)
        if cache is None or cache.pid != os.getpid():  # a forked child starts its own listener
            cache = BalanceCache(connect_args())
            _caches[key] = cache
            cache.start()
        return cache


def clear_all() -> None:
    """Empty every cache of this process, listeners stay (tests empty tables with TRUNCATE, which
    sends no notification)."""
    for cache in list(_caches.values()):
        cache.clear()


def reset() -> None:
    """Stop every listener and forget every cache of this process (tests; switching databases)."""
    with _caches_lock:
        caches = list(_caches.values())
        _caches.clear()
    for cache in caches:
        cache.stop()


class BalanceCache:
    def __init__(self, connect_args: tuple[tuple, dict]):
        self.pid = os.getpid()
        self._connect_args = connect_args
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, int], tuple[int, float]] = {}   # (openid, account) -> (fen, expires)
        self._openids: dict[int, set[str]] = {}                         # account -> openids cached
        self._account_of_wallet: dict[int, int] = {}
        self._plans: dict[tuple[int, Any], tuple[dict, float]] = {}    # (plan, day) -> (summary, expires)
        self._generation = 0
        self._ttl = ttl_seconds()
        self.ready = False          # True only while LISTEN is in place
        self.hits = 0
        self.stores = 0
        self.notifications = 0
        self.connections = 0        # successful LISTEN connections so far
        self.backend_pid: int | None = None
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn = None

    # reads ------------------------------------------------------------------------------

    def get(self, openid: str, account_id: int) -> int | None:
        if not self.ready:
            return None
        hit = self._entries.get((openid, account_id))
        if hit is None or hit[1] < time.monotonic():
            return None
        self.hits += 1
        return hit[0]

    def begin(self) -> int | None:
        """A token for a read about to go to the database, or None if its value may not be stored."""
        return self._generation if self.ready else None

    def store(self, token: int | None, openid: str, account_id: int, wallet_id: int, balance_fen: int) -> None:
        if token is None:
            return
        with self._lock:
            if not self.ready or token != self._generation:
                return  # a notification (or a reconnect) came in while the value was read
            if len(self._entries) >= MAX_ENTRIES:
                self._clear()
            self._entries[(openid, account_id)] = (balance_fen, time.monotonic() + self._ttl)
            self._openids.setdefault(account_id, set()).add(openid)
            self._account_of_wallet[wallet_id] = account_id
            self.stores += 1

    def get_plan(self, plan_id: int, day) -> dict | None:
        """A plan summary stored by ``store_plan`` (a copy), or None."""
        if not self.ready:
            return None
        hit = self._plans.get((plan_id, day))
        if hit is None or hit[1] < time.monotonic():
            return None
        self.hits += 1
        return dict(hit[0])

    def store_plan(self, token: int | None, plan_id: int, day, summary: dict) -> None:
        """Keep ``summary`` (``core.tariffs.store.plan_summary(plan_id, day)``) read after ``begin()``
        gave ``token``, unless a notification came in meanwhile."""
        if token is None:
            return
        with self._lock:
            if not self.ready or token != self._generation:
                return
            if len(self._plans) >= MAX_ENTRIES // 10:
                self._plans.clear()
            self._plans[(plan_id, day)] = (dict(summary), time.monotonic() + self._ttl)

    # invalidation -----------------------------------------------------------------------

    def invalidate(self, kind: str, ids: Iterable[int]) -> None:
        with self._lock:
            self._generation += 1
            if kind == "p":  # plans change rarely: every summary goes
                self._plans.clear()
                return
            for i in ids:
                account_id = self._account_of_wallet.pop(i, None) if kind == "w" else i
                if account_id is None:
                    continue
                for openid in self._openids.pop(account_id, ()):
                    self._entries.pop((openid, account_id), None)

    def _handle(self, payload: str) -> None:
        self.notifications += 1
        kind, rest = payload[:1], payload[1:]
        try:
            ids = [int(x) for x in rest.split(",") if x]
        except ValueError:
            ids = None
        if kind not in ("w", "a", "p") or ids is None:
            log.warning("balance cache: unreadable notification %r; emptying the cache", payload[:80])
            self.clear()
            return
        self.invalidate(kind, ids)

    def _clear(self) -> None:
        self._generation += 1
        self._entries.clear()
        self._openids.clear()
        self._account_of_wallet.clear()
        self._plans.clear()

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def _set_ready(self, ready: bool) -> None:
        with self._lock:
            self.ready = ready
            self._clear()

    # the listener -----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="balance-cache-listener", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = False) -> None:
        """Off at once; the thread closes its connection within a second."""
        self._stopping.set()
        self._set_ready(False)
        if wait and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=WAKE_SECONDS + 6)

    def _connect(self):
        args, kwargs = self._connect_args
        kwargs = {**kwargs, "autocommit": True}
        kwargs.setdefault("connect_timeout", 5)
        # A silently dead peer: keep-alives notice it while idle, tcp_user_timeout while the ping waits.
        for name, value in (("keepalives", 1), ("keepalives_idle", 10), ("keepalives_interval", 5),
                            ("keepalives_count", 3), ("tcp_user_timeout", 10_000)):
            kwargs.setdefault(name, value)
        return psycopg.connect(*args, **kwargs)

    def _run(self) -> None:
        backoff = 0.1
        failures = 0
        while not self._stopping.is_set():
            conn = None
            try:
                conn = self._connect()
                self._conn = conn
                conn.execute(f"LISTEN {CHANNEL}")
                self.backend_pid = conn.info.backend_pid
                self._set_ready(True)   # empty, and from now on every commit is heard
                self.connections += 1
                if failures:
                    log.warning("balance cache: listener connected again; cache on")
                failures, backoff = 0, 0.1
                pinged = time.monotonic()
                while not self._stopping.is_set():
                    for n in conn.notifies(timeout=WAKE_SECONDS):
                        self._handle(n.payload)
                    if time.monotonic() - pinged >= PING_SECONDS and not self._stopping.is_set():
                        conn.execute("SELECT 1")  # a dead connection shows up here at the latest
                        pinged = time.monotonic()
            except (psycopg.Error, OSError, ValueError) as exc:  # connection lost or a garbled payload: reconnect
                if not self._stopping.is_set():
                    failures += 1
                    (log.warning if failures == 1 else log.debug)(
                        "balance cache: listener connection lost (%s); reading from the database until it is back",
                        type(exc).__name__)
            finally:
                self._set_ready(False)
                self._conn = None
                if conn is not None:
                    try:
                        conn.close()
                    except (psycopg.Error, OSError):
                        pass
            self._stopping.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
