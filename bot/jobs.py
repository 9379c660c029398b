"""Jobs of the chat front: answers that take longer than WeChat's 5 seconds."""
from __future__ import annotations

from core.alarms import notifications
from core.db import session_scope
from core.jobs import job
from core.models import Manager


@job("notify", timeout=120)
def answer_later(manager_id: int, openid: str, command: str, msg_key: str) -> None:
    """Compute a report command and send it back as a customer-service message."""
    from bot import manager_chat
    with session_scope() as session:
        manager = session.get(Manager, manager_id)
        if manager is None or not manager.active:
            return
        text = manager_chat.report(session, manager, command)
        notifications.add(session, key=f"chat:{msg_key}", kind="chat", channel="wechat_cs", recipient=openid,
                          subject=command, body=text)
