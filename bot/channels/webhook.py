"""Generic webhook: ``POST <site webhook_url>`` with the notification as JSON, signed
``X-Meterpay-Signature: sha256=<hex HMAC of the body>`` with ``METERPAY_WEBHOOK_SECRET`` when set."""
from __future__ import annotations

import hashlib
import hmac
import json

import requests

from bot import settings
from bot.channels.base import Channel, DeliveryError, register
from core.models import Notification


def payload(note: Notification) -> dict:
    return {"id": note.id, "kind": note.kind, "subject": note.subject, "body": note.body, "data": note.data or {},
            "site_id": note.site_id, "account_id": note.account_id,
            "created_at": note.created_at.isoformat(timespec="seconds")}


class Webhook(Channel):
    type = "webhook"
    title = "Generic webhook (JSON POST)"
    settings = (("METERPAY_WEBHOOK_URL", False), ("METERPAY_WEBHOOK_SECRET", True))

    def send(self, note: Notification) -> str | None:
        raw = json.dumps(payload(note), ensure_ascii=False, sort_keys=True).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        secret = settings.env("METERPAY_WEBHOOK_SECRET")
        if secret:
            headers["X-Meterpay-Signature"] = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        try:
            res = requests.post(note.recipient, data=raw, headers=headers, timeout=settings.http_timeout())
        except requests.RequestException as exc:
            raise DeliveryError(f"webhook: {type(exc).__name__}") from None
        if res.status_code >= 300:
            raise DeliveryError(f"webhook: HTTP {res.status_code}", permanent=400 <= res.status_code < 500
                                and res.status_code != 429)
        return None


register(Webhook)
