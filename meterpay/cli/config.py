"""``meterpay config check|list``: every setting, validated and shown from the one registry (core.config)."""
from __future__ import annotations

import sys

import click

from meterpay.cli.base import cli, print_json


@cli.group("config")
def config_group() -> None:
    """The environment variables meterpay reads: check them, list them."""


def _registry():
    from core import config
    from meterpay.settings import load_all
    load_all()
    return config


@config_group.command("check")
def config_check() -> None:
    """Validate every variable at once; print each problem (exit 2 when there is any) and each warning
    (a configuration that works but should change; exit 0)."""
    config = _registry()
    found = config.problems()
    for problem in found:
        click.echo(f"error: {problem}", err=True)
    for warning in config.warnings():
        click.echo(f"warning: {warning}", err=True)
    if found:
        sys.exit(2)
    click.echo(f"ok: {len(config.variables())} variables checked")


@config_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="one object per variable")
@click.option("--markdown", is_flag=True, help="the README's tables (generated from the registry)")
def config_list(as_json: bool, markdown: bool) -> None:
    """Every variable with its current value (secrets masked), area and meaning."""
    config = _registry()
    if markdown:
        click.echo(config.markdown(), nl=False)
        return
    rows = [{"name": v.name, "area": v.area, "value": config.shown_value(v), "type": v.kind, "secret": v.secret,
             "doc": v.doc} for v in config.variables()]
    if as_json:
        print_json(rows)
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['value']:<28}  [{r['area']}] {r['doc']}")
