"""``meterpay demo seed``: the demo site wired to the local meter simulator."""
from __future__ import annotations

import click

from meterpay.cli.base import cli, friendly_errors


@cli.group()
def demo() -> None:
    """The demo site."""


@demo.command()
@click.option("--if-empty", is_flag=True, help="do nothing (and succeed) when the demo site exists already")
@click.option("--history-days", type=click.IntRange(0, 366), default=30, show_default=True,
              help="days of meter readings to backfill (four a day, billed as usual); 0 for none")
@friendly_errors
def seed(if_empty: bool, history_days: int) -> None:
    """Create the demo site: 2 buildings, 5 floors, 10 rooms a floor, meters, tenants, a manager,
    and HISTORY_DAYS of readings billed through the normal path (the room pages' 30-day charts)."""
    from core.billing import ingest_batch
    from core.db import session_scope
    from core.sites.demo import seed as run_seed
    from meterpay.cli.serve import apply_sandbox_env
    # The demo's alarms go to the sandbox's SMS stand-in, as under `run --demo`; while the sandbox is
    # not up yet they wait as retries, which `run --demo` delivers.
    apply_sandbox_env()
    with session_scope() as session:
        result = run_seed(session, if_empty=if_empty, history_days=history_days, bill=ingest_batch)
    user, password = result.manager
    if result.created:
        click.echo(f"demo site seeded: {result.rooms} rooms, {result.accounts} accounts, "
                   f"{result.readings} readings over {history_days} days")
    else:
        click.echo("demo site exists already; nothing to do")
    click.echo(f"manager sign-in: {user} / {password}")
