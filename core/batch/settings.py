"""Batch task settings, declared in the settings registry (``core.config``); listed in the README."""
from __future__ import annotations

from core import config
from core.config import Var

config.declare(
    "batch",
    Var("METERPAY_BATCH_COMMAND_TTL", "int", "900",
        "seconds a batch item's meter command is retried before the item is skipped as offline", minimum=10),
    Var("METERPAY_BATCH_WINDOW", "int", "6",
        "batch commands in flight per gateway in one batch engine (single commands and polls go first)", minimum=1),
    Var("METERPAY_BATCH_MAX_ITEMS", "int", "50000", "most items one batch task may hold", minimum=1),
)


def command_ttl() -> int:
    return config.get("METERPAY_BATCH_COMMAND_TTL")


def window() -> int:
    return config.get("METERPAY_BATCH_WINDOW")


def max_items() -> int:
    return config.get("METERPAY_BATCH_MAX_ITEMS")
