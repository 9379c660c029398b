"""The admin front: manager web pages at /admin (sign-in, room monitor, room detail with remote
actions, account opening and import, tariffs, audit log). ``init_app(app)`` registers them."""
from __future__ import annotations

from datetime import timedelta


def init_app(app) -> None:
    from admin import audit_log, auth, monitor, opening, rooms, security, tariffs  # noqa: F401 - routes
    from admin.web import bp
    app.register_blueprint(bp)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if not app.config.get("SESSION_COOKIE_SAMESITE"):
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=security.max_session_hours())
    if security.secure_cookies():
        app.config["SESSION_COOKIE_SECURE"] = True
