"""Hardware settings, declared in the settings registry (``core.config``); listed in the README."""
from __future__ import annotations

from core import config
from core.config import Var

config.declare(
    "hardware",
    Var("METERPAY_METER_TIMEOUT", "float", "1.0", "seconds to wait for one reply", minimum=0.01),
    Var("METERPAY_METER_RETRIES", "int", "1",
        "extra tries of an idempotent read after a comm error (recharge sends are never retried blindly)",
        minimum=0),
    Var("METERPAY_OFFLINE_AFTER", "int", "3", "consecutive failed reads before a meter is offline", minimum=1),
    Var("METERPAY_COMMAND_BACKOFF", "float", "5", "first command retry delay, seconds; doubles each attempt",
        minimum=0),
    Var("METERPAY_COMMAND_BACKOFF_MAX", "float", "300", "longest command retry delay, seconds", minimum=0),
    Var("METERPAY_COMMAND_LEASE", "float", "30",
        "seconds a worker holds a running command without renewing it (renewed every third of it while the "
        "job runs); a command whose worker died is taken over one lease later", minimum=1),
    Var("METERPAY_POLL_SHARD_GATEWAYS", "int", "100", "gateways per poll job when a round is split over RQ workers",
        minimum=1),
)


def reply_timeout() -> float:
    """Seconds to wait for a meter's reply to one request."""
    return config.get("METERPAY_METER_TIMEOUT")


def exchange_retries() -> int:
    """Extra tries of one idempotent request after a comm error."""
    return config.get("METERPAY_METER_RETRIES")


def offline_after() -> int:
    """Consecutive failed reads before a meter is marked offline."""
    return config.get("METERPAY_OFFLINE_AFTER")


def command_backoff() -> float:
    """First retry delay of a command in seconds, doubled each attempt."""
    return config.get("METERPAY_COMMAND_BACKOFF")


def command_backoff_max() -> float:
    """Longest retry delay of a command in seconds."""
    return config.get("METERPAY_COMMAND_BACKOFF_MAX")


def command_lease() -> float:
    """Seconds a running command's lease lasts; its worker renews it every third of that."""
    return config.get("METERPAY_COMMAND_LEASE")


def poll_shard_gateways() -> int:
    """Gateways per poll job when a round is split over RQ workers."""
    return config.get("METERPAY_POLL_SHARD_GATEWAYS")


def default_poll_minutes() -> int:
    return 15
