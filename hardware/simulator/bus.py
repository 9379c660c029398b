"""Virtual gateways: a TCP port in front of one RS485 bus of virtual meters.

A request is framed by the gateway's protocol, put on the bus (one exchange at a time, like
RS485), answered by the addressed meter, and the reply is sent back after the serial time it
would take on the wire: ``(request bytes + reply bytes) x 10 bits / baud + turnaround``.
Faults can be scripted per meter (``meter.script.append("lost_reply")``) or drawn at random
with ``fault_rate``:

- ``no_reply``: the meter did not hear the request (nothing applied, no reply)
- ``lost_reply``: the meter applied the request but its reply was lost
- ``bad_checksum``: the reply's checksum/CRC is corrupted
- ``garbage``: random bytes instead of a reply
- ``wrong_address``: a well-formed reply that claims another meter's address
- ``slow``: the reply comes ``slow_seconds`` late
- ``hang_up``: the gateway closes the client's TCP connection instead of sending the reply (the
  meter got the request and may have acted on it), as some gateways and DTUs do
- ``ok``: (in a script) this request goes through untouched
- gateway down: ``gateway.set_down(True)`` refuses and drops TCP connections

Faults that belong to a meter are attributes of the meter (``hardware.simulator.meters``):
``wake_up`` (FE bytes it needs before a request, else it does not hear it), DL/T 645
``refuses`` (DIs it answers "no data requested"), CJ/T 188 ``di_order`` / ``reply_di_order``.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import random
import struct
import threading

from hardware.codecs import FrameError, cjt188, dlt645
from hardware.simulator.meters import FAMILY_OF_PROTOCOL, ModbusException, SimMeter

log = logging.getLogger(__name__)

RANDOM_FAULTS = ("no_reply", "bad_checksum", "slow", "garbage")
# A "mixed" gateway carries Modbus, DL/T 645 and CJ/T 188 meters on one bus and tells the
# protocol of each request from its framing (what `meterpay simulate` serves by default).
MIXED = "mixed"


def wire_time(request_bytes: int, reply_bytes: int, baud: int, turnaround: float) -> float:
    """Seconds one request-reply takes on an RS485 bus (10 bits a byte: start, 8 data, stop)."""
    return (request_bytes + reply_bytes) * 10 / baud + (turnaround if reply_bytes else 0.0)


def crc16(data: bytes) -> bytes:
    from pymodbus.framer import FramerRTU
    return FramerRTU.compute_CRC(data).to_bytes(2, "big")


@functools.lru_cache(maxsize=65536)
def _request_crc_ok(frame: bytes) -> bool:
    """Pollers send the same few requests over and over: check each one's CRC once."""
    return crc16(frame[:-2]) == frame[-2:]


class SimGateway:
    def __init__(self, port: int, protocol: str, meters: list[SimMeter], *, baud: int = 9600,
                 turnaround: float = 0.005, fault_rate: float = 0.0, slow_seconds: float = 2.0, seed: int = 0,
                 host: str = "127.0.0.1", name: str = ""):
        if protocol not in FAMILY_OF_PROTOCOL and protocol != MIXED:
            raise ValueError(f"protocol must be one of {', '.join(FAMILY_OF_PROTOCOL)} or {MIXED}, got {protocol!r}")
        family = FAMILY_OF_PROTOCOL.get(protocol, MIXED)
        for m in meters:
            if family != MIXED and m.family != family:
                raise ValueError(f"meter {m.address} ({m.profile}) cannot sit on a {protocol} gateway")
        self.host, self.port, self.protocol, self.family = host, port, protocol, family
        self.name = name or f"{host}:{port}"
        self.meters = {m.address: m for m in meters}
        self._by_family: dict[str, dict[str, SimMeter]] = {}
        for m in meters:
            self._by_family.setdefault(m.family, {})[m.address] = m
        self.baud, self.turnaround = baud, turnaround
        self.fault_rate, self.slow_seconds = fault_rate, slow_seconds
        self.rng = random.Random(seed)
        self.down = False
        self.exchanges = 0
        self.busy_seconds = 0.0
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[_Conn] = set()
        self._bus_free_at = 0.0
        self._last_meter: SimMeter | None = None

    def meter(self, address: str) -> SimMeter:
        for key in (address, address.zfill(12), address.zfill(14), str(int(address)) if address.isdigit() else ""):
            if key in self.meters:
                return self.meters[key]
        raise KeyError(address)

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), self.host, self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._conns):
            conn.transport.close()
        self._conns.clear()

    async def _set_down(self, down: bool) -> None:
        self.down = down
        if down:
            await self.stop()
        elif self._server is None:
            await self.start()

    # --- the bus -----------------------------------------------------------------------

    def _frame(self, buf: bytes):
        """(kind, request, bytes used); (None, None, n) drops n bytes of noise; (None, None, 0) waits."""
        if self.family != MIXED:
            request, used = self._frame_as(self.protocol, buf)
            return (self.protocol if request is not None else None), request, used
        for kind in ("modbus-rtu", "dlt645", "cjt188", "modbus-tcp"):
            request, used = self._frame_as(kind, buf)
            if request is not None:
                return kind, request, used
        return None, None, (len(buf) if len(buf) >= 64 else 0)

    @staticmethod
    def _frame_as(kind: str, buf: bytes):
        """(request, used) for one protocol; (None, n) drops noise; (None, 0) waits for more."""
        if kind == "modbus-tcp":
            if len(buf) < 7:
                return None, 0
            length = int.from_bytes(buf[4:6], "big")
            if buf[2:4] != b"\x00\x00" or not 2 <= length <= 254:
                return None, len(buf)
            size = 6 + length
            return (buf[:size], size) if len(buf) >= size else (None, 0)
        if kind == "modbus-rtu":
            if len(buf) < 8:
                return None, 0
            fc = buf[1]
            if fc in (3, 4, 6):
                size = 8
            elif fc == 16:
                size = 9 + buf[6]
            else:
                return None, 1
            if len(buf) < size:
                return None, 0
            frame = bytes(buf[:size])
            if not _request_crc_ok(frame):
                return None, size  # a meter ignores a request with a bad CRC
            return frame, size
        codec = dlt645 if kind == "dlt645" else cjt188
        try:
            frame, used = codec.decode(buf)
        except FrameError:
            return None, len(buf)
        if frame is not None and kind == "cjt188" and not (0x10 <= frame.meter_type <= 0x49):
            return None, used
        return frame, used

    def exchange(self, kind: str, request, conn: _Conn, arrived: float, wake: int = 0) -> None:
        """Answer one request. The bus is modelled by time rather than a lock: an exchange starts
        when its request reaches the gateway or when the bus frees up, whichever is later, and
        the reply is written when the wire would have delivered it (the simulator's own
        processing hides inside that time, as a meter's does)."""
        loop = asyncio.get_running_loop()
        start = max(arrived, self._bus_free_at)
        request_len, reply = self._answer(kind, request, wake)
        fault = None
        meter = self._last_meter
        if meter is not None and meter.script:
            fault = meter.script.popleft()
            fault = None if fault == "ok" else fault
        elif self.fault_rate and self.rng.random() < self.fault_rate:
            fault = self.rng.choice(RANDOM_FAULTS)
        if fault in ("no_reply", "lost_reply", "hang_up"):
            reply = None
        elif reply is not None and fault is not None:
            reply = self._spoil(kind, reply, fault)
        self.exchanges += 1
        wait = wire_time(request_len, len(reply) if reply else 0, self.baud, self.turnaround)
        if fault == "slow":
            wait += self.slow_seconds
        self.busy_seconds += wait
        self._bus_free_at = start + wait
        if reply is not None:
            loop.call_at(self._bus_free_at, conn.reply, reply)
        elif fault == "hang_up":
            loop.call_at(self._bus_free_at, conn.hang_up)
        if self.fault_rate and self.rng.random() < self.fault_rate / 50:
            loop.create_task(self.outage(3.0))

    async def outage(self, seconds: float) -> None:
        await self._set_down(True)
        await asyncio.sleep(seconds)
        await self._set_down(False)

    def _answer(self, kind: str, request, wake: int = 0) -> tuple[int, bytes | None]:
        """Let the addressed meter handle the request; (request bytes on the wire, reply bytes).
        ``wake``: the FE bytes that came right before a DL/T 645 / CJ/T 188 frame."""
        self._last_meter = None
        family = FAMILY_OF_PROTOCOL[kind]
        meters = self._by_family.get(family, {})
        if family == "modbus":
            tcp = kind == "modbus-tcp"
            unit = request[6] if tcp else request[0]
            pdu = request[7:] if tcp else request[1:-2]
            meter = meters.get(str(unit))
            wire = len(request) - (7 if tcp else 0) + (3 if tcp else 0)  # the RTU bytes behind the gateway
            if meter is None or meter.offline:
                return wire, None
            self._last_meter = meter
            if meter.script and meter.script[0] == "no_reply":
                return wire, None
            meter.requests += 1
            body = bytes([unit]) + _modbus_pdu(meter, pdu)
            if tcp:
                return wire, request[:4] + (len(body)).to_bytes(2, "big") + body
            return wire, body + crc16(body)
        wire = _DLT645_EMPTY + len(request.data) if family == "dlt645" else wake + 13 + 3 + len(request.data)
        if family == "dlt645" and request.address == dlt645.BROADCAST:
            for m in meters.values():
                if not m.offline and wake >= m.wake_up:
                    m.handle(request)
            return wire, None
        meter = meters.get(request.address)
        if meter is None or meter.offline or wake < meter.wake_up:
            return wire, None  # absent, dead, or asleep: a battery meter hears nothing without wake-up bytes
        self._last_meter = meter
        if meter.script and meter.script[0] == "no_reply":
            return wire, None
        meter.requests += 1
        reply = meter.handle(request)
        if reply is not None and family == "dlt645":
            reply = reply[4:]  # meters answer without the FE wake-up bytes
        return wire, reply

    def _spoil(self, kind: str, reply: bytes, fault: str) -> bytes:
        if fault == "bad_checksum":
            return reply[:-2] + bytes([reply[-2] ^ 0x5A]) + reply[-1:]
        if fault == "garbage":
            return bytes(self.rng.randrange(256) for _ in range(len(reply)))
        if fault == "wrong_address":
            family = FAMILY_OF_PROTOCOL[kind]
            if family == "modbus":
                if kind == "modbus-tcp":
                    return reply[:6] + bytes([(reply[6] % 247) + 1]) + reply[7:]
                body = bytes([(reply[0] % 247) + 1]) + reply[1:-2]
                return body + crc16(body)
            codec = dlt645 if family == "dlt645" else cjt188
            frame, _ = codec.decode(reply)
            other = str((int(frame.address) + 1) % 10 ** len(frame.address)).zfill(len(frame.address))
            if family == "dlt645":
                return dlt645.encode(other, frame.control, frame.data, preamble=False)
            return cjt188.encode(other, frame.control, frame.di, frame.data, ser=frame.ser)
        return reply


class _Conn(asyncio.Protocol):
    """One TCP client of a gateway: frames its bytes into requests and hands them to the bus."""

    def __init__(self, gateway: SimGateway):
        self.gateway = gateway
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        if self.gateway.down:
            transport.close()
            return
        self.gateway._conns.add(self)

    def connection_lost(self, exc) -> None:
        self.gateway._conns.discard(self)

    def hang_up(self) -> None:
        self.buf = b""
        if not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        gw = self.gateway
        if gw.down:
            return
        arrived = asyncio.get_running_loop().time()
        if gw.family == MIXED and self.buf and gw._frame(data)[0] is not None:
            self.buf = b""  # leftover noise before a fresh, complete request
        self.buf += data
        while self.buf:
            kind, request, used = gw._frame(self.buf)
            if not used:
                break
            wake = _wake_bytes(self.buf[:used]) if kind in ("dlt645", "cjt188") else 0
            self.buf = self.buf[used:]
            if request is not None:
                gw.exchange(kind, request, self, arrived, wake)

    def reply(self, data: bytes) -> None:
        if not self.gateway.down and not self.transport.is_closing():
            self.transport.write(data)


_DLT645_EMPTY = len(dlt645.encode("0", 0x11, b""))  # a DL/T 645 frame's bytes besides its data (wake-up included)


def _wake_bytes(raw: bytes) -> int:
    """How many FE bytes came right before the frame's first 68."""
    start = raw.find(b"\x68")
    head = raw[:start] if start >= 0 else b""
    return len(head) - len(head.rstrip(b"\xFE"))


def _modbus_pdu(meter, pdu: bytes) -> bytes:
    fc = pdu[0]
    try:
        if fc in (3, 4) and len(pdu) == 5:
            addr, count = struct.unpack(">HH", pdu[1:5])
            regs = meter.registers()
            try:
                values = [regs[a] for a in range(addr, addr + count)]
            except KeyError:
                raise ModbusException(2) from None
            return bytes([fc, 2 * count]) + struct.pack(f">{count}H", *values)
        if fc == 16 and len(pdu) >= 6:
            addr, count, n = struct.unpack(">HHB", pdu[1:6])
            values = list(struct.unpack(f">{count}H", pdu[6:6 + n]))
            meter.write(addr, values)
            return pdu[:5]
        if fc == 6 and len(pdu) == 5:
            addr, value = struct.unpack(">HH", pdu[1:5])
            meter.write(addr, [value])
            return pdu[:5]
        raise ModbusException(1)
    except ModbusException as exc:
        return bytes([fc | 0x80, exc.code])


class Simulator:
    """Many gateways in one asyncio loop; run it in the foreground or in a background thread."""

    def __init__(self, gateways: list[SimGateway]):
        self.gateways = gateways
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def start(self) -> None:
        for gw in self.gateways:
            await gw.start()

    async def stop(self) -> None:
        for gw in self.gateways:
            await gw.stop()

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # --- background thread (tests, benchmarks) ----------------------------------------

    def start_in_thread(self) -> Simulator:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="meter-simulator", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.start(), self._loop).result(10)
        return self

    def call(self, coro, timeout: float = 10):
        """Run a coroutine on the simulator's loop from another thread (e.g. gateway.outage)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def set_down(self, gateway: SimGateway, down: bool) -> None:
        self.call(gateway._set_down(down))

    def stop_thread(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None
