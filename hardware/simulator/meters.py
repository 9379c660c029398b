"""Virtual meters: registers that move with a load profile, a relay or valve that obeys, and
(DL/T 645) a meter-side balance with a purchase count that accepts each recharge once.

A meter answers decoded requests (``handle_*``) with reply bytes, or None for no reply. The
bus (``hardware.simulator.bus``) does framing, timing and faults around it.
"""
from __future__ import annotations

import random
import time
from collections import deque
from datetime import datetime, timedelta
from decimal import Decimal

from hardware.codecs import bcd_decode, bcd_encode, cjt188, dlt645
from hardware.simulator import load
from hardware.values import PERIODS


class SimClock:
    """Simulated local time: starts now and runs ``speed`` times faster than the wall clock."""

    def __init__(self, speed: float = 1.0, start: datetime | None = None, tz: str = "Asia/Shanghai"):
        from zoneinfo import ZoneInfo
        self.speed = speed
        self.start = start or datetime.now(ZoneInfo(tz)).replace(tzinfo=None, microsecond=0)
        self._t0 = time.monotonic()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def wall(self) -> datetime:
        return self.start + timedelta(seconds=time.monotonic() - self._t0)


class SimMeter:
    family = ""  # modbus | dlt645 | cjt188

    def __init__(self, address: str, profile: str, clock: SimClock, seed: int = 0):
        self.address = address
        self.profile = profile
        self.clock = clock
        self.rng = random.Random(seed)
        self.offline = False           # never answers (unplugged, broken)
        self.script: deque[str] = deque()  # scripted faults, one per request
        self.requests = 0
        self.applied: list[str] = []   # what changed the meter, for tests ("recharge 5000 #3")
        self._last = clock.now()

    def elapsed_hours(self) -> tuple[float, datetime]:
        now = self.clock.now()
        dt = (now - self._last).total_seconds() / 3600
        self._last = now
        return max(dt, 0.0), now


class SimElectric(SimMeter):
    def __init__(self, address, profile, clock, seed=0):
        super().__init__(address, profile, clock, seed)
        self.peak_kw = round(self.rng.uniform(1.5, 12.0), 2)
        base = self.rng.uniform(800, 6000)
        split = (0.05, 0.33, 0.37, 0.25)
        self.kwh = {p: base * s for p, s in zip(PERIODS, split)}
        self.relay_on = True
        self.forced = False
        self.power_kw = 0.0

    @property
    def total_kwh(self) -> float:
        return sum(self.kwh.values())

    def advance(self) -> None:
        hours, now = self.elapsed_hours()
        if not self.relay_on:
            self.power_kw = 0.0
            return
        self.power_kw = self.peak_kw * load.factor(now.hour + now.minute / 60) * self.rng.uniform(0.9, 1.1)
        used = self.power_kw * hours
        self.kwh[load.period_of(now.hour, now.month)] += used
        self.consumed(used, now)

    def consumed(self, kwh: float, now: datetime) -> None:
        pass

    def live(self) -> tuple[float, float, float]:
        voltage = 220.0 + self.rng.uniform(-3, 3)
        pf = 0.95 if self.power_kw else 1.0
        current = self.power_kw * 1000 / (voltage * pf) if self.power_kw else 0.0
        return voltage, current, pf


# --- Modbus -------------------------------------------------------------------------------

class ModbusException(Exception):
    def __init__(self, code: int):
        self.code = code


class AcrelSim(SimElectric):
    """Acrel DDSY1352/DTSY1352 register map (see hardware/profiles/acrel_ddsy1352.py)."""

    family = "modbus"

    def __init__(self, address, profile, clock, seed=0):
        super().__init__(address, profile, clock, seed)
        self.meter_type = 5 if "dtsy" in profile else 7

    def registers(self) -> dict[int, int]:
        self.advance()
        v, i, pf = self.live()
        regs: dict[int, int] = {}

        def u32(addr, value):
            regs[addr], regs[addr + 1] = value >> 16 & 0xFFFF, value & 0xFFFF

        u32(0x0000, int(self.total_kwh * 100))
        for n, p in enumerate(PERIODS):
            u32(0x0002 + 2 * n, int(self.kwh[p] * 100))
        regs[0x000A] = 0
        regs[0x000B] = int(v * 10)
        regs[0x000C] = int(i * 100)
        regs[0x000D] = int(self.power_kw * 1000) & 0xFFFF
        regs[0x000E] = regs[0x000F] = 0
        regs[0x0010] = int(pf * 1000)
        regs[0x0057] = 1 if self.forced else 0
        regs[0x0058] = 0 if self.relay_on else 1
        regs[0x0200] = self.meter_type
        return regs

    def write(self, address: int, values: list[int]) -> None:
        if address == 0x0057 and len(values) == 2 and values[1] in (0, 1):
            self.advance()
            self.forced = bool(values[0])
            self.relay_on = values[1] == 0
            self.applied.append(f"relay {'on' if self.relay_on else 'off'}")
            return
        raise ModbusException(2)


class ModbusWaterSim(SimMeter):
    """The generic Modbus valve water meter (hardware/profiles/modbus_valve_water.py)."""

    family = "modbus"

    def __init__(self, address, profile, clock, seed=0):
        super().__init__(address, profile, clock, seed)
        self.m3 = self.rng.uniform(10, 400)
        self.peak_m3h = self.rng.uniform(0.05, 0.4)
        self.valve_open = True

    def advance(self) -> None:
        hours, now = self.elapsed_hours()
        if self.valve_open:
            self.m3 += self.peak_m3h * load.factor(now.hour) * hours

    def registers(self) -> dict[int, int]:
        self.advance()
        milli = int(self.m3 * 1000)
        return {0: milli >> 16 & 0xFFFF, 1: milli & 0xFFFF, 2: 0 if self.valve_open else 1}

    def write(self, address: int, values: list[int]) -> None:
        if address == 0x0010 and len(values) == 1 and values[0] in (0x55, 0x99):
            self.advance()
            self.valve_open = values[0] == 0x55
            self.applied.append(f"valve {'open' if self.valve_open else 'closed'}")
            return
        raise ModbusException(3)


# --- DL/T 645 -----------------------------------------------------------------------------

DEFAULT_PRICES = {"sharp": Decimal("1.2000"), "peak": Decimal("1.0000"), "flat": Decimal("0.7000"),
                  "valley": Decimal("0.3500")}


class Dlt645Sim(SimElectric):
    """A money-type DL/T 645-2007 prepaid meter: it deducts as it counts and trips at zero."""

    family = "dlt645"

    def __init__(self, address, profile, clock, seed=0):
        super().__init__(address, profile, clock, seed)
        self.balance_fen = self.rng.randrange(5000, 30000)
        self.purchase_count = self.rng.randrange(1, 20)
        self.prices = dict(DEFAULT_PRICES)
        self.alarms = {0x04001001: 5000, 0x04001002: 2000, 0x04001003: 0}
        self.keep_power = False
        self.tripped_by_credit = False
        self.tou = bytes([4, 0, 0]) * 14
        self.clock_offset = timedelta(seconds=self.rng.randrange(-300, 300))
        self._fen_residue = Decimal(0)

    def consumed(self, kwh: float, now: datetime) -> None:
        cost = Decimal(str(round(kwh, 6))) * self.prices[load.period_of(now.hour, now.month)] * 100
        self._fen_residue += cost
        whole = int(self._fen_residue)
        self._fen_residue -= whole
        self.balance_fen -= whole
        if self.balance_fen <= 0 and self.relay_on and not self.keep_power:
            self.relay_on = False
            self.tripped_by_credit = True

    def meter_time(self) -> datetime:
        # The meter's own clock runs at real speed whatever the consumption speed-up.
        return self.clock.wall() + self.clock_offset

    def read(self, di: int) -> bytes | None:
        self.advance()
        v, i, pf = self.live()
        if di == 0x0000FF00:
            return b"".join(bcd_encode(int(x * 100), 4) for x in (self.total_kwh, *(self.kwh[p] for p in PERIODS)))
        if di == 0x00000000:
            return bcd_encode(int(self.total_kwh * 100), 4)
        if 0x00010000 <= di <= 0x00040000 and di & 0xFFFF == 0:
            return bcd_encode(int(self.kwh[PERIODS[(di >> 16) - 1]] * 100), 4)
        if di == 0x02010100:
            return bcd_encode(int(v * 10), 2)
        if di == 0x02020100:
            return bcd_encode(int(i * 1000), 3)
        if di == 0x02030000:
            return bcd_encode(int(self.power_kw * 10000), 3)
        if di == 0x02060000:
            return bcd_encode(int(pf * 1000), 2)
        if di == 0x00900200:
            return bcd_encode(max(self.balance_fen, 0), 4)
        if di == 0x00900201:  # overdraft amount
            return bcd_encode(max(-self.balance_fen, 0), 4)
        if di == 0x03330201:
            return bcd_encode(self.purchase_count, 2)
        if di == 0x04000503:
            word = (0 if self.relay_on else 1 << 4) | (1 << 12 if self.keep_power else 0)
            return word.to_bytes(2, "little")
        if di in self.alarms:
            return bcd_encode(self.alarms[di], 4)
        if 0x04050101 <= di <= 0x04050104:
            return dlt645.bcd_from_value(self.prices[PERIODS[di - 0x04050101]], 4, 4)
        if di == 0x04010001:
            return self.tou
        if di == 0x04000101:
            t = self.meter_time()
            return bytes([t.isoweekday() % 7] + [bcd_encode(x, 1)[0] for x in (t.day, t.month, t.year % 100)])
        if di == 0x04000102:
            t = self.meter_time()
            return bytes(bcd_encode(x, 1)[0] for x in (t.second, t.minute, t.hour))
        return None

    def write(self, di: int, value: bytes) -> bool:
        self.advance()
        if di in self.alarms and len(value) == 4:
            self.alarms[di] = bcd_decode(value)
        elif 0x04050101 <= di <= 0x04050104 and len(value) == 4:
            self.prices[PERIODS[di - 0x04050101]] = Decimal(bcd_decode(value)).scaleb(-4)
        elif di == 0x04010001 and len(value) == 42:
            self.tou = bytes(value)
        elif di == 0x04000101 and len(value) == 4:
            t = self.meter_time()
            d = datetime(2000 + bcd_decode(value[3:4]), bcd_decode(value[2:3]), bcd_decode(value[1:2]),
                         t.hour, t.minute, t.second)
            self.clock_offset += d - t
        elif di == 0x04000102 and len(value) == 3:
            t = self.meter_time()
            d = t.replace(hour=bcd_decode(value[2:3]), minute=bcd_decode(value[1:2]), second=bcd_decode(value[0:1]))
            self.clock_offset += d - t
        else:
            return False
        self.applied.append(f"write {di:08x}")
        return True

    def control(self, n1: int) -> bool:
        self.advance()
        if n1 == dlt645.TRIP:
            self.relay_on = False
        elif n1 in (dlt645.CLOSE, dlt645.CLOSE_ALLOWED):
            self.relay_on = True
            self.tripped_by_credit = False
        elif n1 == dlt645.KEEP_POWER:
            self.keep_power = True
        elif n1 == dlt645.KEEP_POWER_RELEASE:
            self.keep_power = False
        else:
            return False
        self.applied.append(f"control {n1:02X}")
        return True

    def recharge(self, amount_fen: int, count: int) -> bool:
        """Accept a purchase only with the next count: a repeated command is refused, not doubled."""
        self.advance()
        if count != self.purchase_count + 1 or amount_fen <= 0:
            return False
        self.purchase_count = count
        self.balance_fen += amount_fen
        if self.tripped_by_credit and self.balance_fen > 0:
            self.relay_on = True
            self.tripped_by_credit = False
        self.applied.append(f"recharge {amount_fen} #{count}")
        return True

    def set_time(self, t: datetime) -> None:
        self.clock_offset = t - self.clock.wall()
        self.applied.append("broadcast time")

    def handle(self, frame: dlt645.Frame) -> bytes | None:
        fn, data = frame.function, frame.data
        if fn == dlt645.READ and len(data) >= 4:
            value = self.read(int.from_bytes(data[:4], "little"))
            if value is None:
                return dlt645.encode(self.address, 0xD1, b"\x02")
            return dlt645.encode(self.address, 0x91, data[:4] + value)
        if fn == dlt645.WRITE and len(data) > 12:
            ok = self.write(int.from_bytes(data[:4], "little"), data[12:])
            return dlt645.encode(self.address, 0x94 if ok else 0xD4, b"" if ok else b"\x01")
        if fn == dlt645.CONTROL and len(data) >= 16:
            ok = self.control(data[8])
            return dlt645.encode(self.address, 0x9C if ok else 0xDC, b"" if ok else b"\x01")
        if fn == dlt645.PREPAID and len(data) == 30 and data[:4] == dlt645.di_bytes(0x070102FF):
            ok = self.recharge(int.from_bytes(data[8:12], "little"), int.from_bytes(data[12:16], "little"))
            if ok:
                return dlt645.encode(self.address, 0x83, data[:4] + bcd_encode(max(self.balance_fen, 0), 4)
                                     + self.purchase_count.to_bytes(4, "little"))
            return dlt645.encode(self.address, 0xC3, b"\x01")
        if fn == dlt645.BROADCAST_TIME and len(data) == 6:
            self.set_time(dlt645.parse_time(data))
            return None
        return dlt645.encode(self.address, 0xC0 | fn, b"\x01")


# --- CJ/T 188 -----------------------------------------------------------------------------

class Cjt188Sim(SimMeter):
    family = "cjt188"

    def __init__(self, address, profile, clock, seed=0):
        super().__init__(address, profile, clock, seed)
        self.m3 = self.rng.uniform(10, 400)
        self.settled_m3 = self.m3
        self.peak_m3h = self.rng.uniform(0.05, 0.4)
        self.valve_open = True

    def advance(self) -> None:
        hours, now = self.elapsed_hours()
        if self.valve_open:
            self.m3 += self.peak_m3h * load.factor(now.hour) * hours

    def status(self) -> bytes:
        return bytes([0b00 if self.valve_open else 0b01, 0])

    def handle(self, frame: cjt188.Frame) -> bytes | None:
        self.advance()
        if frame.control == cjt188.READ and frame.di == cjt188.DI_READ_DATA:
            t = self.clock.now()
            now = bytes(bcd_encode(x, 1)[0] for x in (t.second, t.minute, t.hour, t.day, t.month)) + bcd_encode(
                t.year, 2)
            data = (bcd_encode(int(self.m3 * 100), 4) + bytes([cjt188.UNIT_M3]) + bcd_encode(
                int(self.settled_m3 * 100), 4) + bytes([cjt188.UNIT_M3]) + now + self.status())
            return cjt188.encode(self.address, 0x81, frame.di, data, ser=frame.ser)
        if frame.control == cjt188.WRITE and frame.di == cjt188.DI_VALVE and frame.data[:1] in (b"\x55", b"\x99"):
            self.valve_open = frame.data[0] == cjt188.VALVE_OPEN
            self.applied.append(f"valve {'open' if self.valve_open else 'closed'}")
            return cjt188.encode(self.address, 0x84, frame.di, self.status(), ser=frame.ser)
        return cjt188.encode(self.address, 0xC0 | frame.control, frame.di, b"\x01", ser=frame.ser)


SIMS = {"acrel-ddsy1352": AcrelSim, "acrel-dtsy1352": AcrelSim, "modbus-valve-water": ModbusWaterSim,
        "dlt645-2007": Dlt645Sim, "cjt188-water": Cjt188Sim}
FAMILY_OF_PROTOCOL = {"modbus-rtu": "modbus", "modbus-tcp": "modbus", "dlt645": "dlt645", "cjt188": "cjt188"}


def make_meter(profile: str, address: str, clock: SimClock, seed: int = 0) -> SimMeter:
    try:
        cls = SIMS[profile]
    except KeyError:
        raise ValueError(f"the simulator has no meter for profile {profile!r}; known: {', '.join(SIMS)}") from None
    if cls.family == "dlt645":
        address = address.zfill(12)
    elif cls.family == "cjt188":
        address = address.zfill(14)
    else:
        address = str(int(address))
    return cls(address, profile, clock, seed)
