"""Sign-in safety for the admin pages: CSRF (Flask-WTF) and login rate limiting (Flask-Limiter).

CSRF: Flask-WTF's ``CSRFProtect``, checked on every POST to /admin only (the mini-program API,
the payment callbacks and the WeChat endpoint authenticate by token or signature instead). The
token goes in every form as ``csrf_token`` (``{{ csrf_token() }}``) or, from scripts and htmx, in
the ``X-CSRF-Token`` header. It is tied to the browser session and has no time limit of its own
(sessions expire by themselves: ``METERPAY_ADMIN_IDLE_MINUTES``, ``METERPAY_ADMIN_SESSION_HOURS``).
A missing or wrong token is refused with 400 and changes nothing.

Rate limiting: failed sign-ins are counted per username and per client address in a moving
window (``METERPAY_ADMIN_LOGIN_ATTEMPTS`` within ``METERPAY_ADMIN_LOGIN_WINDOW`` seconds); past
the limit the sign-in is refused with 429 until the window passes. Only failures count (a 401),
and a successful sign-in clears its username's count (never its address's: one good password must
not reset an address that guesses). Counts live in Redis when ``METERPAY_REDIS_URL`` is set
(shared by every web process), with Flask-Limiter's in-memory fallback while Redis is down; in
this process otherwise.
"""
from __future__ import annotations

from flask import Flask, Response, request
from flask_limiter import Limiter
from flask_wtf.csrf import CSRFProtect

from admin import settings
from core.config import get_settings

csrf = CSRFProtect()


def _client_address() -> str:
    # The peer address only: X-Forwarded-For is the client's to forge (behind a proxy, wrap the app
    # in werkzeug's ProxyFix so remote_addr is the real client).
    return f"ip:{request.remote_addr or '?'}"


def _username() -> str:
    return f"user:{(request.form.get('username') or '').strip().lower()}"


limiter = Limiter(key_func=_client_address, strategy="moving-window", key_prefix="meterpay:admin-login")


@limiter.request_filter
def _outside_admin() -> bool:
    """Only /admin has limits (its sign-in view): every other request skips Flask-Limiter's
    per-request resolution (blueprint exemption scopes, ~1 ms of CPU on an API request)."""
    return request.blueprint != "admin"


def _login_limit() -> str:
    return f"{settings.login_attempts()} per {settings.login_window_seconds()} second"


def _failed(response: Response) -> bool:
    return response.status_code == 401


# Decorators for the sign-in view: one count per username, one per address; only POSTs that fail.
limit_by_user = limiter.limit(_login_limit, key_func=_username, methods=["POST"], deduct_when=_failed,
                              scope="user")
limit_by_address = limiter.limit(_login_limit, key_func=_client_address, methods=["POST"], deduct_when=_failed,
                                  scope="address")


def init_app(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)  # only /admin checks (admin.web before_request)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)
    app.config.setdefault("WTF_CSRF_HEADERS", ["X-CSRF-Token", "X-CSRFToken"])
    csrf.init_app(app)
    redis_url = get_settings().redis_url
    app.config["RATELIMIT_STORAGE_URI"] = redis_url or "memory://"
    app.config["RATELIMIT_IN_MEMORY_FALLBACK_ENABLED"] = bool(redis_url)
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", False)
    limiter.init_app(app)


def check_csrf() -> None:
    """Abort 400 unless the request carries this session's token."""
    csrf.protect()


def login_succeeded() -> None:
    """Forget the failures counted against this username (call within the sign-in request)."""
    for current in limiter.current_limits:
        if current.request_args and current.request_args[0].startswith("user:"):
            limiter.limiter.clear(current.limit, *current.request_args)


def reset_memory_counters() -> None:
    """Forget counts kept in this process (tests): the in-memory storage, or the fallback's."""
    from limits.storage import MemoryStorage
    for storage in (getattr(limiter, "_storage", None), getattr(limiter, "_fallback_storage", None)):
        if isinstance(storage, MemoryStorage):
            storage.reset()
