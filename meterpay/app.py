"""Flask app factory: each front registers its own blueprints through ``init_app(app)``."""
from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, jsonify

from core.config import get_settings
from core.errors import MeterpayError

ROOT = Path(__file__).resolve().parent.parent


def create_app(test_config: dict | None = None) -> Flask:
    settings = get_settings()
    app = Flask("meterpay", template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "admin" / "static"), static_url_path="/static")
    app.config.update(SECRET_KEY=settings.secret_key, JSON_AS_ASCII=False,
                      MAX_CONTENT_LENGTH=8 * 1024 * 1024)
    app.json.ensure_ascii = False
    if test_config:
        app.config.update(test_config)
    logging.basicConfig(level=settings.log_level)
    from core.plugins import load_listeners
    load_listeners()

    from meterpay import health
    app.register_blueprint(health.bp)

    import admin
    import bot
    import miniapp_api
    for front in (miniapp_api, bot, admin):
        front.init_app(app)

    @app.errorhandler(MeterpayError)
    def _domain_error(err: MeterpayError):
        return jsonify(err.to_dict()), err.http_status

    return app
