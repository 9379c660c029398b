"""Decoded meter values: the one shape every profile returns and ``meter read --json`` prints."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from decimal import Decimal

from core.ledger.money import to_fen

PERIODS = ("sharp", "peak", "flat", "valley")
# The JSON keys of ``meterpay meter read`` (and Meter.live), in print order.
JSON_KEYS = ("total_kwh", "periods", "voltage_v", "current_a", "power_kw", "power_factor", "relay",
             "remaining_amount", "purchase_count", "water_m3", "valve")


@dataclass(frozen=True)
class MeterValues:
    """What one read of a meter found. ``None`` means the profile does not have it.

    total_kwh / periods: cumulative kWh (0.01); water_m3: cumulative m3; voltage_v, current_a,
    power_kw, power_factor: live values; relay: "on"/"off"; valve: "open"/"closed"/"abnormal";
    remaining_amount: the meter-side balance in yuan (Decimal, 2 places); purchase_count: the
    meter-side prepaid purchase counter. ``extra`` holds values only commands check (prices,
    alarm amounts, keep-power, clock).
    """

    total_kwh: Decimal | None = None
    periods: dict[str, Decimal] | None = None
    voltage_v: Decimal | None = None
    current_a: Decimal | None = None
    power_kw: Decimal | None = None
    power_factor: Decimal | None = None
    relay: str | None = None
    remaining_amount: Decimal | None = None
    purchase_count: int | None = None
    water_m3: Decimal | None = None
    valve: str | None = None
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def total(self) -> Decimal | None:
        """The cumulative register billing uses: kWh for electricity, m3 for water."""
        return self.total_kwh if self.total_kwh is not None else self.water_m3

    @property
    def remaining_fen(self) -> int | None:
        if self.remaining_amount is None:
            return None
        return to_fen(self.remaining_amount)

    def to_json(self) -> dict:
        """Keys the profile has, numbers as decimal strings, periods as a dict of strings."""
        out: dict = {}
        for f in fields(self):
            if f.name == "extra" or f.name not in JSON_KEYS:
                continue
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, Decimal):
                value = str(value)
            elif isinstance(value, dict):
                value = {k: str(v) for k, v in value.items()}
            out[f.name] = value
        return {k: out[k] for k in JSON_KEYS if k in out}
