"""A JSON POST shared by the HTTP channels (SMS, voice, webhook)."""
from __future__ import annotations

import requests

from bot import settings
from bot.channels.base import DeliveryError


def post_json(url: str, payload: dict, headers: dict | None = None) -> dict:
    try:
        res = requests.post(url, json=payload, headers=headers or {}, timeout=settings.http_timeout())
    except requests.RequestException as exc:
        raise DeliveryError(f"{url}: {type(exc).__name__}") from None
    if res.status_code >= 500 or res.status_code == 429:
        raise DeliveryError(f"{url}: HTTP {res.status_code}")
    if res.status_code >= 400:
        raise DeliveryError(f"{url}: HTTP {res.status_code} {res.text[:200]}", permanent=True)
    try:
        return res.json() if res.content else {}
    except ValueError:
        return {}
