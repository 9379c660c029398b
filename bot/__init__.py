"""The bot front: the official-account endpoint at /wechat, tenant chat, manager chat commands,
and the alarm channels that deliver notifications. ``init_app(app)`` registers its blueprint."""
from __future__ import annotations


def init_app(app) -> None:
    from bot import views
    app.register_blueprint(views.bp)
