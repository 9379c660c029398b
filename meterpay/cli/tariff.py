"""``meterpay tariff add NAME --plan FILE.json [--effective-from DATE] [--site NAME | --template] [--as USER]``,
``tariff copy NAME --site SITE``, ``tariff list [--site SITE]`` (quote lives in tariff_quote.py)."""
from __future__ import annotations

import json
from datetime import date

import click

from meterpay.cli.base import cli, fail, friendly_errors


@cli.group()
def tariff() -> None:
    """Tariff plans: store them and preview what they charge."""


def load_plan_file(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        fail(f"{path}: {exc.strerror or exc}")
    try:
        if path.endswith((".yaml", ".yml")):
            import yaml  # optional
            return yaml.safe_load(text)
        return json.loads(text)
    except json.JSONDecodeError as exc:
        fail(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    except ImportError:
        fail("YAML plans need PyYAML installed (pip install pyyaml)")


def _site_id(session, name: str | None) -> int | None:
    from core.models.site import site_named
    if name is None:
        return None
    return site_named(session, name).id


def _manager_id(session, username: str | None) -> int | None:
    from sqlalchemy import select

    from core.errors import NotFound
    from core.models import Manager
    if username is None:
        return None
    manager_id = session.scalar(select(Manager.id).where(Manager.username == username))
    if manager_id is None:
        raise NotFound(f"no manager named {username!r}", field="as")
    return manager_id


@tariff.command("add")
@click.argument("name")
@click.option("--plan", "plan_path", required=True, type=click.Path(dir_okay=False), help="plan file (JSON)")
@click.option("--effective-from", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="date this version applies from (default: always)")
@click.option("--site", "site_name", default=None, help="the site's own plan (default: a shared template)")
@click.option("--template", is_flag=True, help="a shared template that sites copy (the default)")
@click.option("--as", "as_user", default=None, help="act as this manager: refused unless they may edit these plans")
@friendly_errors
def add(name: str, plan_path: str, effective_from, site_name: str | None, template: bool,
        as_user: str | None) -> None:
    """Store plan NAME (or a new dated version of it), of a site or as a shared template."""
    from core.db import session_scope
    from core.errors import Forbidden
    from core.tariffs.store import add_plan
    if template and site_name:
        fail("give --site NAME or --template, not both")
    spec = load_plan_file(plan_path)
    eff: date | None = effective_from.date() if effective_from else None
    with session_scope() as session:
        site_id = _site_id(session, site_name)
        try:
            plan, changed = add_plan(session, name, spec, site_id=site_id, manager_id=_manager_id(session, as_user),
                                     effective_from=eff)
        except Forbidden as exc:
            fail(f"not allowed: {as_user} may not edit "
                 + (f"the plans of {site_name}" if site_name else "the shared templates") + f" ({exc.message})", 1)
        where = f"site {site_name}" if site_name else "template"
        click.echo(f"tariff {plan.name!r} ({plan.kind}, {plan.unit}, {where}) " + ("saved" if changed else "unchanged"))


@tariff.command("copy")
@click.argument("name")
@click.option("--site", "site_name", required=True, help="the site to copy the template into")
@click.option("--as", "as_user", default=None, help="act as this manager: refused unless they may edit its plans")
@friendly_errors
def copy(name: str, site_name: str, as_user: str | None) -> None:
    """Copy template NAME into a site (same name, every version); later template edits do not reach it."""
    from core.db import session_scope
    from core.tariffs.store import can_edit_plans, copy_plan, find_plan
    with session_scope() as session:
        site_id = _site_id(session, site_name)
        manager_id = _manager_id(session, as_user)
        if manager_id is not None and not can_edit_plans(session, manager_id, site_id):
            fail(f"not allowed: {as_user} may not edit the plans of {site_name}", 1)
        template = find_plan(session, name, None)
        plan = copy_plan(session, template, site_id, actor=f"cli:{as_user}" if as_user else "cli", front="cli")
        click.echo(f"tariff {plan.name!r} copied to site {site_name} ({len(plan.versions)} version(s))")


@tariff.command("list")
@click.option("--site", "site_name", default=None, help="only this site's plans and the templates")
@friendly_errors
def list_plans(site_name: str | None) -> None:
    """List stored plans with their site (or ``template``) and versions."""
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Site, TariffPlan
    with session_scope() as session:
        q = select(TariffPlan, Site.name).outerjoin(Site, Site.id == TariffPlan.site_id)
        site_id = _site_id(session, site_name)
        if site_id is not None:
            q = q.where((TariffPlan.site_id == site_id) | TariffPlan.site_id.is_(None))
        for plan, site in session.execute(q.order_by(Site.name.is_not(None), Site.name, TariffPlan.name)):
            dates = ", ".join(v.effective_from.isoformat() for v in plan.versions)
            click.echo(f"{plan.name}\t{site or 'template'}\t{plan.kind}\t{plan.unit}\tversions from {dates}")
