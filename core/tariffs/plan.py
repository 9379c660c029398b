"""Tariff plans as plain immutable values, and ``parse_plan()`` that builds them from the plan file.

Plan file (JSON), one of:

    {"kind": "flat",   "unit": "kWh", "price": "0.6"}
    {"kind": "tiered", "unit": "kWh", "cycle": "month", "tiers": [{"upto": "240", "price": "0.4883"}, ...]}
    {"kind": "tou",    "unit": "kWh", "prices": {...}, "day_tables": {...}, "calendar": [...],
     "default_table": "normal"}
    {"kind": "tiered_tou", ...the tou fields..., "cycle": "month",
     "tiers": [{"upto": "240", "surcharge": "0"}, {"upto": null, "surcharge": "0.05"}]}

(a ``tou`` plan that has ``tiers`` is read as ``tiered_tou``.)

Any plan may carry ``"monthly_charge": "20.00"`` (yuan per calendar month with usage). Every error
is a ValidationError whose message starts with the offending field path.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation

from core.errors import ValidationError

UNITS = ("kWh", "m3")
# How people write the units in a plan file; each means one of UNITS.
UNIT_SPELLINGS = {"kwh": "kWh", "m3": "m3", "m³": "m3"}
KINDS = ("flat", "tiered", "tou", "tiered_tou")
PERIODS = ("sharp", "peak", "flat", "valley", "deep_valley")
CYCLES = ("month", "year")
MAX_SEGMENTS = 14
MAX_PERIODS = 5
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")


@dataclass(frozen=True)
class Tier:
    """A block of cumulative usage within a cycle: up to ``upto`` (None: no limit) at ``price``.

    In a tiered_tou plan ``price`` is the surcharge added to the period price.
    """

    upto: Decimal | None
    price: Decimal


@dataclass(frozen=True)
class Segment:
    start_minute: int  # minutes after local midnight
    period: str


@dataclass(frozen=True)
class CalendarRule:
    """Picks ``table`` on days matching every criterion given (None: not a criterion)."""

    table: str
    months: frozenset[int] | None = None
    weekdays: frozenset[int] | None = None  # ISO: 1 = Monday ... 7 = Sunday
    dates: frozenset[date] | None = None
    month_days: frozenset[tuple[int, int]] | None = None  # "MM-DD" every year
    holiday: bool | None = None  # Chinese public holiday (chinese-calendar), in-lieu days included

    @property
    def rank(self) -> int:
        """More specific rules win: date > holiday > weekday > month."""
        if self.dates or self.month_days:
            return 0
        if self.holiday is not None:
            return 1
        if self.weekdays is not None:
            return 2
        return 3


@dataclass(frozen=True)
class Plan:
    """One version of a tariff. ``kind`` and ``unit`` are what the plan file says."""

    kind: str
    unit: str
    price: Decimal | None = None  # flat
    tiers: tuple[Tier, ...] = ()  # tiered, tiered_tou
    cycle: str = "month"
    cycle_start_day: int = 1  # day of month a cycle starts (month and year cycles)
    cycle_start_month: int = 1  # month a year cycle starts
    prices: tuple[tuple[str, Decimal], ...] = ()  # tou: (period, price)
    day_tables: tuple[tuple[str, tuple[Segment, ...]], ...] = ()
    calendar: tuple[CalendarRule, ...] = ()
    default_table: str | None = None
    monthly_charge: Decimal = Decimal(0)

    @property
    def is_tou(self) -> bool:
        return self.kind in ("tou", "tiered_tou")

    @property
    def is_tiered(self) -> bool:
        return self.kind in ("tiered", "tiered_tou")

    def period_price(self, period: str) -> Decimal:
        for name, price in self.prices:
            if name == period:
                return price
        raise KeyError(period)

    def table(self, name: str) -> tuple[Segment, ...]:
        for tname, segments in self.day_tables:
            if tname == name:
                return segments
        raise KeyError(name)


def _fail(field: str, message: str) -> None:
    raise ValidationError(f"{field}: {message}", field=field)


def _decimal(value, field: str, *, allow_negative: bool = False) -> Decimal:
    if value is None:
        _fail(field, "missing")
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        _fail(field, f"{value!r} is not a decimal")
    try:
        # A JSON number is read as the decimal it was written as (repr of a float is the shortest
        # text that gives it back), never through binary arithmetic.
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        _fail(field, f"{value!r} is not a decimal")
    if not d.is_finite():
        _fail(field, f"{value!r} is not a decimal")
    if d < 0 and not allow_negative:
        _fail(field, f"must not be negative (got {value})")
    return d


def _price(value, field: str) -> Decimal:
    d = _decimal(value, field)
    if int(d.normalize().as_tuple().exponent) < -4:
        _fail(field, f"{value!r} has more than 4 decimal places")
    return d


def _require(spec: dict, key: str, prefix: str = ""):
    if key not in spec or spec[key] is None:
        _fail(prefix + key, "missing")
    return spec[key]


def _int(value, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        _fail(field, f"must be a whole number from {lo} to {hi} (got {value!r})")
    return value


def parse_plan(spec: dict) -> Plan:
    """Validate a plan file's JSON and return the plan, or raise ValidationError naming the field."""
    if not isinstance(spec, dict):
        raise ValidationError("plan: must be a JSON object", field="plan")
    kind = spec.get("kind")
    if kind is None:
        _fail("kind", "missing")
    if kind not in KINDS:
        _fail("kind", f"unknown plan kind {kind!r} (one of {', '.join(KINDS)})")
    if kind == "tou" and spec.get("tiers") is not None:
        kind = "tiered_tou"  # a TOU plan with tiers: the tier surcharge goes on top of the period price
    unit = spec.get("unit")
    if unit is None:
        _fail("unit", "missing")
    unit = UNIT_SPELLINGS.get(unit.strip().lower()) if isinstance(unit, str) else None
    if unit not in UNITS:
        _fail("unit", f"must be one of kWh, m3 (or m³) (got {spec.get('unit')!r})")
    fields: dict = {"kind": kind, "unit": unit}
    if spec.get("monthly_charge") is not None:
        charge = _decimal(spec["monthly_charge"], "monthly_charge")
        if charge != charge.quantize(Decimal("0.01")):
            _fail("monthly_charge", f"{spec['monthly_charge']!r} has more than two decimal places")
        fields["monthly_charge"] = charge
    if kind == "flat":
        fields["price"] = _price(_require(spec, "price"), "price")
    if kind in ("tiered", "tiered_tou"):
        fields.update(_parse_tiers(spec, surcharge=kind == "tiered_tou"))
    if kind in ("tou", "tiered_tou"):
        fields.update(_parse_tou(spec))
    return Plan(**fields)


def _parse_tiers(spec: dict, *, surcharge: bool) -> dict:
    cycle = spec.get("cycle", "month")
    if cycle not in CYCLES:
        _fail("cycle", f"must be one of {', '.join(CYCLES)} (got {cycle!r})")
    out: dict = {"cycle": cycle}
    if spec.get("cycle_start_day") is not None:
        out["cycle_start_day"] = _int(spec["cycle_start_day"], "cycle_start_day", 1, 28)
    if spec.get("cycle_start_month") is not None:
        if cycle != "year":
            _fail("cycle_start_month", "only a year cycle has a start month")
        out["cycle_start_month"] = _int(spec["cycle_start_month"], "cycle_start_month", 1, 12)
    tiers = _require(spec, "tiers")
    if not isinstance(tiers, list) or not tiers:
        _fail("tiers", "must be a non-empty list")
    price_key = "surcharge" if surcharge else "price"
    parsed: list[Tier] = []
    previous = Decimal(0)
    for i, tier in enumerate(tiers):
        where = f"tiers[{i}]"
        if not isinstance(tier, dict):
            _fail(where, "must be an object with upto and " + price_key)
        if "upto" not in tier:
            _fail(f"{where}.upto", "missing (use null for the last tier)")
        upto = tier["upto"]
        last = i == len(tiers) - 1
        if upto is None:
            if not last:
                _fail(f"{where}.upto", "only the last tier may be unlimited (null)")
        else:
            upto = _decimal(upto, f"{where}.upto")
            if upto <= previous:
                _fail(f"{where}.upto", f"tiers must increase: {upto} is not above {previous}")
            previous = upto
        if last and upto is not None:
            _fail(f"{where}.upto", "the last tier must be unlimited (null)")
        value = tier.get(price_key)
        if value is None and surcharge and "price" in tier:
            value = tier["price"]
        parsed.append(Tier(upto, _price(value, f"{where}.{price_key}")))
    out["tiers"] = tuple(parsed)
    return out


def _parse_time(value, field: str) -> int:
    if not isinstance(value, str) or not _TIME.match(value.strip()):
        _fail(field, f"{value!r} is not a time HH:MM")
    hh, mm = value.strip().split(":")
    return int(hh) * 60 + int(mm)


def _parse_tou(spec: dict) -> dict:
    prices = _require(spec, "prices")
    if not isinstance(prices, dict) or not prices:
        _fail("prices", "must be an object of period: price")
    if len(prices) > MAX_PERIODS:
        _fail("prices", f"at most {MAX_PERIODS} periods")
    parsed_prices = []
    for name in prices:
        if name not in PERIODS:
            _fail(f"prices.{name}", f"unknown period {name!r} (one of {', '.join(PERIODS)})")
    for name in PERIODS:
        if name in prices:
            parsed_prices.append((name, _price(prices[name], f"prices.{name}")))
    tables = _require(spec, "day_tables")
    if not isinstance(tables, dict) or not tables:
        _fail("day_tables", "must be an object of table name: segments")
    parsed_tables = []
    for tname, segments in tables.items():
        where = f"day_tables.{tname}"
        if not isinstance(segments, list) or not segments:
            _fail(where, "must be a non-empty list of [start, period]")
        if len(segments) > MAX_SEGMENTS:
            _fail(where, f"has {len(segments)} segments; at most {MAX_SEGMENTS}")
        parsed_segments: list[Segment] = []
        for i, seg in enumerate(segments):
            if not isinstance(seg, (list, tuple)) or len(seg) != 2:
                _fail(f"{where}[{i}]", "must be [start, period]")
            start = _parse_time(seg[0], f"{where}[{i}]")
            period = seg[1]
            if period not in PERIODS:
                _fail(f"{where}[{i}]", f"unknown period {period!r} (one of {', '.join(PERIODS)})")
            if period not in prices:
                _fail(f"{where}[{i}]", f"period {period!r} has no price in prices")
            if parsed_segments and start <= parsed_segments[-1].start_minute:
                word = "overlaps" if start == parsed_segments[-1].start_minute else "is not after"
                _fail(f"{where}[{i}]", f"start {seg[0]} {word} the previous start (starts must increase)")
            parsed_segments.append(Segment(start, period))
        parsed_tables.append((tname, tuple(parsed_segments)))
    names = {t for t, _ in parsed_tables}
    default = spec.get("default_table")
    if default is None:
        if len(parsed_tables) != 1:
            _fail("default_table", "missing (needed when there is more than one day table)")
        default = parsed_tables[0][0]
    elif default not in names:
        _fail("default_table", f"no day table named {default!r}")
    rules = spec.get("calendar") or []
    if not isinstance(rules, list):
        _fail("calendar", "must be a list of rules")
    parsed_rules = [_parse_rule(rule, f"calendar[{i}]", names) for i, rule in enumerate(rules)]
    return {"prices": tuple(parsed_prices), "day_tables": tuple(parsed_tables),
            "calendar": tuple(parsed_rules), "default_table": default}


def _parse_rule(rule, where: str, names: set[str]) -> CalendarRule:
    if not isinstance(rule, dict):
        _fail(where, "must be an object")
    known = {"table", "months", "weekdays", "dates", "holiday"}
    for key in rule:
        if key not in known:
            _fail(f"{where}.{key}", f"unknown calendar criterion (one of {', '.join(sorted(known - {'table'}))})")
    table = rule.get("table")
    if table is None:
        _fail(f"{where}.table", "missing")
    if table not in names:
        _fail(f"{where}.table", f"no day table named {table!r}")
    kw: dict = {"table": table}
    if rule.get("months") is not None:
        kw["months"] = frozenset(_int_list(rule["months"], f"{where}.months", 1, 12))
    if rule.get("weekdays") is not None:
        kw["weekdays"] = frozenset(_int_list(rule["weekdays"], f"{where}.weekdays", 1, 7))
    if rule.get("dates") is not None:
        dates, month_days = set(), set()
        if not isinstance(rule["dates"], list) or not rule["dates"]:
            _fail(f"{where}.dates", "must be a non-empty list of YYYY-MM-DD or MM-DD")
        for j, text in enumerate(rule["dates"]):
            field = f"{where}.dates[{j}]"
            if not isinstance(text, str):
                _fail(field, f"{text!r} is not a date")
            m = _MONTH_DAY.match(text)
            try:
                if m:
                    date(2000, int(m.group(1)), int(m.group(2)))
                    month_days.add((int(m.group(1)), int(m.group(2))))
                else:
                    dates.add(date.fromisoformat(text))
            except ValueError:
                _fail(field, f"{text!r} is not a date YYYY-MM-DD or MM-DD")
        kw["dates"] = frozenset(dates)
        kw["month_days"] = frozenset(month_days)
    if rule.get("holiday") is not None:
        if not isinstance(rule["holiday"], bool):
            _fail(f"{where}.holiday", "must be true or false")
        kw["holiday"] = rule["holiday"]
    if len(kw) == 1:
        _fail(where, "a calendar rule needs months, weekdays, dates or holiday")
    return CalendarRule(**kw)


def _int_list(value, field: str, lo: int, hi: int) -> list[int]:
    if not isinstance(value, list) or not value:
        _fail(field, f"must be a non-empty list of whole numbers {lo}-{hi}")
    return [_int(v, field, lo, hi) for v in value]
