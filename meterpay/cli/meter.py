"""``meterpay meter read|relay|valve|recharge|sync-clock``: talk to one meter on a bench or in the field.

No database needed. A dead gateway, a timeout or a bad reply prints one ``error: ...`` line and
exits non-zero.
"""
from __future__ import annotations

import functools

import click

from meterpay.cli.base import cli, fail, friendly_errors, print_json

PROTOCOLS = ("modbus-rtu", "modbus-tcp", "dlt645", "cjt188")


def connection(fn):
    """The options every meter command shares."""
    @click.option("--gateway", required=True, metavar="tcp://HOST:PORT", help="the RS485 gateway")
    @click.option("--protocol", required=True, type=click.Choice(PROTOCOLS))
    @click.option("--address", required=True, help="Modbus unit id, or the DL/T 645 / CJ/T 188 address")
    @click.option("--profile", default=None, help="meter profile (default by protocol)")
    @click.option("--timeout", type=float, default=None, help="seconds to wait for each reply")
    @click.option("--json", "as_json", is_flag=True, help="print JSON")
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return fn(*args, **kwargs)
    return wrapper


def hardware_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from hardware.errors import HardwareError
        try:
            return fn(*args, **kwargs)
        except HardwareError as exc:
            fail(str(exc))
    return friendly_errors(wrapper)


def _show(result: dict, as_json: bool) -> None:
    if as_json:
        print_json(result)
    else:
        for key, value in result.items():
            click.echo(f"{key}: {value}")
    if result.get("confirmed") is False:
        fail(f"{result['command'].replace('_', ' ')} not confirmed: meter reports {result['detail']}")


@cli.group()
def meter() -> None:
    """Read and command one meter directly through its gateway (no database)."""


@meter.command("read")
@connection
@hardware_errors
def read_cmd(gateway, protocol, address, profile, timeout, as_json):
    """Print the meter's decoded values."""
    from hardware import field
    values = field.read(gateway, protocol, address, profile, timeout).to_json()
    if as_json:
        print_json(values)
        return
    for key, value in values.items():
        click.echo(f"{key}: {value}")


@meter.command("relay")
@connection
@click.argument("state", type=click.Choice(["off", "on"]))
@hardware_errors
def relay_cmd(gateway, protocol, address, profile, timeout, as_json, state):
    """Trip (off) or close (on) the relay, then read it back."""
    from hardware import field
    _show(field.command(gateway, protocol, address, f"relay_{state}", {}, profile, timeout), as_json)


@meter.command("valve")
@connection
@click.argument("state", type=click.Choice(["open", "close"]))
@hardware_errors
def valve_cmd(gateway, protocol, address, profile, timeout, as_json, state):
    """Open or close a water meter's valve, then read it back."""
    from hardware import field
    _show(field.command(gateway, protocol, address, f"valve_{state}", {}, profile, timeout), as_json)


@meter.command("recharge")
@connection
@click.option("--amount", required=True, help="yuan, e.g. 50.00")
@click.option("--purchase-count", type=int, default=None,
              help="the purchase number this is (makes a repeated run apply once)")
@hardware_errors
def recharge_cmd(gateway, protocol, address, profile, timeout, as_json, amount, purchase_count):
    """Meter-side recharge with the next purchase count, confirmed by reading the count back."""
    from core.ledger.money import parse_yuan
    from hardware import field
    fen = parse_yuan(amount, field="amount")
    _show(field.recharge(gateway, protocol, address, fen, purchase_count, profile, timeout), as_json)


@meter.command("sync-clock")
@connection
@click.option("--broadcast", is_flag=True, help="broadcast the time to every meter on the bus (DL/T 645 08H)")
@hardware_errors
def sync_clock_cmd(gateway, protocol, address, profile, timeout, as_json, broadcast):
    """Set the meter's clock to now (site time zone), then read it back."""
    from hardware import field
    _show(field.sync_clock(gateway, protocol, address, broadcast, profile, timeout), as_json)
