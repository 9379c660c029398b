"""Domain events, published after commit.

Core services call ``emit(session, "balance_changed", account_id=..)``; listeners (supply
control, alarms, meter-side recharge push) subscribe with ``@on("balance_changed")``. Listeners
run after the transaction commits, so they never see or act on work that was rolled back. A
listener that raises is logged, never turned into the caller's error.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable

from sqlalchemy.orm import Session

from core.db import after_commit

log = logging.getLogger(__name__)

EVENTS = (
    "balance_changed",     # account_id, entry_kind, delta_fen, entry_id
    "account_opened",      # account_id
    "account_closed",      # account_id
    "reading_billed",      # meter_id, account_id
    "meter_online_changed",  # meter_id, online
    "command_finished",    # command_id, state
    "payment_settled",     # order_id
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


def dispatch(event: str, **payload) -> None:
    for fn in list(_listeners[event]):
        try:
            fn(**payload)
        except Exception:  # noqa: BLE001 - a listener's failure is not the caller's
            log.exception("listener %s for %s failed", getattr(fn, "__name__", fn), event)
