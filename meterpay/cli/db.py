"""``meterpay db upgrade``: apply every Alembic migration to METERPAY_DATABASE_URL."""
from __future__ import annotations

import click

from meterpay.cli.base import cli, friendly_errors


@cli.group()
def db() -> None:
    """Database schema."""


@db.command()
@friendly_errors
def upgrade() -> None:
    """Migrate the database to the newest schema (safe to run again)."""
    from core.config import get_settings
    from core.migrate import upgrade as run_upgrade
    url = get_settings().database_url
    run_upgrade(url)
    click.echo(f"database at {_safe(url)} is up to date")


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "(database)"
