"""Build a simulator: K meters on each of G gateways, or exactly the gateways and meters of a database."""
from __future__ import annotations

import logging
import zlib

from hardware.simulator.bus import SimGateway
from hardware.simulator.meters import FAMILY_OF_PROTOCOL, SIMS, SimClock, make_meter

log = logging.getLogger(__name__)

DEFAULT_PROFILE = {"modbus-rtu": "acrel-ddsy1352", "modbus-tcp": "acrel-ddsy1352", "dlt645": "dlt645-2007",
                   "cjt188": "cjt188-water"}


MIXED_PROFILES = ("acrel-ddsy1352", "dlt645-2007", "cjt188-water")


def meter_address(protocol: str, index: int) -> str:
    """Addresses of generated meters on every bus: Modbus units 1..K; DL/T 645 1..K as 12 digits
    (000000000001...); CJ/T 188 1..K as 14 digits."""
    if protocol in ("modbus-rtu", "modbus-tcp", "acrel-ddsy1352"):
        return str(index)
    width = 12 if protocol in ("dlt645", "dlt645-2007") else 14
    return str(index).zfill(width)


def generated(gateways: int, per_gateway: int, port_base: int, *, protocol: str = "mixed",
              profile: str | None = None, baud: int = 9600, faults: float = 0.0, turnaround: float = 0.005,
              speed: float = 1.0, host: str = "127.0.0.1", slow_seconds: float = 2.0) -> list[SimGateway]:
    if gateways < 1 or per_gateway < 1:
        raise ValueError("--gateways and --meters-per-gateway must be at least 1")
    if protocol in ("modbus-rtu", "modbus-tcp", "mixed") and per_gateway > 247:
        raise ValueError("a Modbus bus holds at most 247 meters")
    if not 0 <= faults <= 1:
        raise ValueError("--faults is a rate between 0 and 1")
    if baud < 300:
        raise ValueError("--baud must be at least 300")
    if protocol == "mixed" and profile:
        raise ValueError("--profile goes with --protocol modbus-rtu|modbus-tcp|dlt645|cjt188")
    profiles = MIXED_PROFILES if protocol == "mixed" else (profile or DEFAULT_PROFILE[protocol],)
    clock = SimClock(speed)
    out = []
    for g in range(gateways):
        meters = [make_meter(p, meter_address(p if protocol == "mixed" else protocol, k + 1), clock,
                             seed=g * 10000 + n * 1000 + k)
                  for n, p in enumerate(profiles) for k in range(per_gateway)]
        out.append(SimGateway(port_base + g if port_base else 0, protocol, meters, baud=baud, turnaround=turnaround,
                              fault_rate=faults, slow_seconds=slow_seconds, seed=g, host=host))
    return out


def from_database(*, baud: int = 9600, faults: float = 0.0, turnaround: float = 0.005, speed: float = 1.0,
                  host: str = "127.0.0.1", slow_seconds: float = 2.0) -> list[SimGateway]:
    """One virtual gateway per Gateway row, on its URL's port, with that gateway's active meters."""
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Gateway, Meter
    from hardware.transports import parse_gateway_url

    clock = SimClock(speed)
    out = []
    with session_scope() as s:
        for gw in s.scalars(select(Gateway).order_by(Gateway.id)):
            _host, port = parse_gateway_url(gw.url)
            family = FAMILY_OF_PROTOCOL.get(gw.protocol)
            meters = []
            for m in s.scalars(select(Meter).where(Meter.gateway_id == gw.id, Meter.status == "active")
                               .order_by(Meter.id)):
                cls = SIMS.get(m.profile)
                if cls is None or cls.family != family:
                    log.warning("meter %s (%s) cannot be simulated on %s gateway %s; skipped",
                                m.serial, m.profile, gw.protocol, gw.name)
                    continue
                meters.append(make_meter(m.profile, m.address, clock, seed=zlib.crc32(m.serial.encode())))
            if family is None:
                log.warning("gateway %s speaks %s; the simulator cannot play it", gw.name, gw.protocol)
                continue
            same_port = next((g for g in out if g.port == port), None)
            if same_port is not None:
                # two gateway rows on one port: one TCP port, one bus, both sets of meters
                meters = list(same_port.meters.values()) + meters
                protocol = same_port.protocol if same_port.protocol == gw.protocol else "mixed"
                out.remove(same_port)
                out.append(SimGateway(port, protocol, meters, baud=baud, turnaround=turnaround, fault_rate=faults,
                                      slow_seconds=slow_seconds, seed=gw.id, host=host,
                                      name=f"{same_port.name} + {gw.name}"))
                continue
            out.append(SimGateway(port, gw.protocol, meters, baud=baud, turnaround=turnaround, fault_rate=faults,
                                  slow_seconds=slow_seconds, seed=gw.id, host=host, name=gw.name))
    return out
