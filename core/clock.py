"""The time automatic control and alarms see: ``clock.now()``; tests travel with ``clock.frozen(dt)``.

Friendly hours, deferred cuts and repeated alarm notices depend on the time of day; injecting it
here lets a test jump to Saturday 03:00 without sleeping.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from core.db import utcnow

_fixed: datetime | None = None


def now() -> datetime:
    return _fixed if _fixed is not None else utcnow()


def set_now(value: datetime | None) -> None:
    """Fix the clock at ``value`` (aware), or release it with None."""
    global _fixed
    if value is not None and value.tzinfo is None:
        raise ValueError("clock.set_now needs an aware datetime")
    _fixed = value


@contextmanager
def frozen(value: datetime) -> Iterator[None]:
    previous = _fixed
    set_now(value)
    try:
        yield
    finally:
        set_now(previous)
