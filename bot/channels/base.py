"""The channel base class and the registry."""
from __future__ import annotations

from typing import ClassVar

from core.models import Notification


class DeliveryError(Exception):
    """A channel could not deliver; the delivery job retries later (``permanent`` ones are not retried)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class Channel:
    type: ClassVar[str] = ""
    title: ClassVar[str] = ""
    # (env var, secret?) pairs this channel reads; shown in docs/bot.md.
    settings: ClassVar[tuple[tuple[str, bool], ...]] = ()

    @classmethod
    def configured(cls) -> bool:
        return True

    def send(self, note: Notification) -> str | None:
        raise NotImplementedError


_registry: dict[str, type[Channel]] = {}


def register(cls: type[Channel]) -> type[Channel]:
    if not cls.type:
        raise ValueError(f"{cls.__name__} has no type")
    if cls.type in _registry and _registry[cls.type] is not cls:
        raise ValueError(f"channel {cls.type!r} registered twice")
    _registry[cls.type] = cls
    return cls


def get(name: str) -> type[Channel]:
    try:
        return _registry[name]
    except KeyError:
        raise DeliveryError(f"no channel {name!r}", permanent=True) from None


def channels() -> dict[str, type[Channel]]:
    return dict(_registry)
