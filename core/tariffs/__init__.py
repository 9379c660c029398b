"""The tariff engine (pure). ``parse_plan(spec)`` validates a plan file's JSON.

Placeholder until the tariff issue lands: flat plans only.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from core.errors import ValidationError

UNITS = ("kWh", "m3")


@dataclass(frozen=True)
class FlatPlan:
    kind: str
    unit: str
    price: Decimal


def parse_plan(spec: dict) -> FlatPlan:
    if not isinstance(spec, dict):
        raise ValidationError("plan: must be a JSON object", field="plan")
    kind = spec.get("kind")
    if kind != "flat":
        raise ValidationError(f"kind: unknown plan kind {kind!r}", field="kind")
    unit = spec.get("unit")
    if unit not in UNITS:
        raise ValidationError(f"unit: must be one of {', '.join(UNITS)} (got {unit!r})", field="unit")
    try:
        price = Decimal(str(spec["price"]))
    except KeyError:
        raise ValidationError("price: missing", field="price") from None
    except InvalidOperation:
        raise ValidationError(f"price: {spec['price']!r} is not a decimal", field="price") from None
    if price < 0:
        raise ValidationError(f"price: must not be negative (got {price})", field="price")
    return FlatPlan(kind, unit, price)
