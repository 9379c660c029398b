"""A tariff preview: price a usage file against a plan file, as ``meterpay tariff quote`` prints it."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from core.ledger.money import format_fen, to_fen
from core.tariffs.engine import Line, Priced, Pricer
from core.tariffs.plan import parse_plan
from core.tariffs.usage import intervals, parse_usage

PLACES = {"kWh": Decimal("0.01"), "m3": Decimal("0.001")}
CENT = Decimal("0.01")


def line_json(line: Line, unit: str) -> dict:
    out: dict = {}
    if line.charge is not None:
        out["charge"] = line.charge
    if line.tier is not None:
        out["tier"] = line.tier
    if line.period is not None:
        out["period"] = line.period
    if not out:
        out["period"] = "flat"
    places = Decimal(1) if line.charge else PLACES[unit]
    out["quantity"] = str(line.quantity.quantize(places, rounding=ROUND_HALF_UP))
    out["price"] = str(line.price)
    out["amount"] = str(line.amount.quantize(CENT, rounding=ROUND_HALF_UP))
    return out


def priced_json(priced: Priced, unit: str) -> dict:
    return {"total": format_fen(to_fen(priced.amount)), "currency": "CNY",
            "lines": [line_json(ln, unit) for ln in priced.lines]}


def quote(plan_spec: dict, usage_spec: dict, *, tz="Asia/Shanghai", ct_ratio: int = 1) -> dict:
    """``{"total": "282.15", "currency": "CNY", "lines": [...]}``; total is the exact sum rounded once."""
    plan = parse_plan(plan_spec)
    readings = parse_usage(usage_spec)
    priced = Pricer(plan, tz).price(intervals(readings, ct_ratio))
    return priced_json(priced, plan.unit)
