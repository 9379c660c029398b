"""Alarm channels as small registered classes (Redash destinations style).

Each channel is one class with a ``type`` name (the same names as ``core.alarms.notifications.CHANNELS``),
the environment variables it reads (secret ones marked), and one verb, ``send(note)``, which
delivers a ``core.models.Notification`` and returns the provider's reference or raises
``DeliveryError``. ``get(name)`` finds a class; ``register(cls)`` at the bottom of each file
adds it, and a second class under one name fails fast.
"""
from __future__ import annotations

import importlib

from bot.channels.base import Channel, DeliveryError, channels, get, register

MODULES = ("wechat_template", "miniapp_subscribe", "sms", "email", "voice", "webhook", "wechat_cs")

for _name in MODULES:
    importlib.import_module(f"bot.channels.{_name}")

__all__ = ["Channel", "DeliveryError", "channels", "get", "register"]
