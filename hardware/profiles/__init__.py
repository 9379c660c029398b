"""Meter profiles: one file per model, each registering one ``Profile`` (Redash-style registry).

A profile is data (register map or data identifiers, types, scaling, commands) plus the small
amount of code its protocol family needs (``hardware.profiles.base``). Adding a model is adding
a file in this folder that calls ``register(...)``.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading

from hardware.profiles.base import Profile

PROFILES: dict[str, Profile] = {}


def register(profile: Profile) -> Profile:
    if profile.name in PROFILES:
        raise RuntimeError(f"meter profile {profile.name!r} registered twice")
    PROFILES[profile.name] = profile
    return profile


def get(name: str) -> Profile:
    _load()
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown meter profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


def names() -> list[str]:
    _load()
    return sorted(PROFILES)


_loaded = False
_load_lock = threading.RLock()
_HELPERS = ("base", "modbus", "dlt645_base", "cjt188_base")


def _load() -> None:
    """Import every profile module once. Gateways are worked in parallel threads, so the first
    callers of a fresh process may arrive together: one imports under the lock while the others
    wait, and the registry counts as loaded only once every module is in (a failed import leaves
    it unloaded and raises, so the next caller tries again rather than seeing a partial list)."""
    global _loaded
    if _loaded:
        return
    with _load_lock:
        if _loaded:
            return
        for info in pkgutil.iter_modules(__path__):
            if info.name not in _HELPERS:
                importlib.import_module(f"{__name__}.{info.name}")
        _loaded = True
