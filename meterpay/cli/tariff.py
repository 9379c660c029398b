"""``meterpay tariff add NAME --plan FILE.json [--effective-from DATE]`` (quote lives in tariff_quote.py)."""
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


@tariff.command("add")
@click.argument("name")
@click.option("--plan", "plan_path", required=True, type=click.Path(dir_okay=False), help="plan file (JSON)")
@click.option("--effective-from", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="date this version applies from (default: always)")
@friendly_errors
def add(name: str, plan_path: str, effective_from) -> None:
    """Store plan NAME (or a new dated version of it)."""
    from core.db import session_scope
    from core.tariffs.store import add_plan
    spec = load_plan_file(plan_path)
    eff: date | None = effective_from.date() if effective_from else None
    with session_scope() as session:
        plan, changed = add_plan(session, name, spec, effective_from=eff)
        click.echo(f"tariff {plan.name!r} ({plan.kind}, {plan.unit}) " + ("saved" if changed else "unchanged"))


@tariff.command("list")
@friendly_errors
def list_plans() -> None:
    """List stored plans with their versions."""
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import TariffPlan
    with session_scope() as session:
        for plan in session.scalars(select(TariffPlan).order_by(TariffPlan.name)):
            dates = ", ".join(v.effective_from.isoformat() for v in plan.versions)
            click.echo(f"{plan.name}\t{plan.kind}\t{plan.unit}\tversions from {dates}")
