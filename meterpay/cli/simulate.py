"""``meterpay simulate``: virtual gateways and meters on 127.0.0.1 (the demo's and the tests' hardware)."""
from __future__ import annotations

import asyncio

import click

from meterpay.cli.base import cli, fail, friendly_errors


@cli.command()
@click.option("--gateways", type=int, default=None, help="how many virtual gateways")
@click.option("--meters-per-gateway", type=int, default=None, help="meters on each gateway's bus")
@click.option("--port-base", type=int, default=None, help="first TCP port; gateway i listens on port-base + i")
@click.option("--baud", type=int, default=9600, show_default=True, help="RS485 speed (sets the serial timing)")
@click.option("--faults", type=float, default=0.0, show_default=True,
              help="share of requests that go wrong (no reply, bad checksum, slow, garbage, gateway down)")
@click.option("--from-db", "from_db", is_flag=True,
              help="serve exactly the gateways and meters of METERPAY_DATABASE_URL, each on its gateway's port, "
                   "each meter resumed from its last stored reading and last confirmed command")
@click.option("--protocol", default="mixed", show_default=True,
              type=click.Choice(["mixed", "modbus-rtu", "modbus-tcp", "dlt645", "cjt188"]),
              help="generated gateways' protocol; mixed: K Acrel Modbus + K DL/T 645 + K CJ/T 188 meters per bus")
@click.option("--profile", default=None, help="generated meters' profile (default by protocol)")
@click.option("--turnaround-ms", type=float, default=5.0, show_default=True, help="meter reply delay")
@click.option("--speed", type=float, default=1.0, show_default=True,
              help="simulated time runs this many times faster (consumption)")
@click.option("--host", default="127.0.0.1", show_default=True)
@friendly_errors
def simulate(gateways, meters_per_gateway, port_base, baud, faults, from_db, protocol, profile, turnaround_ms,
             speed, host):
    """Run virtual RS485 gateways with meters that consume, switch and answer like real ones."""
    import logging

    from hardware.simulator import Simulator
    from hardware.simulator.build import from_database, generated

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    common = dict(baud=baud, faults=faults, turnaround=turnaround_ms / 1000, speed=speed, host=host)
    if from_db:
        gws = from_database(**common)
        if not gws:
            fail("the database has no gateways to simulate (seed the demo first: meterpay demo seed)")
    else:
        if not gateways or not meters_per_gateway or port_base is None:
            fail("give --gateways, --meters-per-gateway and --port-base, or --from-db")
        gws = generated(gateways, meters_per_gateway, port_base, protocol=protocol, profile=profile, **common)
    sim = Simulator(gws)

    async def run():
        await sim.start()
        for gw in gws:
            click.echo(f"gateway {gw.name} tcp://{gw.host}:{gw.port} {gw.protocol} {len(gw.meters)} meters "
                       f"({', '.join(sorted({m.profile for m in gw.meters.values()})) or 'none'})")
        click.echo(f"simulating {len(gws)} gateways at {baud} baud; Ctrl-C to stop", err=True)
        await asyncio.Event().wait()

    try:
        from hardware.aio import run_fast
        run_fast(run())
    except KeyboardInterrupt:
        pass
