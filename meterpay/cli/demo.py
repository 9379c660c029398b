"""``meterpay demo seed``: the demo site wired to the local meter simulator."""
from __future__ import annotations

import click

from meterpay.cli.base import cli, friendly_errors


@cli.group()
def demo() -> None:
    """The demo site."""


@demo.command()
@click.option("--if-empty", is_flag=True, help="do nothing (and succeed) when the demo site exists already")
@friendly_errors
def seed(if_empty: bool) -> None:
    """Create the demo site: 2 buildings, 5 floors, 10 rooms a floor, meters, tenants, a manager."""
    from core.db import session_scope
    from core.sites.demo import seed as run_seed
    with session_scope() as session:
        result = run_seed(session, if_empty=if_empty)
    user, password = result.manager
    if result.created:
        click.echo(f"demo site seeded: {result.rooms} rooms, {result.accounts} accounts")
    else:
        click.echo("demo site exists already; nothing to do")
    click.echo(f"manager sign-in: {user} / {password}")
