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
@click.option("--database-url", default=None,
              help="with --store: default a scratch SQLite file; with --workers: PostgreSQL (a scratch database "
                   "beside it)")
@click.option("--workers", type=int, default=None,
              help="run the round as RQ jobs on N real `meterpay worker` processes (PostgreSQL, Redis; stores)")
@click.option("--shard-gateways", type=int, default=None,
              help="with --workers: gateways per poll_gateways job (default: gateways / workers, at most 100)")
@click.option("--redis-url", default=None, help="with --workers: default a private redis-server on a free port")
@friendly_errors
def bench_poll(gateways, meters_per_gateway, baud, port_base, turnaround_ms, rounds, store, database_url, workers,
               shard_gateways, redis_url):
    """One poll round of G gateways x K meters vs one bus's request-reply time (target <= 1.3x).

    With --workers N: rounds on N worker processes; throughput and measured CPU per worker,
    PostgreSQL, Redis and the simulator (bench/scaleout.py)."""
    from bench.hardware_engine import poll_round, poll_round_stored
    _check_sizes(gateways, meters_per_gateway, workers)
    if workers:
        from bench.scaleout import poll_workers
        print_json(poll_workers(gateways, meters_per_gateway, baud, port_base, turnaround_ms, max(1, rounds), workers,
                                shard_gateways, database_url, redis_url))
    elif store:
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
@click.option("--threads", type=int, default=1, show_default=True,
              help="in-process executor threads standing in for workers (without --workers)")
@click.option("--workers", type=int, default=None,
              help="run the jobs on N real `meterpay worker` processes (PostgreSQL, Redis)")
@click.option("--batch", type=int, default=None,
              help="commands per execute_many job (default 1000 in process, 200 with --workers, as retry_due)")
@click.option("--database-url", default=None,
              help="default: a scratch SQLite file; with --workers: PostgreSQL (a scratch database beside it)")
@click.option("--redis-url", default=None, help="with --workers: default a private redis-server on a free port")
@friendly_errors
def bench_commands(count, gateways, baud, port_base, turnaround_ms, threads, workers, batch, database_url, redis_url):
    """Relay commands through the outbox and executor, spread over gateways, vs the busiest bus's bound.

    With --workers N: execute_many jobs on N worker processes; throughput and measured CPU per
    worker, PostgreSQL, Redis and the simulator (bench/scaleout.py)."""
    _check_sizes(gateways, -(-count // max(1, gateways)), workers)
    if workers:
        from bench.scaleout import commands_workers
        print_json(commands_workers(count, gateways, baud, port_base, turnaround_ms, workers, batch or 200,
                                    database_url, redis_url))
        return
    from bench.hardware_engine import command_burst
    print_json(command_burst(count, gateways, baud, port_base, turnaround_ms, threads, database_url, batch or 1000))


def _check_sizes(gateways: int, per_gateway: int, workers: int | None) -> None:
    from core.errors import ValidationError
    if not 1 <= gateways <= 5000 or not 1 <= per_gateway <= 247:
        raise ValidationError("--gateways must be 1-5000 and meters (or commands) per gateway 1-247")
    if workers is not None and not 1 <= workers <= 64:
        raise ValidationError("--workers must be 1-64")
