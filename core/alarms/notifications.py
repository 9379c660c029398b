"""Notifications: one row per (cause, channel, recipient), delivered by a job on queue "notify".

Core decides *who* hears *what* on *which channel*; the bot front delivers (``bot.delivery``
holds the channel classes: WeChat template, mini-program subscribe, SMS, email, voice, webhook,
customer-service message). A notification's ``key`` is its cause plus channel plus recipient,
unique in the table, so one alarm crossing can never be sent twice whatever retries happen.
"""
from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import config
from core.db import insert_if_absent, utcnow
from core.jobs import enqueue_after_commit
from core.models import Account, Manager, ManagerRole, Notification, Site, Tenant

log = logging.getLogger(__name__)

DELIVER = "bot.delivery.deliver"
CHANNELS = ("wechat_template", "miniapp_subscribe", "sms", "email", "voice", "webhook", "wechat_cs")
TENANT_CHANNELS = ("wechat_template", "miniapp_subscribe", "sms", "email", "voice")
# Voice calls wake people up: only for the deepest balance level unless the site says otherwise.
VOICE_MIN_LEVEL = 3


def default_channels() -> list[str]:
    return [c for c in config.get("METERPAY_NOTIFY_DEFAULT_CHANNELS") if c in TENANT_CHANNELS]


def tenant_recipient(tenant: Tenant, channel: str) -> str | None:
    if channel in ("wechat_template", "wechat_cs"):
        return tenant.wechat_openid
    if channel == "miniapp_subscribe":
        return getattr(tenant, "miniapp_openid", None) or tenant.wechat_openid
    if channel in ("sms", "voice"):
        return tenant.phone or None
    if channel == "email":
        return tenant.email
    return None


def add(session: Session, *, key: str, kind: str, channel: str, recipient: str, subject: str = "",
        body: str = "", data: dict | None = None, site_id: int | None = None,
        account_id: int | None = None) -> Notification | None:
    """Queue one message. Returns None when this key was queued before (nothing new is sent)."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}")
    key = key[:200]
    if session.scalar(select(Notification.id).where(Notification.key == key)) is not None:
        return None
    new_id = insert_if_absent(session, Notification, key=key, kind=kind, channel=channel,
                              recipient=recipient[:200], subject=subject[:200], body=body, data=data or {},
                              status="pending", attempts=0, site_id=site_id, account_id=account_id,
                              created_at=utcnow())
    if new_id is None:
        return None
    enqueue_after_commit(session, DELIVER, new_id, queue="notify")
    return session.get(Notification, new_id)


def notify_account(session: Session, account: Account, *, cause: str, kind: str, subject: str, body: str,
                   data: dict | None = None, level: int = 0) -> list[Notification]:
    """Tell an account's tenant on each channel they chose, and the site's webhook if it has one."""
    tenant = session.get(Tenant, account.tenant_id)
    site = session.get(Site, account.site_id)
    channels = list(tenant.notify_channels or default_channels()) if tenant else []
    min_voice = int((site.settings or {}).get("voice_min_level", VOICE_MIN_LEVEL)) if site else VOICE_MIN_LEVEL
    sent = []
    for channel in channels:
        if channel not in TENANT_CHANNELS or (channel == "voice" and level < min_voice):
            continue
        recipient = tenant_recipient(tenant, channel) if tenant is not None else None
        if not recipient:
            continue
        note = add(session, key=f"{cause}:{channel}", kind=kind, channel=channel, recipient=recipient,
                   subject=subject, body=body, data=data, site_id=account.site_id, account_id=account.id)
        if note is not None:
            sent.append(note)
    hook = site_webhook(site)
    if hook:
        note = add(session, key=f"{cause}:webhook", kind=kind, channel="webhook", recipient=hook, subject=subject,
                   body=body, data=data, site_id=account.site_id, account_id=account.id)
        if note is not None:
            sent.append(note)
    return sent


def notify_site_managers(session: Session, site_id: int, *, cause: str, kind: str, subject: str, body: str,
                         data: dict | None = None) -> list[Notification]:
    """Tell every manager of a site bound to WeChat (template message), and the site's webhook."""
    site = session.get(Site, site_id)
    rows = session.execute(select(Manager).join(ManagerRole, ManagerRole.manager_id == Manager.id)
                           .where(Manager.active.is_(True), Manager.wechat_openid.is_not(None),
                                  (ManagerRole.site_id == site_id) | ManagerRole.site_id.is_(None))).scalars()
    sent = []
    for manager in {m.id: m for m in rows}.values():
        note = add(session, key=f"{cause}:wechat_template:m{manager.id}", kind=kind, channel="wechat_template",
                   recipient=manager.wechat_openid or "", subject=subject, body=body, data=data, site_id=site_id)
        if note is not None:
            sent.append(note)
    hook = site_webhook(site)
    if hook:
        note = add(session, key=f"{cause}:webhook", kind=kind, channel="webhook", recipient=hook, subject=subject,
                   body=body, data=data, site_id=site_id)
        if note is not None:
            sent.append(note)
    return sent


def site_webhook(site: Site | None) -> str | None:
    url = ((site.settings or {}).get("webhook_url") if site else None) or config.get("METERPAY_WEBHOOK_URL")
    return url or None


def set_tenant_channels(session: Session, tenant_id: int, channels: list[str], *, email: str | None = None,
                        actor: str = "system", front: str = "system") -> Tenant:
    """A tenant's choice of alarm channels (and email address), checked and audited."""
    from core import audit
    from core.errors import NotFound, ValidationError
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant {tenant_id}")
    unknown = [c for c in channels if c not in TENANT_CHANNELS]
    if unknown:
        raise ValidationError(f"channels: unknown {', '.join(unknown)}; one of {', '.join(TENANT_CHANNELS)}",
                              field="channels")
    if email is not None:
        email = email.strip()
        if "@" not in email or len(email) > 200 or any(ch.isspace() for ch in email):
            raise ValidationError("email: not an address", field="email")
        tenant.email = email
    if "email" in channels and not tenant.email:
        raise ValidationError("email: give an address first", field="email")
    tenant.notify_channels = sorted(set(channels))
    audit.record(session, actor=actor, front=front, action="set_notify_channels", site_id=tenant.site_id,
                 channels=tenant.notify_channels)
    session.flush()
    return tenant
