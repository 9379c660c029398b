"""Hardware settings from the environment (listed in docs/hardware.md)."""
from __future__ import annotations

import os


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def reply_timeout() -> float:
    """Seconds to wait for a meter's reply to one request (METERPAY_METER_TIMEOUT, default 1.0)."""
    return _float("METERPAY_METER_TIMEOUT", 1.0)


def exchange_retries() -> int:
    """Extra tries of one idempotent request after a comm error (METERPAY_METER_RETRIES, default 1)."""
    return _int("METERPAY_METER_RETRIES", 1)


def offline_after() -> int:
    """Consecutive failed reads before a meter is marked offline (METERPAY_OFFLINE_AFTER, default 3)."""
    return max(1, _int("METERPAY_OFFLINE_AFTER", 3))


def command_backoff() -> float:
    """First retry delay of a command in seconds, doubled each attempt (METERPAY_COMMAND_BACKOFF, default 5)."""
    return _float("METERPAY_COMMAND_BACKOFF", 5.0)


def command_backoff_max() -> float:
    """Longest retry delay of a command in seconds (METERPAY_COMMAND_BACKOFF_MAX, default 300)."""
    return _float("METERPAY_COMMAND_BACKOFF_MAX", 300.0)


def poll_shard_gateways() -> int:
    """Gateways per poll job when a round is split over RQ workers (METERPAY_POLL_SHARD_GATEWAYS, 100)."""
    return max(1, _int("METERPAY_POLL_SHARD_GATEWAYS", 100))


def default_poll_minutes() -> int:
    return 15
