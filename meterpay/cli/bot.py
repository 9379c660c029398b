"""``meterpay bot ...``: bind a manager's WeChat, room QR codes for the official account, a test
notification on any channel, and one run of the alarm / supply / retry jobs."""
from __future__ import annotations

import click

from meterpay.cli.base import cli, friendly_errors, print_json


@cli.group()
def bot() -> None:
    """The official-account bot, alarms and automatic supply control."""


@bot.command("bind-manager")
@click.argument("username")
@click.argument("openid")
@friendly_errors
def bind_manager(username: str, openid: str) -> None:
    """Let USERNAME run chat commands from the WeChat user OPENID ("-" unbinds)."""
    from sqlalchemy import select

    from core import audit
    from core.db import session_scope
    from core.errors import Conflict, NotFound, ValidationError
    from core.models import Manager
    openid = openid.strip()
    if not openid or len(openid) > 64:
        raise ValidationError("openid: 1 to 64 characters")
    with session_scope() as session:
        manager = session.scalar(select(Manager).where(Manager.username == username))
        if manager is None:
            raise NotFound(f"no manager {username!r}")
        if openid != "-":
            other = session.scalar(select(Manager).where(Manager.wechat_openid == openid))
            if other is not None and other.id != manager.id:
                raise Conflict(f"openid is bound to manager {other.username!r} already")
        manager.wechat_openid = None if openid == "-" else openid
        audit.record(session, actor="cli", front="cli", action="bind_manager_wechat", manager=username,
                     bound=openid != "-")
    print_json({"manager": username, "wechat_openid": None if openid == "-" else openid})


@bot.command("room-qr")
@click.argument("room")
@click.option("--site", "site_name", default=None, help="site name, when several sites have this room number")
@friendly_errors
def room_qr(room: str, site_name: str | None) -> None:
    """Create ROOM's official-account QR code (subscribing by it binds the tenant); prints its URL."""
    from requests import RequestException
    from wechatpy.exceptions import WeChatException

    from bot import binding
    from core.db import new_session
    from core.errors import ValidationError
    from core.sites.room_lookup import find_room_by_number
    with new_session() as session:
        found, site = find_room_by_number(session, room, site_name)
        room_id, number = found.id, found.number
    try:
        result = binding.create_qr(room_id)
    except (WeChatException, RequestException) as exc:  # WeChat's refusal or the network: one line
        raise ValidationError(f"WeChat refused the QR code: {exc}") from None
    print_json({"room": number, "site": site, "scene": binding.scene_for(room_id), "ticket": result.get("ticket"),
                "url": result.get("url")})


@bot.command("notify-test")
@click.option("--channel", required=True, type=click.Choice(["wechat_template", "miniapp_subscribe", "sms", "email",
                                                             "voice", "webhook", "wechat_cs"]))
@click.option("--to", "recipient", required=True, help="openid, phone number, email address or URL")
@friendly_errors
def notify_test(channel: str, recipient: str) -> None:
    """Send one test message through CHANNEL now and print how it went."""
    from bot import delivery
    from core.alarms import notifications
    from core.db import session_scope
    from core.ledger import new_key
    from core.models import Notification
    with session_scope() as session:
        note = notifications.add(session, key=new_key("notify-test"), kind="test", channel=channel,
                                 recipient=recipient, subject="meterpay 测试消息",
                                 body="这是一条测试消息 / a test message", data={"room": "TEST", "balance": "0.00"})
        note_id = note.id
    delivery.deliver(note_id)
    with session_scope() as session:
        note = session.get(Notification, note_id)
        print_json({"id": note.id, "channel": channel, "status": note.status, "attempts": note.attempts,
                    "error": note.last_error, "provider_ref": note.provider_ref})


@bot.command("run-due")
@friendly_errors
def run_due() -> None:
    """Run the bot's periodic jobs once: alarm repeats, deferred cuts, notification retries."""
    from bot import delivery
    from core.alarms import balance as alarms
    from core.supply import auto as supply_auto
    print_json({"alarm_repeats": alarms.send_due_repeats(), "supply": supply_auto.run_due(),
                "notify_retries": delivery.retry_due()})
