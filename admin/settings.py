"""The admin pages' settings, declared in the settings registry (``core.config``)."""
from __future__ import annotations

from core import config
from core.config import Var

config.declare(
    "admin",
    Var("METERPAY_ADMIN_LOGIN_ATTEMPTS", "int", "5",
        "failed sign-ins per username (and per address) within the window before 429", minimum=1),
    Var("METERPAY_ADMIN_LOGIN_WINDOW", "int", "300", "the rate-limit window, seconds", minimum=1),
    Var("METERPAY_ADMIN_IDLE_MINUTES", "int", "120",
        "a session without a request for this long must sign in again", minimum=1),
    Var("METERPAY_ADMIN_SESSION_HOURS", "int", "12", "a session ends this long after sign-in, busy or not",
        minimum=1),
    Var("METERPAY_ADMIN_SECURE_COOKIE", "bool", "0", "`1`: the session cookie is sent over HTTPS only"),
    Var("METERPAY_ADMIN_REFRESH_SECONDS", "int", "10", "how often the monitor polls its JSON (minimum 2)",
        minimum=2),
)


def login_attempts() -> int:
    return config.get("METERPAY_ADMIN_LOGIN_ATTEMPTS")


def login_window_seconds() -> int:
    return config.get("METERPAY_ADMIN_LOGIN_WINDOW")


def idle_minutes() -> int:
    return config.get("METERPAY_ADMIN_IDLE_MINUTES")


def max_session_hours() -> int:
    return config.get("METERPAY_ADMIN_SESSION_HOURS")


def secure_cookies() -> bool:
    """METERPAY_ADMIN_SECURE_COOKIE=1 behind HTTPS: the session cookie is never sent over plain HTTP."""
    return config.get("METERPAY_ADMIN_SECURE_COOKIE")


def refresh_seconds() -> int:
    return config.get("METERPAY_ADMIN_REFRESH_SECONDS")
