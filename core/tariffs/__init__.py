"""The tariff engine (pure: no database). Flat, time-of-use, tiered and tiered+TOU plans.

- ``parse_plan(spec)``: validate a plan file's JSON into a ``Plan`` (``.kind``, ``.unit``).
- ``Pricer(versions, tz).price(intervals, state)``: priced lines, exact amount, carried state.
- ``parse_usage`` / ``intervals``: readings as meters give them, and the usage between them.
- ``quote(plan_spec, usage_spec)``: the JSON ``meterpay tariff quote`` prints.
"""
from core.tariffs.engine import Interval, Line, Priced, Pricer, State, Version, allocate
from core.tariffs.plan import KINDS, PERIODS, UNITS, Plan, parse_plan
from core.tariffs.quote import quote
from core.tariffs.usage import RegisterReading, intervals, parse_usage

# Kept for code written against the placeholder engine.
FlatPlan = Plan

__all__ = ["parse_plan", "Plan", "FlatPlan", "KINDS", "PERIODS", "UNITS", "Pricer", "Version", "Interval",
           "State", "Line", "Priced", "allocate", "quote", "parse_usage", "intervals", "RegisterReading"]
