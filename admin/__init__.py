"""The admin front: manager web pages at /admin (sign-in, room monitor, room detail with remote
actions, account opening and import, tariffs, audit log). ``init_app(app)`` registers them.

Texts are Chinese first, English from the gettext catalog in core/translations (Flask-Babel reads
it; the language is the manager's choice, /admin/lang/<code>)."""
from __future__ import annotations

from datetime import timedelta


def init_app(app) -> None:
    from flask import request
    from flask_babel import Babel

    from admin import (  # noqa: F401 - routes
        audit_log,
        auth,
        batch,
        bills,
        finance,
        monitor,
        monthend,
        opening,
        reports,
        rooms,
        security,
        settings,
        tariffs,
    )
    from admin.web import bp, lang
    from core import i18n
    app.register_blueprint(bp)
    security.init_app(app)
    app.config.setdefault("BABEL_DEFAULT_LOCALE", i18n.DEFAULT_LANG)
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(i18n.TRANSLATIONS_DIR)
    Babel(app, locale_selector=lambda: lang() if request.path.startswith("/admin") else i18n.DEFAULT_LANG)
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    if not app.config.get("SESSION_COOKIE_SAMESITE"):
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=settings.max_session_hours())
    if settings.secure_cookies():
        app.config["SESSION_COOKIE_SECURE"] = True
