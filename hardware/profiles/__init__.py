"""Meter profiles: one file per model, each registering one ``Profile`` (Redash-style registry).

A profile is data (register map or data identifiers, types, scaling, commands) plus the small
amount of code its protocol family needs (``hardware.profiles.base``). Adding a model is adding
a file in this folder that calls ``register(...)``.
"""
from __future__ import annotations

import importlib
import pkgutil

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


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base", "modbus", "dlt645_base", "cjt188_base"):
            importlib.import_module(f"{__name__}.{info.name}")
