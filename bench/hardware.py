"""``meterpay bench poll`` and ``meterpay bench commands``: the hardware path against the RS485 bound."""
from __future__ import annotations

import click

from meterpay.cli.base import friendly_errors, print_json


@click.command("poll")
@click.option("--gateways", type=int, default=200, show_default=True)
@click.option("--meters-per-gateway", type=int, default=32, show_default=True)
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--port-base", type=int, default=17600, show_default=True)
@click.option("--turnaround-ms", type=float, default=5.0, show_default=True)
@click.option("--rounds", type=int, default=1, show_default=True, help="report the best of this many rounds")
@click.option("--store", is_flag=True, help="the poller's whole round: also store readings through billing")
@click.option("--database-url", default=None, help="with --store; default: a scratch SQLite file")
@friendly_errors
def bench_poll(gateways, meters_per_gateway, baud, port_base, turnaround_ms, rounds, store, database_url):
    """One poll round of G gateways x K meters vs one bus's request-reply time (target <= 1.3x)."""
    from bench.hardware_engine import poll_round, poll_round_stored
    if store:
        print_json(poll_round_stored(gateways, meters_per_gateway, baud, port_base, turnaround_ms, rounds,
                                     database_url))
    else:
        print_json(poll_round(gateways, meters_per_gateway, baud, port_base, turnaround_ms, rounds=rounds))


@click.command("commands")
@click.option("--commands", "count", type=int, default=1000, show_default=True)
@click.option("--gateways", type=int, default=100, show_default=True)
@click.option("--baud", type=int, default=9600, show_default=True)
@click.option("--port-base", type=int, default=17900, show_default=True)
@click.option("--turnaround-ms", type=float, default=5.0, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="executor threads (like RQ workers)")
@click.option("--batch", type=int, default=1000, show_default=True, help="commands per execute_many job")
@click.option("--database-url", default=None, help="default: a scratch SQLite file")
@friendly_errors
def bench_commands(count, gateways, baud, port_base, turnaround_ms, workers, batch, database_url):
    """Relay commands through the outbox and executor, spread over gateways, vs the busiest bus's bound."""
    from bench.hardware_engine import command_burst
    print_json(command_burst(count, gateways, baud, port_base, turnaround_ms, workers, database_url, batch))
