"""The miniapp_api front: the mini-program JSON API (/api/v1) and the payment callbacks (/pay/...).

``init_app(app)`` registers both blueprints and the payment providers. The sandbox fakes
(miniapp_api/sandbox.py) are mounted only by the sandbox app, never here.
"""
from __future__ import annotations


def init_app(app) -> None:
    from miniapp_api import (
        api,
        callbacks,
        providers,  # noqa: F401 - registers WeChat Pay and Alipay
    )
    app.register_blueprint(api.bp)
    app.register_blueprint(callbacks.bp)
