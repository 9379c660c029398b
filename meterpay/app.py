"""Flask app factory: each front registers its own blueprints through ``init_app(app)``."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, jsonify
from flask.sessions import SecureCookieSessionInterface

from core.config import get_settings
from core.errors import MeterpayError

ROOT = Path(__file__).resolve().parent.parent


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions without two costs every request paid (the API's too, which
    uses no session): the signing serializer is built once per set of keys instead of per
    request, and a request without a Cookie header gets an empty session without parsing."""

    def __init__(self) -> None:
        self._serializers: dict = {}

    def get_signing_serializer(self, app: Flask):
        if not app.secret_key:
            return None
        key = (app.secret_key, tuple(app.config["SECRET_KEY_FALLBACKS"] or ()))
        serializer = self._serializers.get(key)
        if serializer is None:
            if len(self._serializers) >= 8:
                self._serializers.clear()
            serializer = self._serializers[key] = super().get_signing_serializer(app)
        return serializer

    def open_session(self, app: Flask, request):
        if app.secret_key and "HTTP_COOKIE" not in request.environ:
            return self.session_class()
        return super().open_session(app, request)


def create_app(test_config: dict | None = None) -> Flask:
    settings = get_settings()
    app = Flask("meterpay", template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "admin" / "static"), static_url_path="/static")
    app.config.update(SECRET_KEY=settings.secret_key, JSON_AS_ASCII=False,
                      MAX_CONTENT_LENGTH=8 * 1024 * 1024)
    app.json.ensure_ascii = False
    app.session_interface = SessionInterface()
    if test_config:
        app.config.update(test_config)
    logging.basicConfig(level=settings.log_level)
    from core.signals import load_listeners
    load_listeners()

    from meterpay import health
    app.register_blueprint(health.bp)

    import admin
    import bot
    import miniapp_api
    for front in (miniapp_api, bot, admin):
        front.init_app(app)
    from miniapp_api import landing  # where a room's QR code points outside WeChat: /m/bind?token=...
    app.register_blueprint(landing.bp)

    @app.errorhandler(MeterpayError)
    def _domain_error(err: MeterpayError):
        return jsonify(err.to_dict()), err.http_status

    return app
