"""Money is integer fen. These are the only places where text or Decimal becomes fen and back.

Rounding happens once, where an exact Decimal amount becomes fen: ROUND_HALF_UP.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from core.errors import ValidationError

FEN_PER_YUAN = 100


def to_fen(yuan: Decimal) -> int:
    """Exact yuan (any precision) to fen, rounded once, half up."""
    if not isinstance(yuan, Decimal):
        raise TypeError("to_fen takes a Decimal, never a float")
    return int((yuan * FEN_PER_YUAN).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def decimal_of(text: str | int | Decimal, *, field: str = "amount") -> Decimal:
    """A yuan figure as a person typed it, as an exact, finite Decimal. Floats (inexact), text that is
    not a number, NaN and infinities are refused with a ValidationError naming ``field``."""
    if isinstance(text, (bool, float)):
        raise ValidationError(f"{field}: give the amount as a decimal string, not a float", field=field)
    try:
        value = Decimal(str(text).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError(f"{field}: {text!r} is not an amount in yuan", field=field) from None
    if not value.is_finite():
        raise ValidationError(f"{field}: {text!r} is not an amount in yuan", field=field)
    return value


def parse_yuan(text: str | int | Decimal, *, field: str = "amount", allow_zero: bool = False,
               allow_negative: bool = False) -> int:
    """Parse a yuan amount as a user types it ("50", "50.5", "50.00") into fen.

    More than two decimal places, floats, NaN and infinities are refused with a ValidationError
    naming ``field``.
    """
    value = decimal_of(text, field=field)
    if value.adjusted() > 15:
        raise ValidationError(f"{field}: {text!r} is not an amount in yuan", field=field)
    if value != value.quantize(Decimal("0.01")):
        raise ValidationError(f"{field}: {text!r} has more than two decimal places", field=field)
    fen = int(value * FEN_PER_YUAN)
    if fen < 0 and not allow_negative:
        raise ValidationError(f"{field}: must not be negative (got {text})", field=field)
    if fen == 0 and not allow_zero:
        raise ValidationError(f"{field}: must not be zero", field=field)
    return fen


def format_fen(fen: int) -> str:
    """12345 -> "123.45"; -5 -> "-0.05"."""
    sign = "-" if fen < 0 else ""
    fen = abs(int(fen))
    return f"{sign}{fen // FEN_PER_YUAN}.{fen % FEN_PER_YUAN:02d}"
