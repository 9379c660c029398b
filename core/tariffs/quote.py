"""A tariff preview: price a usage file against a plan file, as ``meterpay tariff quote`` prints it."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from core.ledger.money import format_fen, to_fen
from core.tariffs.engine import Line, Priced, Pricer
from core.tariffs.plan import Plan, parse_plan
from core.tariffs.usage import intervals, parse_usage

PLACES = {"kWh": Decimal("0.01"), "m3": Decimal("0.001")}
CENT = Decimal("0.01")
UNIT_TEXT = {"kWh": "kWh", "m3": "m³"}
PERIOD_TEXT = {"sharp": "尖", "peak": "峰", "flat": "平", "valley": "谷", "deep_valley": "深谷"}


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


def price_text(plan: Plan) -> str:
    """A plan's prices in one line, as tenants and managers read them: ``1.0 元/kWh``,
    ``阶梯 0.4883/0.5383/0.7883 元/kWh``, ``峰 1.02 平 0.6 谷 0.228 元/kWh``, ``5.0 元/m³``."""
    unit = f"元/{UNIT_TEXT.get(plan.unit, plan.unit)}"
    if plan.kind == "flat":
        text = f"{plan.price} {unit}"
    elif plan.kind == "tiered":
        text = "阶梯 " + "/".join(str(t.price) for t in plan.tiers) + f" {unit}"
    else:
        text = " ".join(f"{PERIOD_TEXT.get(p, p)} {price}" for p, price in plan.prices) + f" {unit}"
        if plan.kind == "tiered_tou":
            text += "，阶梯加价 " + "/".join(str(t.price) for t in plan.tiers)
    if plan.monthly_charge:
        text += f"，月费 {plan.monthly_charge} 元"
    return text
