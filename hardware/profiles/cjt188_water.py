"""A CJ/T 188-2004 cold water meter with a valve.

Read 01H / DI 901F; reply 81H: cumulative flow (4 BCD bytes, 0.01, unit byte 2C = m3),
settlement-day flow (4+1), real time (7), status ST (2: byte 0 bits 0-1 valve: 00 open,
01 closed, 11 abnormal). Valve control 04H / DI A017 with one byte 55 open / 99 close
(secondary source), reply 84H with ST.

Field variations are profile settings: ``di_order`` ("low-first", the default: DI 901F goes out as
``1F 90``; "high-first": ``90 1F``; published documents and the 2004/2018 editions disagree) and
``wake_up`` (0-4 ``FE`` bytes sent before each request; battery meters may sleep until they see
them). A reply is accepted in either DI byte order. A model that needs other settings is a file
of its own in this folder, for example::

    from dataclasses import replace
    from hardware.profiles import register
    from hardware.profiles.cjt188_water import PROFILE as BASE

    PROFILE = register(replace(BASE, name="acme-lxsy-battery", di_order="high-first", wake_up=2,
                               note="ACME LXSY battery water meter: DI high byte first, 2 wake-up bytes"))
"""
from __future__ import annotations

from dataclasses import dataclass

from hardware.codecs import FrameError, bcd_decode, cjt188
from hardware.errors import BadFrame
from hardware.profiles import register
from hardware.profiles.base import Profile, retrying
from hardware.values import MeterValues


@dataclass(frozen=True)
class Cjt188Profile(Profile):
    di_order: str = "low-first"    # how requests put the DI on the wire: low-first | high-first
    wake_up: int = 0               # FE bytes sent before each request (0-4)

    def __post_init__(self) -> None:
        cjt188.check_settings(self.di_order, self.wake_up)

    async def read(self, link, address: str) -> MeterValues:
        request = cjt188.read_request(address, di_order=self.di_order, wake=self.wake_up)
        frame = await retrying(lambda: link.request(address, request, cjt188.DI_READ_DATA))
        data = frame.data
        if len(data) < 19:
            raise BadFrame(f"CJ/T 188 data of {len(data)} bytes")
        try:
            flow = bcd_decode(data[0:4])
        except FrameError as exc:
            raise BadFrame(str(exc)) from None
        if data[4] != cjt188.UNIT_M3:
            raise BadFrame(f"flow unit {data[4]:#04x} is not m3")
        from decimal import Decimal
        st = data[-2]
        return MeterValues(water_m3=Decimal(flow).scaleb(-2).quantize(Decimal("0.001")),
                           valve=cjt188.VALVE_STATES[st & 0b11])

    async def send(self, link, address: str, kind: str, params: dict) -> None:
        self.supports(kind)
        request = cjt188.valve_request(address, kind == "valve_open", di_order=self.di_order, wake=self.wake_up)
        await link.request(address, request, cjt188.DI_VALVE)


PROFILE = register(Cjt188Profile(
    name="cjt188-water", kind="water", protocols=("cjt188",), commands=frozenset({"valve_open", "valve_close"}),
    note=__doc__))
