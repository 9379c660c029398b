"""Reaching a gateway: Modbus RTU over TCP / Modbus TCP (pymodbus), DL/T 645 and CJ/T 188 over a
transparent serial-to-TCP gateway (our codecs on an asyncio protocol).

A *link* is one TCP connection to one gateway. It sends one request, waits for the matching
reply, and counts what went wrong (``LinkStats``). It never decides a value is good unless the
frame checked out and came from the addressed meter. Serializing a bus across processes is the
bus lock's job (hardware.buslock), not the link's.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, fields
from urllib.parse import urlparse

from hardware import settings
from hardware.codecs import FrameError, cjt188, dlt645
from hardware.errors import BadFrame, GatewayDown, MeterRefused, NoReply, WrongAddress

log = logging.getLogger(__name__)

PROTOCOLS = ("modbus-rtu", "modbus-tcp", "dlt645", "cjt188")


def parse_gateway_url(url: str) -> tuple[str, int]:
    """``tcp://host:port`` (also ``rtu+tcp://``) to (host, port); a clear ValueError otherwise."""
    parsed = urlparse(url.strip())
    try:
        port = parsed.port  # raises ValueError itself for a port that is not a number or out of range
    except ValueError:
        port = None
    if parsed.scheme not in ("tcp", "rtu+tcp") or not parsed.hostname or not port:
        raise ValueError(f"gateway must look like tcp://HOST:PORT, got {url!r}")
    return parsed.hostname, port


@dataclass
class LinkStats:
    requests: int = 0
    replies: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    wrong_address: int = 0
    garbage_bytes: int = 0
    refused: int = 0
    connect_failures: int = 0

    def add(self, other: LinkStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Link:
    protocol: str

    def __init__(self, url: str, timeout: float | None = None):
        self.url = url
        self.host, self.port = parse_gateway_url(url)
        self.timeout = settings.reply_timeout() if timeout is None else timeout
        self.stats = LinkStats()

    async def close(self) -> None:  # pragma: no cover - overridden
        pass

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.close()


# --- Modbus (pymodbus) -------------------------------------------------------------------

def _quiet_pymodbus() -> None:
    """pymodbus logs every timeout at ERROR; the link counts and reports them itself."""
    pm = logging.getLogger("pymodbus")
    if pm.level == logging.NOTSET:
        pm.setLevel(logging.CRITICAL)


class ModbusLink(Link):
    """Modbus RTU framing over TCP (a transparent gateway) or Modbus TCP, via pymodbus's client.

    pymodbus (3.16) does not fail a pending request when the gateway closes the connection: it
    waits out the timeout and says nothing was received. The link listens to the client's
    connect trace instead and cancels the request waiting for its reply when the connection goes
    away, so a gateway that hangs up is ``GatewayDown`` ("closed the connection") at once, as on
    the DL/T 645 and CJ/T 188 links.
    """

    def __init__(self, url: str, protocol: str = "modbus-rtu", timeout: float | None = None):
        super().__init__(url, timeout)
        _quiet_pymodbus()
        from pymodbus import FramerType
        from pymodbus.client import AsyncModbusTcpClient
        self.protocol = protocol
        self._rx = bytearray()
        self._inflight: asyncio.Future | None = None  # the request waiting for its reply
        self._hung_up = False
        self.client = AsyncModbusTcpClient(
            self.host, port=self.port, framer=FramerType.RTU if protocol == "modbus-rtu" else FramerType.SOCKET,
            timeout=self.timeout, retries=0, reconnect_delay=0, trace_packet=self._trace,
            trace_connect=self._on_connect)

    def _on_connect(self, connected: bool) -> None:
        # pymodbus calls this from connection_made / connection_lost, in the link's event loop:
        # a request still waiting for its reply will not get one
        if not connected and self._inflight is not None and not self._inflight.done():
            self._hung_up = True
            self._inflight.cancel()

    def _trace(self, sending: bool, data: bytes) -> bytes:
        # pymodbus skips a reply with a bad CRC or another unit id silently (and times out);
        # keep the raw bytes so the error path can say which it was.
        if not sending:
            self._rx += data
        return data

    def _diagnose(self, unit: int) -> tuple[bool, bool]:
        """(wrong unit, bad CRC) of what came back for the last request."""
        data = bytes(self._rx)
        if not data:
            return False, False
        got = data[0] if self.protocol == "modbus-rtu" else (data[6] if len(data) > 6 else None)
        wrong = got is not None and got != unit
        bad_crc = False
        if self.protocol == "modbus-rtu" and len(data) >= 4:
            from pymodbus.framer import FramerRTU
            bad_crc = FramerRTU.compute_CRC(data[:-2]) != int.from_bytes(data[-2:], "big")
        return wrong, bad_crc

    async def _connected(self) -> None:
        if self.client.connected:
            return
        if not await self.client.connect():
            self.stats.connect_failures += 1
            raise GatewayDown(f"gateway {self.host}:{self.port} is not reachable")

    def _closed(self) -> GatewayDown:
        self.stats.connect_failures += 1
        return GatewayDown(f"gateway {self.host}:{self.port} closed the connection")

    async def _unless_hung_up(self, coro):
        """Await ``coro`` unless the connection goes away first (then GatewayDown at once)."""
        task = asyncio.ensure_future(coro)
        self._inflight, self._hung_up = task, False
        try:
            return await task
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if self._hung_up and (me is None or not me.cancelling()):
                raise self._closed() from None
            raise
        finally:
            self._inflight = None

    async def _call(self, unit: int, coro_fn):
        from pymodbus.exceptions import ConnectionException, ModbusIOException
        await self._connected()
        self.stats.requests += 1
        self._rx = bytearray()
        try:
            reply = await self._unless_hung_up(coro_fn())
        except ModbusIOException as exc:
            if not self.client.connected:
                raise self._closed() from None
            wrong_unit, bad_crc = self._diagnose(unit)
            if "device id" in str(exc) or wrong_unit:
                self.stats.wrong_address += 1
                raise WrongAddress(f"reply from another unit than {unit}") from None
            if bad_crc:
                self.stats.bad_frames += 1
                raise BadFrame(f"unit {unit}: reply with a bad CRC") from None
            self.stats.timeouts += 1
            raise NoReply(f"unit {unit} did not answer within {self.timeout:g}s") from None
        except ConnectionException:
            self.stats.connect_failures += 1
            raise GatewayDown(f"gateway {self.host}:{self.port} dropped the connection") from None
        if reply.isError():
            self.stats.refused += 1
            code = getattr(reply, "exception_code", None)
            raise MeterRefused(f"unit {unit} refused: Modbus exception {code if code is not None else '?'}",
                               code=code)
        if reply.dev_id != unit:
            self.stats.wrong_address += 1
            raise WrongAddress(f"reply from unit {reply.dev_id}, asked unit {unit}")
        self.stats.replies += 1
        return reply

    async def read(self, unit: int, address: int, count: int) -> list[int]:
        reply = await self._call(unit, lambda: self.client.read_holding_registers(address, count=count,
                                                                                  device_id=unit))
        regs = list(reply.registers)
        if len(regs) != count:
            # a late reply to an earlier request on this bus; not ours
            self.stats.wrong_address += 1
            raise WrongAddress(f"unit {unit}: got {len(regs)} registers, asked {count}")
        return regs

    async def write(self, unit: int, address: int, values: list[int]) -> None:
        await self._call(unit, lambda: self.client.write_registers(address, values, device_id=unit))

    async def close(self) -> None:
        self.client.close()


# --- byte-framed protocols (DL/T 645, CJ/T 188) -----------------------------------------

class _Buffered(asyncio.Protocol):
    """Bytes as they arrive; ``waiter`` (a future the link awaits) is woken by new bytes or the
    connection's end. A bare future and one timer a wait: cheaper than ``wait_for(event.wait())``,
    which makes a task per wait (a batch lane waits about ten times a command)."""

    def __init__(self):
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._wake()

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._wake()


def _expire(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class FrameLink(Link):
    codec = None  # dlt645 or cjt188 module

    def __init__(self, url: str, timeout: float | None = None):
        super().__init__(url, timeout)
        self._transport: asyncio.Transport | None = None
        self._proto: _Buffered | None = None

    async def _connected(self) -> None:
        if self._transport is not None and not self._proto.closed:
            return
        loop = asyncio.get_running_loop()
        try:
            self._transport, self._proto = await asyncio.wait_for(
                loop.create_connection(_Buffered, self.host, self.port), self.timeout)
        except (TimeoutError, OSError):
            self.stats.connect_failures += 1
            self._transport = None
            raise GatewayDown(f"gateway {self.host}:{self.port} is not reachable") from None

    async def exchange(self, request: bytes, accept, *, expect_reply: bool = True):
        """Send ``request``; return the first valid reply frame that ``accept(frame)`` says is ours.

        A reply from another address raises WrongAddress; a bad checksum BadFrame; silence NoReply.
        """
        await self._connected()
        proto = self._proto
        proto.buf.clear()  # stale bytes of an earlier, timed-out exchange are not this reply
        self.stats.requests += 1
        self._transport.write(request)
        if not expect_reply:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while True:
            while proto.buf:
                try:
                    frame, used = self.codec.decode(bytes(proto.buf))
                except FrameError as exc:
                    self.stats.bad_frames += 1
                    proto.buf.clear()
                    raise BadFrame(str(exc)) from None
                if frame is None:
                    if not used:
                        break
                    self.stats.garbage_bytes += used
                    del proto.buf[:used]
                    continue
                del proto.buf[:used]
                if not frame.is_reply:
                    continue  # an echo of our own request from a gateway with local echo
                if not accept(frame):
                    self.stats.wrong_address += 1
                    raise WrongAddress(f"reply from {frame.address} does not match the request")
                self.stats.replies += 1
                return frame
            if proto.closed:
                self._transport = None
                self.stats.connect_failures += 1
                raise GatewayDown(f"gateway {self.host}:{self.port} closed the connection")
            left = deadline - loop.time()
            if left <= 0:
                self.stats.timeouts += 1
                raise NoReply(f"no reply within {self.timeout:g}s")
            proto.waiter = fut = loop.create_future()
            timer = loop.call_later(left, _expire, fut)
            try:
                await fut
            finally:
                timer.cancel()
                proto.waiter = None

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class Dlt645Link(FrameLink):
    protocol = "dlt645"
    codec = dlt645

    async def request(self, address: str, request: bytes, function: int) -> dlt645.Frame:
        """One DL/T 645 exchange; an error reply (bit 6) raises MeterRefused."""
        want = address.zfill(12)
        try:
            frame = await self.exchange(request, lambda f: f.address == want and f.function == function)
        except NoReply:
            raise NoReply(f"meter {want} did not answer within {self.timeout:g}s") from None
        if frame.is_error:
            self.stats.refused += 1
            raise MeterRefused(f"meter {want} refused: {frame.error_text()}", code=frame.error_code)
        return frame

    async def read(self, address: str, di: int) -> bytes:
        """Read one data identifier; returns its data bytes (after the echoed DI)."""
        frame = await self.request(address, dlt645.read_request(address, di), dlt645.READ)
        if frame.data[:4] != dlt645.di_bytes(di):
            self.stats.wrong_address += 1
            raise WrongAddress(f"meter {address} answered DI {frame.data[:4][::-1].hex()} for {di:08x}")
        return frame.data[4:]

    async def broadcast(self, request: bytes) -> None:
        await self.exchange(request, lambda f: True, expect_reply=False)


class Cjt188Link(FrameLink):
    protocol = "cjt188"
    codec = cjt188

    async def request(self, address: str, request: bytes, di: int) -> cjt188.Frame:
        """One CJ/T 188 exchange; the reply's DI may come in either byte order."""
        want = address.zfill(14)
        try:
            frame = await self.exchange(request, lambda f: f.address == want and f.di_matches(di))
        except NoReply:
            raise NoReply(f"water meter {want} did not answer within {self.timeout:g}s") from None
        if frame.is_error:
            self.stats.refused += 1
            raise MeterRefused(f"water meter {want} refused the request")
        return frame


def open_link(url: str, protocol: str, timeout: float | None = None) -> Link:
    if protocol in ("modbus-rtu", "modbus-tcp"):
        return ModbusLink(url, protocol, timeout)
    if protocol == "dlt645":
        return Dlt645Link(url, timeout)
    if protocol == "cjt188":
        return Cjt188Link(url, timeout)
    raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
