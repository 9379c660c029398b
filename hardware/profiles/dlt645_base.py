"""DL/T 645-2007 meters described as data identifiers (DI), with their commands.

Reading is tolerant of what the standard lets a meter refuse ("no data requested" and the like):

- Energy: the block ``0000FF00`` (total + rates 1-4) first. A meter that refuses it is read by
  the single identifiers ``00000000`` (total, required) and ``00000100``..``00000400`` (rates
  1-4; the periods are left out unless all four answer), and remembered, so later reads go
  straight to the single identifiers.
- Live values (``items``: voltage, current, power, power factor) are optional: a refused one is
  absent from the values (None), not a failed read, and is not asked again.
- Status word 3 (relay), remaining amount and purchase count stay required.

A comm error (no reply, bad frame) still fails the read: only a meter that answered "no" is
remembered. The memo is per process, keyed by (profile, gateway URL, address), and forgotten
after ``REPROBE_SECONDS`` so a replaced meter or new firmware is asked again. Relay and
keep-power commands are confirmed through the same read.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from core.ledger.money import to_fen
from hardware.codecs import FrameError, bcd_decode, dlt645
from hardware.errors import BadFrame, MeterRefused, Unsupported
from hardware.profiles.base import Profile, retrying
from hardware.values import PERIODS, MeterValues

log = logging.getLogger(__name__)

REPROBE_SECONDS = 24 * 3600
_memo_lock = threading.Lock()
_refused: dict[tuple[str, str, str], dict[int, float]] = {}  # (profile, url, address) -> {DI: when refused}


def _is_refused(key: tuple[str, str, str], di: int) -> bool:
    with _memo_lock:
        seen = _refused.get(key, {})
        at = seen.get(di)
        if at is None:
            return False
        if time.monotonic() - at > REPROBE_SECONDS:
            del seen[di]
            return False
        return True


def _remember_refused(key: tuple[str, str, str], di: int) -> None:
    with _memo_lock:
        _refused.setdefault(key, {})[di] = time.monotonic()


def forget(url: str | None = None) -> None:
    """Forget what meters refused: all of it, or the meters behind one gateway URL."""
    with _memo_lock:
        for key in [k for k in _refused if url is None or k[1] == url]:
            del _refused[key]


@dataclass(frozen=True)
class Item:
    di: int
    nbytes: int
    decimals: int = 0
    signed: bool = False      # DL/T 645 signs live values with the top bit of the top byte


ENERGY_NBYTES, ENERGY_DECIMALS = 4, 2   # XXXXXX.XX kWh


@dataclass(frozen=True)
class Dlt645Profile(Profile):
    energy_block: int = 0x0000FF00                       # total + rates 1-4, 4 bytes each
    # the same registers one by one, for meters that refuse the block: total, rates 1-4
    energy_items: tuple[int, ...] = (0x00000000, 0x00000100, 0x00000200, 0x00000300, 0x00000400)
    items: dict[str, Item] = field(default_factory=dict)  # MeterValues field -> item
    status_word3: int = 0x04000503
    relay_off_bit: int = 4
    keep_power_bit: int = 12                              # unverified
    remaining: Item = Item(0x00900200, 4, 2)
    purchase_count: Item = Item(0x03330201, 2)
    prices: dict[str, int] = field(default_factory=dict)  # period -> DI (NNNN.NNNN, 4 bytes)
    alarms: dict[str, int] = field(default_factory=dict)  # alarm1_fen / alarm2_fen / overdraft_fen -> DI
    tou_table: int = 0x04010001
    date_di: int = 0x04000101
    time_di: int = 0x04000102
    timezone: str = ""

    async def _read(self, link, address, di):
        return await retrying(lambda: link.read(address, di))

    def _memo_key(self, link, address: str) -> tuple[str, str, str]:
        return self.name, getattr(link, "url", ""), address.zfill(12)

    async def _optional(self, link, address: str, di: int) -> bytes | None:
        """Read a DI the meter may refuse: None if it does (now or before, as remembered)."""
        key = self._memo_key(link, address)
        if _is_refused(key, di):
            return None
        try:
            return await self._read(link, address, di)
        except MeterRefused as exc:
            _remember_refused(key, di)
            log.info("meter %s at %s refuses DI %08X (%s); reading on without it", key[2], key[1], di, exc)
            return None

    async def read_energy(self, link, address: str) -> tuple[Decimal, dict[str, Decimal] | None]:
        """(total kWh, periods or None): the block, or the single identifiers if the meter refuses it."""
        block = await self._optional(link, address, self.energy_block)
        if block is not None:
            if len(block) < 20 or len(block) % 4:
                raise BadFrame(f"energy block of {len(block)} bytes")
            energies = [dlt645.bcd_value(block[i:i + 4], ENERGY_DECIMALS) for i in range(0, 20, 4)]
            return energies[0], dict(zip(PERIODS, energies[1:5]))
        total_di, *rate_dis = self.energy_items
        total = _decode(await self._read(link, address, total_di), Item(total_di, ENERGY_NBYTES, ENERGY_DECIMALS))
        rates: list[Decimal] = []
        for di in rate_dis:
            data = await self._optional(link, address, di)
            if data is None:
                return total, None  # periods only when every rate register answers
            rates.append(_decode(data, Item(di, ENERGY_NBYTES, ENERGY_DECIMALS)))
        return total, dict(zip(PERIODS, rates))

    async def read(self, link, address: str) -> MeterValues:
        total, periods = await self.read_energy(link, address)
        out: dict = {"total_kwh": total, "periods": periods}
        for name, item in self.items.items():
            data = await self._optional(link, address, item.di)
            if data is not None:
                out[name] = _decode(data, item)
        status = await self._read(link, address, self.status_word3)
        word = int.from_bytes(status[:2], "little")
        out["relay"] = "off" if word >> self.relay_off_bit & 1 else "on"
        out["remaining_amount"] = _decode(await self._read(link, address, self.remaining.di), self.remaining)
        out["purchase_count"] = int(_decode(await self._read(link, address, self.purchase_count.di),
                                            self.purchase_count))
        return MeterValues(**out, extra={"keep_power": bool(word >> self.keep_power_bit & 1)})

    async def send(self, link, address: str, kind: str, params: dict) -> None:
        self.supports(kind)
        if kind in ("relay_off", "relay_on", "keep_power_on", "keep_power_off"):
            n1 = {"relay_off": dlt645.TRIP, "relay_on": dlt645.CLOSE, "keep_power_on": dlt645.KEEP_POWER,
                  "keep_power_off": dlt645.KEEP_POWER_RELEASE}[kind]
            valid = dlt645.time_bytes(self.local_now() + timedelta(minutes=10))
            await link.request(address, dlt645.control_request(address, n1, valid), dlt645.CONTROL)
        elif kind == "set_prices":
            for period, value in _prices(params).items():
                if period not in self.prices:
                    raise Unsupported(f"profile {self.name} has no {period} price")
                await self._write(link, address, self.prices[period], dlt645.bcd_from_value(value, 4, 4))
        elif kind == "set_alarms":
            for name, fen in _alarms(params).items():
                if name not in self.alarms:
                    raise Unsupported(f"profile {self.name} has no {name}")
                await self._write(link, address, self.alarms[name], dlt645.bcd_encode(fen, 4))
        elif kind == "set_tou":
            await self._write(link, address, self.tou_table, tou_bytes(params))
        elif kind == "sync_clock":
            if params.get("broadcast"):
                await self.broadcast_clock(link, self.local_now())
                return
            now = self.local_now()
            await self._write(link, address, self.date_di, bytes([
                now.isoweekday() % 7, *[dlt645.bcd_encode(v, 1)[0] for v in (now.day, now.month, now.year % 100)]]))
            await self._write(link, address, self.time_di, bytes(
                dlt645.bcd_encode(v, 1)[0] for v in (now.second, now.minute, now.hour)))

    async def _write(self, link, address, di, value: bytes) -> None:
        await link.request(address, dlt645.write_request(address, di, value), dlt645.WRITE)

    async def verify_extra(self, link, address, kind, params, values) -> tuple[bool, MeterValues, str]:
        if kind in ("keep_power_on", "keep_power_off"):
            want = kind == "keep_power_on"
            seen = values.extra.get("keep_power")
            return seen == want, values, f"keep-power is {'on' if seen else 'off'}"
        if kind == "set_prices":
            seen = {p: dlt645.bcd_value(await self._read(link, address, self.prices[p]), 4) for p in _prices(params)}
            want = {p: Decimal(v) for p, v in _prices(params).items()}
            return seen == want, values, f"prices {', '.join(f'{k}={v}' for k, v in seen.items())}"
        if kind == "set_alarms":
            seen = {n: bcd_decode(await self._read(link, address, self.alarms[n])) for n in _alarms(params)}
            return seen == _alarms(params), values, f"alarms {seen}"
        if kind == "set_tou":
            seen = await self._read(link, address, self.tou_table)
            return seen == tou_bytes(params), values, "TOU table read back"
        if kind == "sync_clock":
            date = await self._read(link, address, self.date_di)
            time = await self._read(link, address, self.time_di)
            try:
                clock = datetime(2000 + bcd_decode(date[3:4]), bcd_decode(date[2:3]), bcd_decode(date[1:2]),
                                 bcd_decode(time[2:3]), bcd_decode(time[1:2]), bcd_decode(time[0:1]))
            except (FrameError, ValueError):
                raise BadFrame("meter clock is not a valid date") from None
            drift = abs((clock - self.local_now()).total_seconds())
            return drift <= 10, values, f"meter clock {clock:%Y-%m-%d %H:%M:%S}, {drift:.0f}s off"
        return await super().verify_extra(link, address, kind, params, values)

    async def read_purchase(self, link, address: str) -> tuple[int, int]:
        count = int(_decode(await self._read(link, address, self.purchase_count.di), self.purchase_count))
        remaining = _decode(await self._read(link, address, self.remaining.di), self.remaining)
        return count, to_fen(remaining)

    async def send_recharge(self, link, address: str, amount_fen: int, purchase_count: int) -> None:
        self.supports("recharge")
        # Never retried here: a lost reply is resolved by the executor reading the count back.
        await link.request(address, dlt645.recharge_request(address, amount_fen, purchase_count), dlt645.PREPAID)

    async def broadcast_clock(self, link, now) -> None:
        await link.broadcast(dlt645.broadcast_time_request(now))
        await asyncio.sleep(0.05)  # let the bus settle; broadcasts get no reply

    def local_now(self) -> datetime:
        from zoneinfo import ZoneInfo

        from core.config import get_settings
        return datetime.now(ZoneInfo(self.timezone or get_settings().timezone)).replace(tzinfo=None, microsecond=0)


def _decode(data: bytes, item: Item) -> Decimal:
    raw = bytearray(data[:item.nbytes])
    if len(raw) < item.nbytes:
        raise BadFrame(f"DI {item.di:08x}: {len(raw)} bytes, expected {item.nbytes}")
    negative = False
    if item.signed and raw[-1] & 0x80:
        raw[-1] &= 0x7F
        negative = True
    try:
        value = Decimal(bcd_decode(bytes(raw))).scaleb(-item.decimals)
    except FrameError as exc:
        raise BadFrame(str(exc)) from None
    return -value if negative else value


def _prices(params: dict) -> dict[str, Decimal]:
    prices = params.get("prices")
    if not isinstance(prices, dict) or not prices:
        raise ValueError("set_prices needs params.prices like {\"peak\": \"1.2000\"}")
    out = {}
    for period, value in prices.items():
        price = Decimal(str(value))
        if price < 0 or price >= 10000 or price != price.quantize(Decimal("0.0001")):
            raise ValueError(f"price {period}={value}: 0 to 9999.9999 yuan, at most 4 places")
        out[period] = price
    return out


def _alarms(params: dict) -> dict[str, int]:
    out = {k: params[k] for k in ("alarm1_fen", "alarm2_fen", "overdraft_fen") if k in params}
    if not out or not all(isinstance(v, int) and 0 <= v < 10 ** 8 for v in out.values()):
        raise ValueError("set_alarms needs alarm1_fen / alarm2_fen / overdraft_fen as whole fen")
    return out


PERIOD_CODES = {"sharp": 1, "peak": 2, "flat": 3, "valley": 4}


def tou_bytes(params: dict) -> bytes:
    """params.slots [{"start": "HH:MM", "period": "peak"}] (up to 14) to 14 x (NN mm hh)."""
    slots = params.get("slots")
    if not isinstance(slots, list) or not 1 <= len(slots) <= 14:
        raise ValueError("set_tou needs params.slots: 1 to 14 {\"start\": \"HH:MM\", \"period\": ...}")
    out = b""
    for slot in slots:
        try:
            hh, mm = (int(x) for x in str(slot["start"]).split(":"))
            code = PERIOD_CODES[slot["period"]]
        except (KeyError, ValueError, TypeError):
            raise ValueError(f"set_tou: bad slot {slot!r}") from None
        if not (0 <= hh < 24 and 0 <= mm < 60):
            raise ValueError(f"set_tou: bad time in {slot!r}")
        out += bytes([dlt645.bcd_encode(code, 1)[0], dlt645.bcd_encode(mm, 1)[0], dlt645.bcd_encode(hh, 1)[0]])
    return out + out[-3:] * (14 - len(slots))  # unused slots repeat the last one, as meters expect
