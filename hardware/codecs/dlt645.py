"""DL/T 645-2007 framing: ``FE*4 68 A0..A5 68 C L DATA CS 16``.

Address is 6 BCD bytes low byte first; every data byte is sent +0x33; CS is the byte sum mod 256
from the first 68 to the end of DATA. A reply sets bit 7 of C; bit 6 set means an error reply:
one error-status byte ERR (``ERRORS``), except a refused 03H (prepaid) frame, which carries
the two-byte security error word SERR, low byte first (``SERR``). ``decode`` skips leading
garbage and wake-up bytes and returns the frame and how many bytes it consumed.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hardware.codecs import FrameError, address_bytes, address_text, bcd_decode, bcd_encode

PREAMBLE = b"\xFE\xFE\xFE\xFE"
BROADCAST = "999999999999"

READ = 0x11
WRITE = 0x14
BROADCAST_TIME = 0x08
CONTROL = 0x1C
PREPAID = 0x03

# 1CH N1 codes
TRIP = 0x1A
CLOSE_ALLOWED = 0x1B
CLOSE = 0x1C
KEEP_POWER = 0x3A
KEEP_POWER_RELEASE = 0x3B

# Error status byte ERR of a D1/D4/DC/... reply (DL/T 645-2007 7.4)
ERRORS = {0x01: "other error", 0x02: "no data requested", 0x04: "password error or not authorised",
          0x08: "baud rate cannot change", 0x10: "annual time zone count exceeded",
          0x20: "daily period count exceeded", 0x40: "rate count exceeded"}
NO_DATA = 0x02
# Security error word SERR of a refused 03H (C3) reply, two bytes low first. A purchase count equal
# to the meter's is "repeated recharge" (already applied); any other count but the next one is
# "purchase count error".
SERR = {0x0001: "other error", 0x0002: "repeated recharge", 0x0004: "ESAM verification failed",
        0x0008: "identity authentication failed", 0x0010: "customer number mismatch",
        0x0020: "purchase count error", 0x0040: "purchase exceeds the hoarding limit"}


@dataclass(frozen=True)
class Frame:
    address: str      # 12 digits
    control: int
    data: bytes       # without the 0x33 offset

    @property
    def is_reply(self) -> bool:
        return bool(self.control & 0x80)

    @property
    def is_error(self) -> bool:
        return bool(self.control & 0x40)

    @property
    def function(self) -> int:
        return self.control & 0x1F

    @property
    def error_code(self) -> int:
        """The error status of an error reply: SERR (two bytes) for 03H, else the ERR byte (0 if absent)."""
        if self.function == PREPAID:
            return int.from_bytes(self.data[:2], "little")
        return self.data[0] if self.data else 0

    def error_text(self) -> str:
        code = self.error_code
        table = SERR if self.function == PREPAID else ERRORS
        names = [text for bit, text in table.items() if code & bit]
        if names:
            return ", ".join(names)
        return f"error status {code:#06x}" if self.function == PREPAID else f"error status {code:#04x}"


_PLUS_33 = bytes((b + 0x33) & 0xFF for b in range(256))   # data bytes go on the wire plus 33H
_MINUS_33 = bytes((b - 0x33) & 0xFF for b in range(256))


def checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode(address: str, control: int, data: bytes = b"", *, preamble: bool = True) -> bytes:
    if len(data) > 200:
        raise ValueError("DL/T 645 data is at most 200 bytes")
    body = b"\x68" + address_bytes(address, 6) + b"\x68" + bytes([control, len(data)]) + bytes(data).translate(
        _PLUS_33)
    return (PREAMBLE if preamble else b"") + body + bytes([checksum(body), 0x16])


def decode(buf: bytes) -> tuple[Frame | None, int]:
    """Find the first frame in ``buf``. Returns (frame, bytes consumed) or (None, bytes to drop).

    (None, 0) means "need more bytes". A bad checksum raises FrameError (the caller counts it).
    """
    start = buf.find(b"\x68")
    if start < 0:
        return None, len(buf)  # all garbage / wake-up bytes
    if len(buf) - start < 12:
        return None, start
    if buf[start + 7] != 0x68:
        return None, start + 1  # a 68 inside garbage; hunt for the next one
    length = buf[start + 9]
    end = start + 10 + length + 2
    if len(buf) < end:
        return None, start
    body = buf[start:start + 10 + length]
    if buf[end - 1] != 0x16:
        raise FrameError("DL/T 645 frame does not end with 16")
    if checksum(body) != buf[end - 2]:
        raise FrameError("DL/T 645 checksum mismatch")
    data = bytes(body[10:]).translate(_MINUS_33)
    return Frame(address_text(body[1:7]), body[8], data), end


def di_bytes(di: int) -> bytes:
    """A data identifier like 0x00010100 in wire order (DI0 first)."""
    return di.to_bytes(4, "little")


def read_request(address: str, di: int) -> bytes:
    return encode(address, READ, di_bytes(di))


def write_request(address: str, di: int, value: bytes, *, password: bytes = b"\x02\x00\x00\x00",
                  operator: bytes = b"\x00\x00\x00\x00") -> bytes:
    return encode(address, WRITE, di_bytes(di) + password + operator + value)


def control_request(address: str, n1: int, valid_until: bytes, *, password: bytes = b"\x02\x00\x00\x00",
                    operator: bytes = b"\x00\x00\x00\x00") -> bytes:
    """Remote control 1CH: password(4) operator(4) N1 N2 validity(ss mm hh DD MM YY)."""
    return encode(address, CONTROL, password + operator + bytes([n1, 0x00]) + valid_until)


def recharge_request(address: str, amount_fen: int, purchase_count: int, *, customer: str = "000000000000",
                     operator: bytes = b"\x00\x00\x00\x00") -> bytes:
    """Prepaid purchase 03H / 070102FF with zero MACs (vendor meters without ESAM)."""
    data = (di_bytes(0x070102FF) + operator + amount_fen.to_bytes(4, "little")
            + purchase_count.to_bytes(4, "little") + b"\x00" * 4 + address_bytes(customer, 6) + b"\x00" * 4)
    return encode(address, PREPAID, data)


def time_bytes(dt) -> bytes:
    """ss mm hh DD MM YY, each one BCD byte (the broadcast time and 1CH validity format)."""
    return bytes(bcd_encode(v, 1)[0] for v in (dt.second, dt.minute, dt.hour, dt.day, dt.month, dt.year % 100))


def parse_time(data: bytes):
    from datetime import datetime
    ss, mm, hh, dd, mo, yy = (bcd_decode(bytes([b])) for b in data[:6])
    return datetime(2000 + yy, mo, dd, hh, mm, ss)


def broadcast_time_request(dt) -> bytes:
    return encode(BROADCAST, BROADCAST_TIME, time_bytes(dt))


def bcd_value(data: bytes, decimals: int) -> Decimal:
    return Decimal(bcd_decode(data)).scaleb(-decimals)


def bcd_from_value(value, nbytes: int, decimals: int) -> bytes:
    from decimal import Decimal
    scaled = (Decimal(value) * (10 ** decimals)).to_integral_value()
    return bcd_encode(int(scaled), nbytes)
