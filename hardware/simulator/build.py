"""Build a simulator: K meters on each of G gateways, or exactly the gateways and meters of a database."""
from __future__ import annotations

import logging
import zlib
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from hardware.simulator.bus import SimGateway
from hardware.simulator.meters import (
    FAMILY_OF_PROTOCOL,
    Dlt645Sim,
    SimClock,
    SimElectric,
    SimMeter,
    make_meter,
    sim_class,
)
from hardware.values import PERIODS

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
    """One virtual gateway per Gateway row, on its URL's port, with that gateway's active meters.

    Each meter resumes where the database last saw it (``stored_states``): registers from the
    last stored reading, relay/valve from the last confirmed command, meter-side balance and
    purchase count from the mirror. A restarted simulator therefore causes no billing anomaly
    (no register below the billed one), cut rooms stay cut, and a repeated recharge stays refused.
    """
    from sqlalchemy import select

    from core.db import session_scope
    from core.models import Gateway, Meter
    from hardware.transports import parse_gateway_url

    clock = SimClock(speed)
    out: list[SimGateway] = []
    resumed = with_reading = 0
    with session_scope() as s:
        gateways = list(s.scalars(select(Gateway).order_by(Gateway.id)))
        by_gateway: dict[int, list] = defaultdict(list)
        for m in s.scalars(select(Meter).where(Meter.status == "active", Meter.gateway_id.is_not(None))
                           .order_by(Meter.id)):
            by_gateway[m.gateway_id].append(m)
        states = stored_states(s, [m for ms in by_gateway.values() for m in ms])
        for gw in gateways:
            _host, port = parse_gateway_url(gw.url)
            family = FAMILY_OF_PROTOCOL.get(gw.protocol)
            meters = []
            for m in by_gateway.get(gw.id, []):
                cls = sim_class(m.profile)
                if cls is None or cls.family != family:
                    log.warning("meter %s (%s) cannot be simulated on %s gateway %s; skipped",
                                m.serial, m.profile, gw.protocol, gw.name)
                    continue
                sim = make_meter(m.profile, m.address, clock, seed=zlib.crc32(m.serial.encode()))
                state = states.get(m.id)
                if state is not None:
                    state.apply(sim)
                    resumed += 1
                    with_reading += state.total is not None
                meters.append(sim)
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
    log.info("resumed %s meters from the database (%s from a stored reading)", resumed, with_reading)
    return out


SWITCH_COMMANDS = {"relay_off": ("relay", False), "relay_on": ("relay", True), "valve_close": ("valve", False),
                   "valve_open": ("valve", True), "keep_power_on": ("keep", True), "keep_power_off": ("keep", False)}


@dataclass
class Stored:
    """Where the database last saw one meter."""

    total: Decimal | None = None                 # kWh or m3 of the last stored reading (or the live mirror)
    periods: dict[str, Decimal] | None = None
    relay_on: bool | None = None
    valve_open: bool | None = None
    keep_power: bool | None = None
    balance_fen: int | None = None               # meter-side prepaid
    purchase_count: int | None = None

    def apply(self, sim: SimMeter) -> None:
        if isinstance(sim, SimElectric):
            kw: dict = {"total": self.total, "periods": self.periods, "relay_on": self.relay_on}
            if isinstance(sim, Dlt645Sim):
                kw.update(balance_fen=self.balance_fen, purchase_count=self.purchase_count, keep_power=self.keep_power)
            sim.resume(**kw)
        else:
            sim.resume(m3=self.total, valve_open=self.valve_open)


def stored_states(session, meters: list) -> dict[int, Stored]:
    """Per meter id, what to resume from; one query per table (readings, commands), not per meter.

    - registers: the last reading with status ok (the billing cursor's), or ``Meter.live`` when it
      holds a higher total (a read whose reading was not stored);
    - relay / valve / keep-power: the last confirmed command of each, else the mirrored state;
    - balance and purchase count: the mirror, or the last confirmed recharge when its count is higher.
    """
    from sqlalchemy import func, select

    from core.bulk_sql import ids_in
    from core.models import MeterCommand, Reading

    if not meters:
        return {}
    ids = [m.id for m in meters]
    last = (select(Reading.meter_id, func.max(Reading.taken_at).label("at"))
            .where(ids_in(session, Reading.meter_id, ids), Reading.status == "ok")
            .group_by(Reading.meter_id).subquery())
    readings = {row.meter_id: row for row in session.execute(
        select(Reading.meter_id, Reading.total, Reading.sharp, Reading.peak, Reading.flat, Reading.valley)
        .join(last, (Reading.meter_id == last.c.meter_id) & (Reading.taken_at == last.c.at)))}
    latest = (select(func.max(MeterCommand.id))
              .where(ids_in(session, MeterCommand.meter_id, ids), MeterCommand.state == "confirmed",
                     MeterCommand.kind.in_([*SWITCH_COMMANDS, "recharge"]))
              .group_by(MeterCommand.meter_id, MeterCommand.kind))
    commands: dict[int, list] = defaultdict(list)
    for c in session.execute(select(MeterCommand.meter_id, MeterCommand.kind, MeterCommand.finished_at,
                                    MeterCommand.id, MeterCommand.result).where(MeterCommand.id.in_(latest))):
        commands[c.meter_id].append(c)

    out: dict[int, Stored] = {}
    for m in meters:
        st = Stored()
        r = readings.get(m.id)
        if r is not None:
            st.total = Decimal(r.total)
            regs = {"sharp": r.sharp, "peak": r.peak, "flat": r.flat, "valley": r.valley}
            if all(v is not None for v in regs.values()):
                st.periods = {k: Decimal(v) for k, v in regs.items()}
        live_total, live_periods = _live_registers(m)
        if live_total is not None and (st.total is None or live_total > st.total):
            st.total, st.periods = live_total, live_periods
        st.relay_on = {"on": True, "off": False}.get(m.relay_state or "")
        st.valve_open = {"open": True, "closed": False}.get(m.valve_state or "")
        st.keep_power = bool(m.keep_power)
        newest: dict[str, tuple] = {}
        recharge = None
        for c in commands.get(m.id, []):
            if c.kind == "recharge":
                recharge = c
                continue
            group, value = SWITCH_COMMANDS[c.kind]
            order = (c.finished_at is not None, c.finished_at, c.id)
            if group not in newest or order > newest[group][0]:
                newest[group] = (order, value)
        if "relay" in newest:
            st.relay_on = newest["relay"][1]
        if "valve" in newest:
            st.valve_open = newest["valve"][1]
        if "keep" in newest:
            st.keep_power = newest["keep"][1]
        st.balance_fen, st.purchase_count = m.remaining_fen, m.purchase_count
        result = (recharge.result or {}) if recharge is not None else {}
        if isinstance(result.get("purchase_count"), int) and isinstance(result.get("remaining_fen"), int) and (
                st.purchase_count is None or result["purchase_count"] > st.purchase_count):
            st.balance_fen, st.purchase_count = result["remaining_fen"], result["purchase_count"]
        out[m.id] = st
    return out


def _live_registers(meter) -> tuple[Decimal | None, dict[str, Decimal] | None]:
    live = meter.live or {}
    try:
        raw = live.get("total_kwh", live.get("water_m3"))
        total = Decimal(str(raw)) if raw is not None else None
        periods = live.get("periods")
        regs = {p: Decimal(str(periods[p])) for p in PERIODS} if isinstance(periods, dict) else None
    except (ArithmeticError, KeyError, TypeError, ValueError):
        return None, None
    return total, regs
