"""The bot front. ``init_app(app)`` registers its blueprints on the Flask app."""
from __future__ import annotations


def init_app(app) -> None:
    """Nothing yet: the issue that builds this front registers its blueprints here."""
