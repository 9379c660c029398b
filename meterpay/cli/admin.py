"""``meterpay admin create-manager``: a manager who signs in to the web pages (and the bot)."""
from __future__ import annotations

import click

from meterpay.cli.base import cli, fail, friendly_errors, print_json


@cli.group("admin")
def admin_group() -> None:
    """Managers of the admin web pages."""


@admin_group.command("create-manager")
@click.option("--username", required=True, help="sign-in name")
@click.option("--password", default=None, help="at least 8 characters (asked for when left out)")
@click.option("--site", "sites", multiple=True, help="a site this manager runs (repeatable)")
@click.option("--all-sites", is_flag=True, help="this manager sees every site")
@click.option("--role", type=click.Choice(["admin", "operator", "viewer"]), default="operator", show_default=True,
              help="admin: everything incl. tariffs; operator: desk and remote actions; viewer: read only")
@click.option("--display-name", default="", help="name shown on the pages (default: the username)")
@friendly_errors
def create_manager_cmd(username: str, password: str | None, sites: tuple[str, ...], all_sites: bool, role: str,
                       display_name: str) -> None:
    """Create a manager with a hashed password and a role at some sites (or all)."""
    if not sites and not all_sites:
        fail("give --site NAME (repeatable) or --all-sites")
    if sites and all_sites:
        fail("give either --site or --all-sites, not both")
    if password is None:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    from core.db import session_scope
    from core.sites.managers import create_manager
    with session_scope() as session:
        m = create_manager(session, username, password, sites=list(sites), role=role, all_sites=all_sites,
                           display_name=display_name)
        out = {"id": m.id, "username": m.username, "role": role,
               "sites": "all" if all_sites else list(sites)}
    print_json(out)
