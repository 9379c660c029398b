"""Usage as meters give it: cumulative register readings, and the intervals between them."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from core.errors import ValidationError
from core.tariffs.engine import Interval
from core.tariffs.plan import PERIODS

MAX_PLACES = 3  # kWh registers to 0.01, water to 0.001
MAX_REGISTER = Decimal(10) ** 12  # readings are stored as NUMERIC(16, 3)


@dataclass(frozen=True)
class RegisterReading:
    at: datetime  # timezone-aware
    total: Decimal
    periods: Mapping[str, Decimal] | None = None


def parse_quantity(value, field: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise ValidationError(f"{field}: {value!r} is not a register value", field=field)
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValidationError(f"{field}: {value!r} is not a decimal", field=field) from None
    if not d.is_finite():
        raise ValidationError(f"{field}: {value!r} is not a decimal", field=field)
    if d < 0:
        raise ValidationError(f"{field}: must not be negative (got {value})", field=field)
    if d >= MAX_REGISTER:
        raise ValidationError(f"{field}: {value} is too large for a register (below 10^12)", field=field)
    if int(d.as_tuple().exponent) < -MAX_PLACES and d != d.quantize(Decimal(1).scaleb(-MAX_PLACES)):
        raise ValidationError(f"{field}: {value!r} has more than {MAX_PLACES} decimal places", field=field)
    return d


def parse_time(value, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValidationError(f"{field}: {value!r} is not an ISO 8601 time", field=field)
    try:
        at = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(f"{field}: {value!r} is not an ISO 8601 time", field=field) from None
    if at.tzinfo is None:
        raise ValidationError(f"{field}: {value!r} needs a UTC offset, e.g. +08:00", field=field)
    return at


def parse_periods(value, field: str) -> dict[str, Decimal] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValidationError(f"{field}: must be an object of period: register value", field=field)
    out = {}
    for name, v in value.items():
        if name not in PERIODS:
            raise ValidationError(f"{field}.{name}: unknown period {name!r} (one of {', '.join(PERIODS)})",
                                  field=f"{field}.{name}")
        out[name] = parse_quantity(v, f"{field}.{name}")
    return out or None


def parse_usage(spec) -> list[RegisterReading]:
    """``{"readings": [{"at": ..., "total": ..., "periods": {...}}, ...]}`` -> readings in time order.

    The same time twice with the same values counts once; a total below an earlier one is refused.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("readings"), list):
        raise ValidationError("readings: usage must be an object with a list of readings", field="readings")
    readings: list[tuple[RegisterReading, int]] = []
    for i, r in enumerate(spec["readings"]):
        where = f"readings[{i}]"
        if not isinstance(r, dict):
            raise ValidationError(f"{where}: must be an object with at and total", field=where)
        for key in ("at", "total"):
            if key not in r:
                raise ValidationError(f"{where}.{key}: missing", field=f"{where}.{key}")
        readings.append((RegisterReading(parse_time(r["at"], f"{where}.at"),
                                         parse_quantity(r["total"], f"{where}.total"),
                                         parse_periods(r.get("periods"), f"{where}.periods")), i))
    readings.sort(key=lambda ri: ri[0].at)
    out: list[RegisterReading] = []
    for reading, i in readings:
        if out and reading.at == out[-1].at:
            if reading.total != out[-1].total:
                raise ValidationError(f"readings[{i}].total: two readings at {reading.at.isoformat()} disagree",
                                      field=f"readings[{i}].total")
            continue
        if out and reading.total < out[-1].total:
            raise ValidationError(
                f"readings[{i}].total: {reading.total} is below the earlier reading {out[-1].total}",
                field=f"readings[{i}].total")
        out.append(reading)
    return out


def period_deltas(a: RegisterReading, b: RegisterReading, multiplier: int = 1) -> dict[str, Decimal] | None:
    """Per-period usage between two readings, when both carry the same registers and none went back."""
    if not a.periods or not b.periods or set(a.periods) != set(b.periods):
        return None
    deltas = {p: (b.periods[p] - a.periods[p]) * multiplier for p in a.periods}
    if any(v < 0 for v in deltas.values()):
        return None
    return deltas


def intervals(readings: Sequence[RegisterReading], multiplier: int = 1) -> list[Interval]:
    """The intervals between consecutive readings (already in time order, not decreasing)."""
    return [Interval(a.at, b.at, (b.total - a.total) * multiplier, period_deltas(a, b, multiplier))
            for a, b in zip(readings, readings[1:])]
