"""With Redis (several web processes and workers): duplicate messages, pending bindings and
WeChat access tokens are shared through it."""
from __future__ import annotations

from bot import binding, dedupe, wechat_api
from core.alarms import notifications


def test_a_duplicate_message_is_seen_across_processes(redis_url):
    assert dedupe.first_time("msg:redis-1") is True
    dedupe.forget_all()  # another process: nothing in memory
    assert dedupe.first_time("msg:redis-1") is False


def test_a_pending_binding_lives_in_redis(redis_url):
    binding.start("o-redis", 42)
    binding._pending.clear()
    assert binding.pending_room("o-redis") == 42
    binding.forget("o-redis")
    assert binding.pending_room("o-redis") is None


def test_access_tokens_are_kept_in_redis(redis_url, sandbox, session):
    note = notifications.add(session, key="redis:tpl", kind="balance_alarm", channel="wechat_template",
                             recipient="o-redis", subject="s", body="b", data={"room": "R1"})
    session.commit()
    session.refresh(note)
    assert note.status == "sent"
    client = wechat_api.official_account()
    from redis import Redis
    assert Redis.from_url(redis_url).keys("meterpay:wechat*")
    assert client.access_token.startswith("sandbox-")
