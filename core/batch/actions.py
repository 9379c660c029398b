"""What each batch action needs: its params (checked when the task is created), whether it asks
for a confirmation step, and what an item of it becomes (a meter command, an entry, a setting)."""
from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.orm import Session

from core.errors import ValidationError
from core.ledger.money import format_fen, parse_yuan
from core.models.batch import BATCH_ACTIONS

# Money and supply actions ask for a confirmation step, as the room actions do.
CONFIRMED_ACTIONS = ("relay_off", "relay_on", "keep_power_on", "keep_power_off", "recharge", "charge")
# one item per active meter of a room (the others: one per open account of a room)
METER_ACTIONS = ("relay_off", "relay_on", "set_meter_prices", "sync_clock")
# electricity meters only (a water meter has no prices or clock to set)
ELECTRIC_ACTIONS = ("set_meter_prices", "sync_clock")
MONEY_ACTIONS = ("recharge", "charge")
PERIODS = ("sharp", "peak", "flat", "valley")
LABELS = {"set_tariff": "更改价格方案", "set_meter_prices": "下发电价", "relay_off": "拉闸", "relay_on": "合闸",
          "keep_power_on": "保电", "keep_power_off": "取消保电", "set_alarms": "设置告警金额", "sync_clock": "校时",
          "recharge": "充值", "charge": "扣费"}


def needs_confirmation(action: str) -> bool:
    return action in CONFIRMED_ACTIONS


def check_action(action: str) -> str:
    if action not in BATCH_ACTIONS:
        raise ValidationError(f"unknown action {action!r}; one of {', '.join(BATCH_ACTIONS)}", field="action")
    return action


def _yuan(value: Any, field: str, *, zero_ok: bool = False) -> int:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValidationError(f"{field}: give yuan as a string like \"20.00\"", field=field)
    fen = parse_yuan(str(value), field=field, allow_zero=zero_ok)
    if fen < 0 or (fen == 0 and not zero_ok):
        raise ValidationError(f"{field}: must be {'zero or ' if zero_ok else ''}positive", field=field)
    return fen


def _price(value: Any, field: str) -> str:
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(f"{field}: not a price ({value!r})", field=field) from None
    if not price.is_finite() or price < 0 or price >= 10000 or price != price.quantize(Decimal("0.0001")):
        raise ValidationError(f"{field}: 0 to 9999.9999 yuan, at most 4 places", field=field)
    return f"{price:.4f}"


def clean_params(session: Session, site_id: int, action: str, params: dict | None, *,
                 amounts_from_file: bool = False) -> dict:
    """The task's params as stored: amounts in fen, prices as 4-place strings, plans checked.
    Raises ValidationError naming the field."""
    from core.tariffs.store import check_unit, find_plan
    p = dict(params or {})
    if action == "recharge":
        if "amount" not in p and amounts_from_file:
            return {}
        return {"amount_fen": _yuan(p.get("amount"), "amount")}
    if action == "charge":
        code, name = str(p.get("code") or "").strip(), str(p.get("name") or "").strip()
        if not code or ":" in code or len(code) > 40:
            raise ValidationError("charge needs params.code (1-40 characters, no ':')", field="code")
        return {"code": code, "name": name or code, "amount_fen": _yuan(p.get("amount"), "amount")}
    if action == "set_meter_prices":
        prices = p.get("prices")
        if not isinstance(prices, dict) or not prices or set(prices) - set(PERIODS):
            raise ValidationError("set_meter_prices needs params.prices with sharp/peak/flat/valley", field="prices")
        return {"prices": {k: _price(prices[k], f"prices.{k}") for k in PERIODS if k in prices}}
    if action == "set_alarms":
        levels = [(k, p[k]) for k in ("alarm1", "alarm2", "alarm3") if k in p]
        if not levels or levels[0][0] != "alarm1":
            raise ValidationError("set_alarms needs params.alarm1 (and alarm2, alarm3)", field="alarm1")
        fen = {k: _yuan(v, k, zero_ok=True) for k, v in levels}
        amounts = list(fen.values())
        if amounts != sorted(amounts, reverse=True) or len(set(amounts)) != len(amounts):
            raise ValidationError("alarm amounts must go down from alarm1 to alarm3", field="alarm1")
        return {f"{k}_fen": v for k, v in fen.items()}
    if action == "set_tariff":
        out: dict[str, Any] = {}
        for utility in ("electricity", "water"):
            plan_name = p.get(utility)
            if plan_name:
                check_unit(find_plan(session, str(plan_name), site_id), utility, name=str(plan_name))
                out[utility] = str(plan_name)
        if not out:
            raise ValidationError("set_tariff needs params.electricity and/or params.water (plan names)",
                                  field="electricity")
        if p.get("from"):
            try:
                out["from"] = date.fromisoformat(str(p["from"])).isoformat()
            except ValueError:
                raise ValidationError("from: YYYY-MM-DD", field="from") from None
        return out
    if p:
        raise ValidationError(f"{action} takes no params", field="params")
    return {}


def describe(action: str, params: dict) -> str:
    """One line for lists, confirmations and the audit log."""
    label = LABELS.get(action, action)
    if "amount_fen" in params:
        return f"{label} {format_fen(int(params['amount_fen']))} 元"
    if action == "set_meter_prices":
        return label + " " + " ".join(f"{k}={v}" for k, v in params.get("prices", {}).items())
    if action == "set_tariff":
        return label + " " + " ".join(f"{k}={params[k]}" for k in ("electricity", "water", "from") if k in params)
    if action == "set_alarms":
        return label + " " + " / ".join(format_fen(int(params[k])) for k in ("alarm1_fen", "alarm2_fen", "alarm3_fen")
                                        if k in params)
    return label
