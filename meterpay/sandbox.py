"""The sandbox: local stand-ins for WeChat, WeChat Pay and Alipay, SMS and voice (demo and tests).

One small Flask app mounts each area's fake blueprint: ``miniapp_api.sandbox.bp`` (login,
WeChat Pay v3, Alipay) and ``bot.sandbox.bp`` (access tokens, template/subscribe/customer
messages, SMS, voice). It signs with keys generated locally. Never point production at it.
"""
from __future__ import annotations

import importlib

from flask import Flask, jsonify

SANDBOX_BLUEPRINTS = ("miniapp_api.sandbox", "bot.sandbox")


def create_sandbox_app(config: dict | None = None) -> Flask:
    app = Flask("meterpay-sandbox")
    app.config.update(config or {})
    mounted = []
    for name in SANDBOX_BLUEPRINTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        app.register_blueprint(module.bp)
        mounted.append(name)

    @app.get("/_sandbox/health")
    def health():
        return jsonify({"sandbox": True, "mounted": mounted})

    return app
