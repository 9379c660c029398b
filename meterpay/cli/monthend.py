"""Month-end money (issue 12): ``meterpay charges add|list``, ``meterpay apportion add|list|master-plan``
and ``meterpay month-end --site NAME --period YYYY-MM [--preview] [--json]``."""
from __future__ import annotations

import json
from decimal import Decimal

import click

from meterpay.cli.base import cli, fail, friendly_errors, print_json


def _load(path: str) -> object:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh, parse_float=Decimal)  # weights and rates stay exact
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    except json.JSONDecodeError as exc:
        fail(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    return None


def _add_spec(site_name: str, path: str, add) -> None:
    """Store the JSON spec at ``path`` for the site with ``add`` (add_scheme, add_rule); print its id."""
    from core.db import session_scope
    from core.models.site import site_named
    spec = _load(path)
    with session_scope() as session:
        print_json({"id": add(session, site_named(session, site_name).id, spec, actor="cli", front="cli").id})


def _specs(site_name: str, lister) -> list[dict]:
    """The site's stored specs (list_schemes, list_rules) with their ids and whether they are active."""
    from core.db import session_scope
    from core.models.site import site_named
    with session_scope() as session:
        return [{"id": o.id, **o.spec, "active": o.active} for o in lister(session, site_named(session, site_name).id)]


@cli.group()
def charges() -> None:
    """Custom charge schemes (property fee, rent, ...)."""


@charges.command("add")
@click.option("--site", "site_name", required=True)
@click.option("--scheme", "path", required=True, type=click.Path(dir_okay=False), help="scheme file (JSON)")
@friendly_errors
def charges_add(site_name: str, path: str) -> None:
    """Store a charge scheme; prints {"id": ..}."""
    from core.monthend.schemes import add_scheme
    _add_spec(site_name, path, add_scheme)


@charges.command("list")
@click.option("--site", "site_name", required=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def charges_list(site_name: str, as_json: bool) -> None:
    """The site's charge schemes."""
    from core.monthend.schemes import list_schemes
    rows = _specs(site_name, list_schemes)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        when = r.get("date") or f"day {r.get('day')}"
        click.echo(f"{r['id']:>5}  {r['code']:<16} {r['name']}  {r['basis']} {r['amount']}  every {r['every']} "
                   f"({when})  {r['mode']}  prorate {r['prorate']}{'' if r['active'] else '  (inactive)'}")


@cli.group()
def apportion() -> None:
    """Common-area apportionment rules (a master meter split over rooms)."""


@apportion.command("add")
@click.option("--site", "site_name", required=True)
@click.option("--rule", "path", required=True, type=click.Path(dir_okay=False), help="rule file (JSON)")
@friendly_errors
def apportion_add(site_name: str, path: str) -> None:
    """Store an apportionment rule; prints {"id": ..}."""
    from core.monthend.rules import add_rule
    _add_spec(site_name, path, add_rule)


@apportion.command("list")
@click.option("--site", "site_name", required=True)
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def apportion_list(site_name: str, as_json: bool) -> None:
    """The site's apportionment rules."""
    from core.monthend.rules import list_rules
    rows = _specs(site_name, list_rules)
    if as_json:
        print_json(rows)
        return
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['name']}  master {r['master']}  by {r['basis']}  {len(r['accounts'])} rooms  "
                   f"{r['mode']}{'' if r['active'] else '  (inactive)'}")


@apportion.command("master-plan")
@click.option("--site", "site_name", required=True)
@click.option("--meter", "serial", required=True, help="the common-area meter's serial")
@click.option("--tariff", default=None, help="plan name (omit to clear)")
@friendly_errors
def apportion_master_plan(site_name: str, serial: str, tariff: str | None) -> None:
    """Set the plan that prices a common-area (master) meter."""
    from core.db import session_scope
    from core.models.site import site_named
    from core.monthend.rules import set_master_plan
    with session_scope() as session:
        meter = set_master_plan(session, site_named(session, site_name).id, serial, tariff, actor="cli",
                                front="cli")
        print_json({"meter": meter.serial, "tariff_plan_id": meter.tariff_plan_id})


@cli.command("month-end")
@click.option("--site", "site_name", required=True)
@click.option("--period", required=True, help="the month, YYYY-MM")
@click.option("--preview", is_flag=True, help="show what would be posted; change nothing")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def month_end(site_name: str, period: str, preview: bool, as_json: bool) -> None:
    """Run (or preview) a site's month end: charges, apportionment, then bills."""
    from core.db import session_scope
    from core.ledger.money import format_fen
    from core.models.site import site_named
    from core.monthend import periods
    from core.monthend.run import run_month_end
    from core.signals import load_listeners
    periods.month(period)
    with session_scope() as session:
        site_id = site_named(session, site_name).id
    if not preview:
        load_listeners()
    result = run_month_end(site_id, period, preview=preview, actor="cli", front="cli")
    if as_json:
        print_json(result.as_json())
        return
    click.echo(f"{result.site} {result.period}{' (preview: nothing changed)' if preview else ''}")
    click.echo(f"charges {format_fen(result.charges_fen)}  apportioned {format_fen(result.apportioned_fen)}  "
               f"bills {result.bills}  items {result.items}  entries posted now {result.entries}")
    for p in result.problems:
        click.echo(f"problem: {p['step']}: {p['message']}")
    for ln in result.lines[:200]:
        click.echo(f"  {ln['room'] or '-':<10} {ln['kind']:<9} {ln['code']:<24} {ln['amount']:>12}")
    if len(result.lines) > 200:
        click.echo(f"  ... {len(result.lines) - 200} more lines (--json for all)")
