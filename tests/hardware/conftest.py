"""Meters for tests are the project's own simulator over real TCP on 127.0.0.1 (ports picked by the OS)."""
from __future__ import annotations

import pytest

from hardware.simulator import SimGateway, Simulator, make_meter
from hardware.simulator.meters import SimClock


@pytest.fixture(autouse=True)
def _fast_meters(monkeypatch):
    """Short reply timeouts and no silent retries, so failure paths are quick and deterministic."""
    monkeypatch.setenv("METERPAY_METER_TIMEOUT", "0.4")
    monkeypatch.setenv("METERPAY_METER_RETRIES", "0")
    monkeypatch.setenv("METERPAY_COMMAND_BACKOFF", "0")


@pytest.fixture
def simulator():
    """``gw = simulator("dlt645", [("dlt645-2007", "000000001234")])`` starts a gateway and returns it."""
    sims: list[Simulator] = []
    clock = SimClock(speed=60)

    def start(protocol: str, meters: list[tuple[str, str]], *, baud: int = 38400, fault_rate: float = 0.0,
              turnaround: float = 0.002) -> SimGateway:
        gw = SimGateway(0, protocol, [make_meter(p, a, clock, seed=i) for i, (p, a) in enumerate(meters)],
                        baud=baud, turnaround=turnaround, fault_rate=fault_rate, slow_seconds=1.0)
        sim = Simulator([gw]).start_in_thread()
        sims.append(sim)
        gw.sim = sim
        gw.url = f"tcp://127.0.0.1:{gw.port}"
        return gw

    yield start
    for sim in sims:
        sim.stop_thread()


@pytest.fixture
def wired_meter(factory, simulator, session):
    """An account whose meter hangs behind a simulated gateway: returns (meter row, sim meter, gateway)."""
    from core.models import Meter
    from core.sites.accounts import MeterSpec

    def make(profile: str = "acrel-ddsy1352", address: str = "1", protocol: str = "modbus-rtu",
             kind: str = "electricity", billing_mode: str = "prepaid-platform", site=None, balance_fen=10000,
             tariff=None, gw=None):
        gw = gw or simulator(protocol, [(profile, address)])
        room = factory.room(site, building=f"B{gw.port}-{address}") if site is not None else None
        acct = factory.account(room=room, billing_mode=billing_mode, balance_fen=balance_fen, tariff=tariff,
                               meters=(MeterSpec(serial=f"S-{gw.port}-{address}", kind=kind, profile=profile,
                                                 gateway=gw.url, address=address),))
        meter = session.query(Meter).filter_by(account_id=acct.id).one()
        return meter, gw.meter(address), gw
    return make
