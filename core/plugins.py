"""Modules whose import registers signal listeners (supply control, alarms, meter-side push).

Every process that moves money (web, worker, CLI, tests) calls ``load_listeners()`` once, so a
recharge restores supply whichever front took it.
"""
from __future__ import annotations

import importlib

LISTENER_MODULES = (
    "core.supply_auto",   # trip at zero / restore on recharge (prepaid-platform)
    "core.alarms",        # balance alarm levels
    "core.meter_side",    # push recharges to meter-side prepaid meters
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
