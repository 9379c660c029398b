"""``meterpay bench ...``: benchmarks, each loaded from the ``bench`` package only when it is run."""
from __future__ import annotations

import importlib

import click

from meterpay.cli.base import cli

# name -> "module:command"; adding a benchmark is adding a line here and a module in bench/.
BENCHMARKS = {
    "api": "bench.api:bench_api",
    "batch": "bench.batch:bench_batch",
    "billing": "bench.billing:bench_billing",
    "bills": "bench.bills:bench_bills",
    "bot": "bench.bot:bench_bot",
    "commands": "bench.hardware:bench_commands",
    "month-end": "bench.monthend:bench_month_end",
    "load": "bench.load:bench_load",
    "monitor": "bench.admin:bench_monitor",
    "poll": "bench.hardware:bench_poll",
    "reports": "bench.reports:bench_reports",
}


class LazyBenchmarks(click.Group):
    """A group whose subcommands are imported when asked for, not when ``meterpay`` starts."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(BENCHMARKS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = BENCHMARKS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@cli.group(cls=LazyBenchmarks)
def bench() -> None:
    """Benchmarks; each reports a ratio against a baseline measured in the same run."""
