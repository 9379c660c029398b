"""Frame codecs for the protocols that pymodbus does not speak: DL/T 645-2007 and CJ/T 188.

Why our own and not PyPI ``dlt645`` (3.2.0, evaluated): it has no remote control (1CH) and no
prepaid recharge (03H), its client owns the serial/TCP connection (so it cannot share our
per-gateway bus lock and timeouts), and it pulls in loguru with a global logger. A complete
codec for what meterpay sends is ~150 lines, pure and tested against DESIGN.md's vectors.
"""
from __future__ import annotations

from functools import lru_cache


class FrameError(ValueError):
    """A frame that cannot be trusted: bad checksum, bad length, bad markers."""


def bcd_encode(value: int, nbytes: int) -> bytes:
    """Unsigned integer to packed BCD, least significant byte first (DL/T 645 and CJ/T 188 order)."""
    if value < 0:
        raise ValueError("BCD cannot hold a negative number")
    digits = f"{value:0{nbytes * 2}d}"
    if len(digits) > nbytes * 2:
        raise ValueError(f"{value} does not fit in {nbytes} BCD bytes")
    return bytes.fromhex(digits)[::-1]  # each pair of decimal digits read as hex is its BCD byte


def bcd_decode(data: bytes) -> int:
    """Packed BCD, least significant byte first, to an integer; raises FrameError on a non-BCD nibble."""
    text = data[::-1].hex()
    if not text.isdigit():
        raise FrameError(f"not BCD: {data.hex()}")
    return int(text) if text else 0


@lru_cache(maxsize=65536)
def address_bytes(address: str, nbytes: int) -> bytes:
    """A meter address of 2*nbytes decimal digits (shorter ones are zero-padded) to wire order
    (remembered: a bus asks the same few addresses over and over)."""
    address = address.strip()
    if not address.isdigit() or len(address) > nbytes * 2:
        raise ValueError(f"address must be up to {nbytes * 2} digits, got {address!r}")
    return bcd_encode(int(address), nbytes)


def address_text(raw: bytes) -> str:
    return raw[::-1].hex().upper()
