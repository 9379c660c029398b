"""Email over SMTP (``METERPAY_SMTP_*``)."""
from __future__ import annotations

import smtplib
from email.message import EmailMessage

from bot import settings
from bot.channels.base import Channel, DeliveryError, register
from core.models import Notification


class Email(Channel):
    type = "email"
    title = "Email (SMTP)"
    settings = (("METERPAY_SMTP_HOST", False), ("METERPAY_SMTP_PORT", False), ("METERPAY_SMTP_USER", False),
                ("METERPAY_SMTP_PASSWORD", True), ("METERPAY_SMTP_FROM", False), ("METERPAY_SMTP_STARTTLS", False))

    @classmethod
    def configured(cls) -> bool:
        return bool(settings.env("METERPAY_SMTP_HOST"))

    def send(self, note: Notification) -> str | None:
        host = settings.env("METERPAY_SMTP_HOST")
        if not host:
            raise DeliveryError("METERPAY_SMTP_HOST is not set", permanent=True)
        msg = EmailMessage()
        msg["From"] = settings.env("METERPAY_SMTP_FROM", "meterpay@localhost")
        msg["To"] = note.recipient
        msg["Subject"] = note.subject
        msg["Message-ID"] = f"<meterpay-{note.id}@{host}>"
        msg.set_content(note.body)
        try:
            with smtplib.SMTP(host, int(settings.env("METERPAY_SMTP_PORT", "25")),
                              timeout=settings.http_timeout()) as smtp:
                if settings.env("METERPAY_SMTP_STARTTLS", "0").lower() in ("1", "true", "yes"):
                    smtp.starttls()
                user = settings.env("METERPAY_SMTP_USER")
                if user:
                    smtp.login(user, settings.env("METERPAY_SMTP_PASSWORD"))
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(f"email: recipient refused {exc.recipients}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"email: {type(exc).__name__}: {exc}") from None
        return msg["Message-ID"]


register(Email)
