"""``meterpay tariff quote --plan PLAN.json --usage USAGE.json``: preview what a plan charges."""
from __future__ import annotations

import click

from meterpay.cli.base import friendly_errors, print_json
from meterpay.cli.tariff import load_plan_file, tariff


@tariff.command("quote")
@click.option("--plan", "plan_path", required=True, type=click.Path(dir_okay=False), help="plan file (JSON)")
@click.option("--usage", "usage_path", required=True, type=click.Path(dir_okay=False),
              help='usage file: {"readings": [{"at": ..., "total": ..., "periods": {...}}, ...]}')
@click.option("--timezone", "tz", default=None, help="site timezone for day tables and cycles "
              "(default: METERPAY_TIMEZONE, Asia/Shanghai)")
@click.option("--ct-ratio", type=click.IntRange(min=1), default=1, help="multiply usage by this CT ratio")
@friendly_errors
def quote_cmd(plan_path: str, usage_path: str, tz: str | None, ct_ratio: int) -> None:
    """Price USAGE with PLAN and print {"total", "currency", "lines"} as JSON."""
    from core.config import get_settings
    from core.tariffs import quote
    from core.tariffs.zones import zone
    plan = load_plan_file(plan_path)
    usage = load_plan_file(usage_path)
    print_json(quote(plan, usage, tz=zone(tz or get_settings().timezone), ct_ratio=ct_ratio))
