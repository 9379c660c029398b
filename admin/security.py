"""Sign-in safety for the admin pages: CSRF tokens, login rate limiting, session expiry settings.

CSRF: one random token per browser session, put in every form as ``csrf_token`` (or sent as the
``X-CSRF-Token`` header by scripts) and checked on every POST to /admin. A missing or wrong token
is refused with 400 and changes nothing.

Rate limiting: failed sign-ins are counted per username and per client address in a sliding
window; past the limit the sign-in is refused with 429 until the window passes. The counts live in
Redis when METERPAY_REDIS_URL is set (shared by every web process), else in this process.
"""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import defaultdict, deque

from flask import abort, request, session

from core.config import get_settings

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


from admin.settings import idle_minutes, login_attempts, login_window_seconds, max_session_hours, secure_cookies  # noqa: E402,F401

# --- CSRF --------------------------------------------------------------------------------

def csrf_token() -> str:
    token = session.get("_csrf")
    if not token:
        token = session["_csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    """Abort 400 unless the request carries this session's token."""
    expected = session.get("_csrf")
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER) or ""
    if not expected or not hmac.compare_digest(str(expected), str(given)):
        abort(400, description="csrf")


# --- login rate limiting ----------------------------------------------------------------

class _MemoryCounter:
    def __init__(self):
        self._hits: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    def count(self, key: str, window: int) -> int:
        now = time.monotonic()
        with self._lock:
            hits = self._hits[key]
            while hits and hits[0] <= now - window:
                hits.popleft()
            return len(hits)

    def add(self, key: str, window: int) -> None:
        with self._lock:
            self._hits[key].append(time.monotonic())

    def clear(self, key: str) -> None:
        with self._lock:
            self._hits.pop(key, None)


class _RedisCounter:
    def __init__(self, url: str):
        from redis import Redis
        self.redis = Redis.from_url(url)

    def count(self, key: str, window: int) -> int:
        now = time.time()
        self.redis.zremrangebyscore(key, 0, now - window)
        return int(self.redis.zcard(key))

    def add(self, key: str, window: int) -> None:
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.zadd(key, {f"{now}:{secrets.token_hex(4)}": now})
        pipe.expire(key, window)
        pipe.execute()

    def clear(self, key: str) -> None:
        self.redis.delete(key)


_memory = _MemoryCounter()


def _counter():
    url = get_settings().redis_url
    return _RedisCounter(url) if url else _memory


def _keys(username: str) -> list[str]:
    # The peer address only: X-Forwarded-For is the client's to forge (behind a proxy, wrap the app
    # in werkzeug's ProxyFix so remote_addr is the real client).
    addr = request.remote_addr or "?"
    return [f"meterpay:admin-login:user:{(username or '').strip().lower()}", f"meterpay:admin-login:ip:{addr}"]


def login_blocked(username: str) -> bool:
    counter, window = _counter(), login_window_seconds()
    return any(counter.count(k, window) >= login_attempts() for k in _keys(username))


def login_failed(username: str) -> None:
    counter, window = _counter(), login_window_seconds()
    for k in _keys(username):
        counter.add(k, window)


def login_succeeded(username: str) -> None:
    # Only the username's count is cleared: one good password must not reset an address that guesses.
    _counter().clear(_keys(username)[0])


def reset_memory_counters() -> None:
    """Forget in-process counts (tests)."""
    _memory._hits.clear()

