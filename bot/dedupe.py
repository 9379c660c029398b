"""WeChat delivers a message again when we were slow; run each one once.

Redis ``SET NX`` with a TTL when ``METERPAY_REDIS_URL`` is set (every web process shares it),
else an in-process map (also while Redis is unreachable: a message is then answered rather than
refused). WeChat retries three times within about 15 seconds, so 5 minutes is ample.
"""
from __future__ import annotations

import threading
import time

from core.config import get_settings

TTL = 300
_seen: dict[str, float] = {}
_lock = threading.Lock()


def first_time(key: str) -> bool:
    if get_settings().redis_url:
        from redis.exceptions import RedisError

        from core.jobs import redis_connection, redis_outage
        try:
            return bool(redis_connection().set(f"meterpay:wechat:seen:{key}", "1", nx=True, ex=TTL))
        except (RedisError, OSError) as exc:
            redis_outage.down(exc)
    now = time.monotonic()
    with _lock:
        if len(_seen) > 10000:
            for k in [k for k, t in _seen.items() if now - t > TTL]:
                del _seen[k]
        if key in _seen and now - _seen[key] <= TTL:
            return False
        _seen[key] = now
        return True


def forget_all() -> None:
    with _lock:
        _seen.clear()
