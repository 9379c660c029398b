"""Every channel delivers through its real protocol to a local stand-in, logs its status, and
retries on failure."""
from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot import channels, delivery
from core.alarms import notifications
from core.models import Notification

T0 = datetime(2026, 11, 25, 4, 0, tzinfo=UTC)


def _queue(session, channel, recipient, kind="balance_alarm", key=None, **data):
    note = notifications.add(session, key=key or f"test:{channel}:{recipient}", kind=kind, channel=channel,
                             recipient=recipient, subject="余额不足提醒", body="房间 A301 余额 19.50 元",
                             data={"room": "A301", "balance": "19.50", **data})
    session.commit()  # eager jobs: delivered now
    session.expire_all()
    return session.get(Notification, note.id)


def test_the_registry_matches_the_channels_core_knows():
    assert sorted(channels.channels()) == sorted(notifications.CHANNELS)


def test_official_account_template_message(session, sandbox):
    note = _queue(session, "wechat_template", "o-tenant")
    assert note.status == "sent" and note.provider_ref
    [sent] = sandbox.sent("template")
    assert sent["touser"] == "o-tenant" and sent["template_id"] == "tpl-balance"
    assert sent["data"]["keyword1"]["value"] == "A301" and sent["data"]["keyword2"]["value"] == "19.50"
    assert sent["miniprogram"]["appid"] == "wxminiapp000001" and sent["_appid"] == "wx0123456789abcdef"


def test_device_alarms_use_their_own_template(session, sandbox):
    _queue(session, "wechat_template", "o-manager", kind="device_alarm")
    assert sandbox.sent("template")[0]["template_id"] == "tpl-device"


def test_mini_program_subscribe_message(session, sandbox):
    note = _queue(session, "miniapp_subscribe", "o-mini")
    assert note.status == "sent"
    [sent] = sandbox.sent("subscribe")
    assert sent["touser"] == "o-mini" and sent["template_id"] == "sub-balance"
    assert sent["data"]["amount2"]["value"] == "19.50" and sent["_appid"] == "wxminiapp000001"


def test_customer_service_message(session, sandbox):
    _queue(session, "wechat_cs", "o-manager", kind="chat")
    [sent] = sandbox.sent("custom")
    assert sent["msgtype"] == "text" and "19.50" in sent["text"]["content"]


def test_sms(session, sandbox):
    note = _queue(session, "sms", "13900000009")
    assert note.status == "sent" and note.provider_ref.startswith("sandbox-sms-")
    [sent] = sandbox.sent("sms")
    assert sent["PhoneNumbers"] == "13900000009" and "19.50" in sent["TemplateParam"]


def test_voice_call(session, sandbox):
    note = _queue(session, "voice", "13900000009")
    assert note.status == "sent" and sandbox.sent("voice")[0]["CalledNumber"] == "13900000009"


def test_email_over_smtp(session, sandbox, smtp_server):
    note = _queue(session, "email", "tenant@example.com")
    assert note.status == "sent"
    [envelope] = smtp_server.messages
    assert envelope.rcpt_tos == ["tenant@example.com"]
    assert "19.50" in envelope.content.decode("utf-8", "replace") or "=E5" in envelope.content.decode()


def test_signed_webhook(session, sandbox, monkeypatch):
    monkeypatch.setenv("METERPAY_WEBHOOK_SECRET", "hook-secret")
    note = _queue(session, "webhook", f"{sandbox.base}/sandbox/webhook")
    assert note.status == "sent"
    [sent] = sandbox.sent("webhook")
    expected = "sha256=" + hmac.new(b"hook-secret", sent["raw"].encode(), hashlib.sha256).hexdigest()
    assert sent["signature"] == expected and sent["json"]["data"]["room"] == "A301"


def test_a_failed_delivery_is_logged_and_retried_later(session, sandbox, clock_at):
    clock_at(T0)
    sandbox.fail("sms", times=1)
    note = _queue(session, "sms", "13900000010")
    assert note.status == "retrying" and note.attempts == 1 and "500" in note.last_error
    assert delivery.retry_due(T0 + timedelta(seconds=29)) == 0
    clock_at(T0 + timedelta(seconds=30))
    assert delivery.retry_due() == 1
    session.expire_all()
    note = session.get(Notification, note.id)
    assert note.status == "sent" and note.attempts == 2 and len(sandbox.sent("sms")) == 1


def test_a_delivery_gives_up_after_the_last_attempt(session, sandbox, clock_at):
    clock_at(T0)
    sandbox.fail("voice", times=delivery.MAX_ATTEMPTS)
    note = _queue(session, "voice", "13900000011")
    for n in range(1, delivery.MAX_ATTEMPTS):
        clock_at(T0 + timedelta(days=n))
        delivery.retry_due()
    session.expire_all()
    note = session.get(Notification, note.id)
    assert note.status == "failed" and note.attempts == delivery.MAX_ATTEMPTS and sandbox.sent("voice") == []


def test_an_unconfigured_channel_fails_for_good_without_retries(session, sandbox, monkeypatch):
    monkeypatch.delenv("METERPAY_SMS_URL")
    note = _queue(session, "sms", "13900000012")
    assert note.status == "failed" and note.next_attempt_at is None and "METERPAY_SMS_URL" in note.last_error


def test_an_expired_access_token_is_fetched_again(session, sandbox):
    from bot import wechat_api
    wechat_api.official_account().session.set(wechat_api.official_account().access_token_key, "stale", 7200)
    note = _queue(session, "wechat_template", "o-after-refresh")
    assert note.status == "sent" and sandbox.sent("template")[0]["touser"] == "o-after-refresh"


def test_one_key_is_delivered_once(session, sandbox):
    _queue(session, "sms", "13900000013", key="same-cause")
    assert notifications.add(session, key="same-cause", kind="balance_alarm", channel="sms",
                             recipient="13900000013") is None
    session.commit()
    assert len(session.scalars(select(Notification)).all()) == 1 and len(sandbox.sent("sms")) == 1


def test_in_sandbox_mode_unset_settings_point_at_the_sandbox(session, sandbox, monkeypatch):
    from bot.settings import SANDBOX_DEFAULTS
    for name in SANDBOX_DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("METERPAY_SANDBOX", "1")
    assert _queue(session, "sms", "13900000077").status == "sent"
    assert _queue(session, "wechat_template", "o-demo").status == "sent"
    assert sandbox.sent("template")[0]["template_id"] == "sandbox-tpl-balance"
