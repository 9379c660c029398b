"""CJ/T 188-2004 framing: ``68 T A0..A6 C L DI0 DI1 SER DATA CS 16`` (no 0x33 offset).

Address is 7 BCD bytes low byte first; CS is the byte sum mod 256 from 68 to the end of DATA.
Replies set bit 7 of C; bit 6 set means an error. Leading FE wake-up bytes and garbage are
skipped by ``decode``.

Published documents disagree on the byte order of the data identifier (the 2004 and 2018
editions differ): ``di_order="low-first"`` sends DI 0x901F as ``1F 90`` (meterpay's default),
``"high-first"`` as ``90 1F``. ``decode`` always reads the DI low byte first; ``Frame.di_matches``
accepts a reply in either order. Battery meters may need 0-4 ``FE`` wake-up bytes before a
request (``wake``).
"""
from __future__ import annotations

from dataclasses import dataclass

from hardware.codecs import FrameError, address_bytes, address_text

COLD_WATER = 0x10
READ = 0x01
WRITE = 0x04

DI_READ_DATA = 0x901F
DI_VALVE = 0xA017
VALVE_OPEN = 0x55
VALVE_CLOSE = 0x99

UNIT_M3 = 0x2C
VALVE_STATES = {0b00: "open", 0b01: "closed", 0b11: "abnormal", 0b10: "abnormal"}
DI_ORDERS = ("low-first", "high-first")
MAX_WAKE = 4


@dataclass(frozen=True)
class Frame:
    meter_type: int
    address: str   # 14 digits
    control: int
    di: int
    ser: int
    data: bytes    # after DI and SER

    @property
    def is_reply(self) -> bool:
        return bool(self.control & 0x80)

    @property
    def is_error(self) -> bool:
        return bool(self.control & 0x40)

    def di_matches(self, di: int) -> bool:
        """Is this frame about ``di``, whichever byte order the meter put it on the wire in?"""
        return self.di in (di, swap_di(di))


def swap_di(di: int) -> int:
    return ((di & 0xFF) << 8) | (di >> 8 & 0xFF)


def check_settings(di_order: str, wake: int) -> None:
    if di_order not in DI_ORDERS:
        raise ValueError(f"CJ/T 188 di_order must be {' or '.join(DI_ORDERS)}, got {di_order!r}")
    if not isinstance(wake, int) or isinstance(wake, bool) or not 0 <= wake <= MAX_WAKE:
        raise ValueError(f"CJ/T 188 wake-up bytes must be 0 to {MAX_WAKE}, got {wake!r}")


def checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode(address: str, control: int, di: int, data: bytes = b"", *, ser: int = 0,
           meter_type: int = COLD_WATER, di_order: str = "low-first", wake: int = 0) -> bytes:
    """One frame; ``di_order`` puts the DI low or high byte first, ``wake`` FE bytes go before it."""
    check_settings(di_order, wake)
    payload = di.to_bytes(2, "little" if di_order == "low-first" else "big") + bytes([ser & 0xFF]) + data
    body = bytes([0x68, meter_type]) + address_bytes(address, 7) + bytes([control, len(payload)]) + payload
    return b"\xFE" * wake + body + bytes([checksum(body), 0x16])


def decode(buf: bytes) -> tuple[Frame | None, int]:
    """Like ``dlt645.decode``: (frame, consumed) / (None, bytes to drop, 0 = need more)."""
    start = buf.find(b"\x68")
    if start < 0:
        return None, len(buf)
    if len(buf) - start < 11:
        return None, start
    length = buf[start + 10]
    end = start + 11 + length + 2
    if len(buf) < end:
        return None, start
    if buf[end - 1] != 0x16:
        # not a frame start after all (a 68 inside garbage): hunt on
        return None, start + 1
    body = buf[start:start + 11 + length]
    if checksum(body) != buf[end - 2]:
        raise FrameError("CJ/T 188 checksum mismatch")
    if length < 3:
        raise FrameError("CJ/T 188 frame too short for DI and SER")
    payload = body[11:]
    return Frame(body[1], address_text(body[2:9]), body[9], int.from_bytes(payload[:2], "little"), payload[2],
                 payload[3:]), end


def read_request(address: str, ser: int = 0, *, di_order: str = "low-first", wake: int = 0) -> bytes:
    return encode(address, READ, DI_READ_DATA, ser=ser, di_order=di_order, wake=wake)


def valve_request(address: str, open_: bool, ser: int = 0, *, di_order: str = "low-first", wake: int = 0) -> bytes:
    return encode(address, WRITE, DI_VALVE, bytes([VALVE_OPEN if open_ else VALVE_CLOSE]), ser=ser,
                  di_order=di_order, wake=wake)
