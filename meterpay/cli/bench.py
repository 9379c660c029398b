"""``meterpay bench ...``: benchmarks. Each area adds a subcommand in meterpay/cli/bench_<area>.py."""
from __future__ import annotations

from meterpay.cli.base import cli


@cli.group()
def bench() -> None:
    """Benchmarks; each reports a ratio against a baseline measured in the same run."""
