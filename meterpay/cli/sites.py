"""``meterpay sites import --site NAME FILE``: onboard a site from CSV or .xlsx."""
from __future__ import annotations

import sys

import click

from meterpay.cli.base import cli, friendly_errors, print_json


@cli.group()
def sites() -> None:
    """Sites, buildings, floors and rooms."""


def _count_rows(path: str) -> int | None:
    if path.lower().endswith(".csv"):
        with open(path, "rb") as fh:
            return max(sum(1 for _ in fh) - 1, 0)
    return None


def known_profiles() -> dict[str, str]:
    """Meter profile name -> meter kind, from the hardware registry (core does not import hardware)."""
    from hardware import profiles
    return {name: profiles.get(name).kind for name in profiles.names()}


@sites.command("import")
@click.option("--site", "site_name", required=True, help="site name (created if new)")
@click.argument("path", type=click.Path())  # checked by the importer: `error: ...: no such file`, exit 2
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@friendly_errors
def import_(site_name: str, path: str, as_json: bool) -> None:
    """Create buildings, floors, rooms, tenants, accounts and meters from PATH.

    Columns: building,floor,room,area_m2,tenant,phone,meter_serial,meter_kind,profile,gateway,
    address,tariff,billing_mode,opening_balance (yuan). ``tariff`` is the plan of the row's meter kind (a
    kWh plan for electricity, an m3 plan for water). Re-importing the same file changes nothing.
    Exit status 1 when any row was rejected (`line N: reason`; the good rooms are still imported),
    2 when the file cannot be read (missing, not UTF-8, not a workbook, wrong header): then nothing
    is written.
    """
    from core.db import session_scope
    from core.sites.importer import import_file
    show_bar = sys.stderr.isatty() and not as_json
    profiles = known_profiles()
    with session_scope() as session:
        if show_bar:
            with click.progressbar(length=_count_rows(path) or 0, label="importing", file=sys.stderr) as bar:
                report = import_file(session, site_name, path, progress=bar.update, actor="cli", front="cli",
                                     profiles=profiles)
        else:
            report = import_file(session, site_name, path, actor="cli", front="cli", profiles=profiles)
    if as_json:
        print_json(report.to_dict())
    else:
        for err in report.errors:
            click.echo(f"{path}: {err}", err=True)
        click.echo(f"{report.rows} rows: {report.rooms_created} rooms created, {report.accounts_opened} accounts "
                   f"opened, {report.meters_added} meters added, {report.unchanged_rows} unchanged, "
                   f"{len(report.errors)} rejected")
    sys.exit(1 if report.errors else 0)


@sites.command("list")
@friendly_errors
def list_sites() -> None:
    """List sites with room and account counts."""
    from sqlalchemy import func, select

    from core.db import session_scope
    from core.models import Account, Room, Site
    with session_scope() as session:
        for site in session.scalars(select(Site).order_by(Site.name)):
            rooms = session.scalar(select(func.count()).select_from(Room).where(Room.site_id == site.id))
            accts = session.scalar(select(func.count()).select_from(Account)
                                   .where(Account.site_id == site.id, Account.status == "open"))
            click.echo(f"{site.name}\t{rooms} rooms\t{accts} open accounts")


@sites.command("check")
@click.option("--site", "site_name", default=None, help="only this site")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@friendly_errors
def check(site_name: str | None, as_json: bool) -> None:
    """List meters no plan prices (an open account without a plan of the meter's unit).

    Their readings are kept and billing waits: assigning a plan of the right unit bills the whole
    gap at once on the next reading. Exit status 1 when any meter is listed.
    """
    from core.db import session_scope
    from core.models.site import site_named
    from core.sites.checks import unpriced_meters
    with session_scope() as session:
        site_id = None
        if site_name is not None:
            site_id = site_named(session, site_name).id
        meters = unpriced_meters(session, site_id)
    if as_json:
        print_json({"ok": not meters, "unpriced": [
            {**m, "waiting_since": m["waiting_since"].isoformat() if m["waiting_since"] else None} for m in meters]})
    else:
        for m in meters:
            since = f"; billing waits since {m['waiting_since']:%Y-%m-%d %H:%M} UTC" if m["waiting_since"] else ""
            click.echo(f"{m['site']} {m['room']} {m['serial']} ({m['utility']}): {m['reason']}{since}")
        click.echo(f"{len(meters)} unpriced meter(s)" + (
            "; assign a plan of the right unit (更改电价/更改水价): the next reading bills the whole gap at once"
            if meters else ""))
    sys.exit(1 if meters else 0)
