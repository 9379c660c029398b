"""Domain events, published after commit.

Core services call ``emit(session, "balance_changed", account_id=..)``; listeners (supply
control, alarms, meter-side recharge push) subscribe with ``@on("balance_changed")``. Listeners
run after the transaction commits, so they never see or act on work that was rolled back. A
listener that raises is logged, never turned into the caller's error.

Bulk paths (billing a chunk of readings) publish many events at once with
``emit_many(session, event, payloads)``: after commit, ONE job (queue "notify") runs every
listener for all the payloads, so follow-up work never throttles ingestion. A listener may give a
set-based version of itself with ``@handles_many(listener)``; ``dispatch_many`` calls that once
with all payloads instead of calling the listener once per payload.
"""
from __future__ import annotations

import importlib
import logging
from collections import defaultdict
from collections.abc import Callable

from sqlalchemy.orm import Session

from core.db import after_commit

log = logging.getLogger(__name__)

EVENTS = (
    "balance_changed",     # account_id, entry_kind, delta_fen, entry_id
    "account_opened",      # account_id
    "account_closed",      # account_id
    "reading_billed",      # meter_id, account_id
    "meter_online_changed",  # meter_id, online
    "command_finished",    # command_id, state, kind, requested_at, finished_at
    "payment_settled",     # order_id, channel, amount_fen
)

_listeners: dict[str, list[Callable[..., None]]] = defaultdict(list)


def on(event: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")

    def register(fn: Callable[..., None]) -> Callable[..., None]:
        if fn not in _listeners[event]:
            _listeners[event].append(fn)
        return fn
    return register


def disconnect(event: str, fn: Callable[..., None]) -> None:
    if fn in _listeners[event]:
        _listeners[event].remove(fn)


def emit(session: Session, event: str, **payload) -> None:
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    after_commit(session, lambda: dispatch(event, **payload))


def handles_many(listener: Callable[..., None]) -> Callable[[Callable[[list[dict]], None]], Callable]:
    """Register ``fn(payloads)`` as the batch form of ``listener`` (used by ``dispatch_many``)."""
    def register(fn: Callable[[list[dict]], None]) -> Callable[[list[dict]], None]:
        listener._meterpay_many = fn  # type: ignore[attr-defined]
        return fn
    return register


# emit_many with at most this many payloads dispatches in line after commit, like emit.
INLINE_MAX = 1


def emit_many(session: Session, event: str, payloads: list[dict], *, queue: str = "notify") -> None:
    """Publish ``event`` once per payload after commit, as one job for all of them (one per call)."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    payloads = [dict(p) for p in payloads]
    if not payloads:
        return
    if len(payloads) <= INLINE_MAX:
        for p in payloads:
            emit(session, event, **p)
        return
    from core import jobs
    jobs.enqueue_after_commit(session, dispatch_many, event, payloads, queue=queue)


def dispatch_many(event: str, payloads: list[dict]) -> None:
    """Run every listener of ``event`` for all ``payloads`` (the job ``emit_many`` enqueues)."""
    for fn in list(_listeners[event]):
        many = getattr(fn, "_meterpay_many", None)
        try:
            if many is not None:
                many(payloads)
                continue
        except Exception:
            log.exception("batch listener %s for %s failed", getattr(fn, "__name__", fn), event)
            continue
        for p in payloads:
            try:
                fn(**p)
            except Exception:
                log.exception("listener %s for %s failed", getattr(fn, "__name__", fn), event)


def dispatch(event: str, **payload) -> None:
    for fn in list(_listeners[event]):
        try:
            fn(**payload)
        except Exception:
            log.exception("listener %s for %s failed", getattr(fn, "__name__", fn), event)


# --- listener modules (was core/plugins.py) -------------------------------------------------------
# Modules whose import registers listeners (supply control, alarms, meter-side push). Every process
# that moves money (web, worker, CLI, tests) calls ``load_listeners()`` once, so a recharge restores
# supply whichever front took it.
LISTENER_MODULES = (
    "core.supply.auto",     # trip at zero / restore on recharge (prepaid-platform)
    "core.alarms.balance",  # balance alarm levels
    "core.alarms.device",   # device alarms (offline, consumption while tripped, tamper)
    "core.supply.meter_side",  # push recharges to meter-side prepaid meters
)

_loaded = False


def load_listeners() -> None:
    global _loaded
    if _loaded:
        return
    for name in LISTENER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    _loaded = True
