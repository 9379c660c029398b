"""The demo site: two buildings, five floors, ten rooms a floor, electricity and water meters,
tenants with balances, and a manager. Its gateways point at the local simulator
(``meterpay simulate --from-db``) on ports from METERPAY_SIM_PORT_BASE (default 17100).

With ``history_days`` (``meterpay demo seed`` asks for 30) every meter also gets that many days of
readings, four a day (00:00, 06:00, 12:00, 18:00 site time, the last one before now), from a
plausible daily load (a shop's: quiet at night, busy 10-12 and 14-19; electricity 3-20 kWh a day
split over sharp/peak/flat/valley, water 0.1-0.6 m³), billed through the normal billing path so
the room page's chart, the billed usage and the ledger agree. Prepaid-platform tenants open with
their balance plus what that history costs (rounded up to the yuan), so today's balances stay
what they were without history and nobody is cut or alarmed by the backfill.

Tenant phones are deterministic: room A101 is 13800130101 (``1380013`` + building index,
floor, room), so its last four digits are ``0101``.
"""
from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import clock, config
from core.ledger import cashdesk
from core.models import Building, Floor, Gateway, Manager, Meter, Room, Site
from core.sites.accounts import MeterSpec, OpenAccountRequest, open_account
from core.sites.managers import create_manager
from core.tariffs.calendar import guangdong_commercial_period
from core.tariffs.store import add_plan

DEMO_SITE = "演示广场"
DEMO_MANAGER = ("admin", "meterpay-demo")
BUILDINGS = ("A", "B")
FLOORS = 5
ROOMS_PER_FLOOR = 10
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
SHOPS = ("便利店", "奶茶店", "书店", "花店", "理发店", "面馆", "药店", "咖啡馆", "文具店", "水果店")
ELECTRICITY_PLAN = ("商业电价", {"kind": "flat", "unit": "kWh", "price": "1.0"})
WATER_PLAN = ("商业水价", {"kind": "flat", "unit": "m3", "price": "5.0"})


# A small shop's day: each hour's share of its peak draw (the simulator plays meters the same way).
HOURLY_LOAD = (0.15, 0.12, 0.1, 0.1, 0.1, 0.12, 0.2, 0.35, 0.55, 0.75, 0.9, 0.95,
               0.8, 0.75, 0.9, 0.95, 0.95, 0.9, 0.85, 0.7, 0.55, 0.4, 0.3, 0.2)
READING_HOURS = (0, 6, 12, 18)
REGISTERS = ("sharp", "peak", "flat", "valley")
REGISTER_SPLIT = (0.05, 0.33, 0.37, 0.25)  # how a meter's starting total is spread over its registers


@dataclass(frozen=True)
class DemoResult:
    created: bool
    site_id: int
    rooms: int
    accounts: int
    manager: tuple[str, str]
    readings: int = 0  # history readings stored and billed


class HistoryReading(NamedTuple):
    """One backfilled reading, in the shape billing's ``ingest_batch`` takes (its ``RawReading``)."""

    meter_id: int
    taken_at: datetime
    total: Decimal
    periods: dict[str, Decimal] | None = None
    source: str = "import"


# billing's ingest_batch(session, rows, *, actor, front, detail) -> its BatchResult (``accounts``,
# ``counts``); passed in because core.sites sits below core.billing in core's layering.
Bill = Callable[..., Any]


@dataclass
class _Built:
    site: Site
    rooms: int = 0
    accounts: int = 0
    room_of_account: dict[int, str] = field(default_factory=dict)
    meters: list[tuple[int, str, str]] = field(default_factory=list)  # (id, serial, kind)


def port_base() -> int:
    return config.get("METERPAY_SIM_PORT_BASE")


def seed(session: Session, *, if_empty: bool = False, history_days: int = 0, bill: Bill | None = None) -> DemoResult:
    """Create the demo site in the caller's transaction (Conflict if it exists, unless ``if_empty``).

    ``history_days`` > 0 needs ``bill`` (``core.billing.ingest_batch``): the history is priced and
    posted by billing itself, a day at a time. To open each prepaid-platform account with its
    balance plus what its history costs, the site is first built and its history billed in one batch
    inside a savepoint that is rolled back (a dry run: whatever plan billing gives each meter, the
    estimate is billing's own), then built again.
    """
    if history_days < 0:
        from core.errors import ValidationError
        raise ValidationError("history_days: must be 0 or more", field="history_days")
    if history_days and bill is None:
        raise ValueError("seed: history_days needs bill=core.billing.ingest_batch")
    existing = session.scalar(select(Site).where(Site.name == DEMO_SITE))
    if existing is not None:
        if not if_empty:
            from core.errors import Conflict
            raise Conflict(f"the demo site {DEMO_SITE!r} exists already")
        existing_rooms = session.scalars(select(Room).where(Room.site_id == existing.id)).all()
        return DemoResult(False, existing.id, len(existing_rooms), 0, DEMO_MANAGER)

    now = clock.now()
    extra: dict[str, int] = {}
    if history_days:
        dry = session.begin_nested()
        try:
            built = _build(session, {})
            result = _bill_history(session, bill, built, now, history_days, daily=False)
            extra = {built.room_of_account[a]: -delta for a, delta in result.accounts.items()
                     if delta < 0 and a in built.room_of_account}
        finally:
            dry.rollback()
    built = _build(session, {room: math.ceil(fen / 100) * 100 for room, fen in extra.items()})
    readings = 0
    if history_days:
        readings = _bill_history(session, bill, built, now, history_days).readings
    if session.scalar(select(Manager).where(Manager.username == DEMO_MANAGER[0])) is None:
        create_manager(session, DEMO_MANAGER[0], DEMO_MANAGER[1], all_sites=True, role="admin",
                       display_name="演示管理员")
    session.flush()
    return DemoResult(True, built.site.id, built.rooms, built.accounts, DEMO_MANAGER, readings)


@dataclass
class _Billed:
    accounts: dict[int, int] = field(default_factory=dict)  # account id -> what the history did to its wallet
    readings: int = 0


def _bill_history(session: Session, bill: Bill | None, built: _Built, now: datetime, days: int, *,
                  daily: bool = True) -> _Billed:
    """Bill the history a day at a time, as the poller would have: one consumption entry per meter
    and day, so the ledger reads like days of use rather than one lump (``daily=False``: one batch,
    the dry run's estimate)."""
    assert bill is not None
    tz = ZoneInfo(built.site.timezone or "Asia/Shanghai")
    by_day: dict[date, list[HistoryReading]] = {}
    for meter in built.meters:
        for r in history(meter, tz, now, days):
            by_day.setdefault(r.taken_at.date() if daily else now.date(), []).append(r)
    out = _Billed()
    for day in sorted(by_day):
        result = bill(session, by_day[day], actor="demo", front="cli", detail=False)
        out.readings += sum(result.counts.values())
        for account_id, delta in result.accounts.items():
            out.accounts[account_id] = out.accounts.get(account_id, 0) + delta
    return out


def history(meter: tuple[int, str, str], tz: ZoneInfo, now: datetime, days: int) -> Iterator[HistoryReading]:
    """``days`` days of readings of one meter (id, serial, kind) before ``now``, four a day.

    Deterministic per serial. Electricity: a starting total of 800-6000 kWh, 3-20 kWh a day shaped
    by HOURLY_LOAD, each hour booked into its TOU register (Guangdong: peak 10-12 and 14-19, valley
    0-8, sharp 11-12 and 15-17 in July-September, flat otherwise); the total is the registers' sum.
    Water: 10-400 m³ to start, 0.1-0.6 m³ a day. Registers to 0.01, as the demo's meters report them.
    """
    meter_id, serial, kind = meter
    rng = random.Random(f"demo-history:{serial}")
    water = kind == "water"
    daily = rng.uniform(0.1, 0.6) if water else rng.uniform(3, 20)
    start = rng.uniform(10, 400) if water else rng.uniform(800, 6000)
    registers = {"total": start} if water else {p: start * s for p, s in zip(REGISTERS, REGISTER_SPLIT)}
    step = Decimal("0.01")  # what the demo's meters resolve (CJ/T 188 water meters too), so a poll continues it
    first_day = now.astimezone(tz).date() - timedelta(days=days)
    day_share = sum(HOURLY_LOAD)
    day: date = first_day
    while True:
        factor = rng.uniform(0.7, 1.3) * (0.8 if day.weekday() >= 5 else 1.0)
        for slot in READING_HOURS:
            at = datetime.combine(day, time(slot), tzinfo=tz)
            if at >= now:
                return
            values = {k: Decimal(repr(v)).quantize(step, rounding=ROUND_DOWN) for k, v in registers.items()}
            if water:
                yield HistoryReading(meter_id, at, values["total"])
            else:
                yield HistoryReading(meter_id, at, sum(values.values(), Decimal(0)), values)
            for hour in range(slot, slot + 24 // len(READING_HOURS)):
                used = daily * factor * HOURLY_LOAD[hour] / day_share * rng.uniform(0.9, 1.1)
                registers["total" if water else guangdong_commercial_period(hour, day.month)] += used
        day += timedelta(days=1)




def _build(session: Session, extra_fen: dict[str, int]) -> _Built:
    """The site, its rooms, meters and accounts; ``extra_fen``: room number -> added to the opening
    balance of a prepaid-platform account (what its history costs)."""
    rng = random.Random(20261127)
    site = Site(name=DEMO_SITE, timezone="Asia/Shanghai",
                settings={"poll_interval_minutes": 1, "emergency_credit_fen": 0})
    session.add(site)
    session.flush()
    built = _Built(site)
    add_plan(session, ELECTRICITY_PLAN[0], ELECTRICITY_PLAN[1], site_id=site.id)
    add_plan(session, WATER_PLAN[0], WATER_PLAN[1], site_id=site.id)
    base = port_base()
    water_gateways = {}
    for b_idx, b_name in enumerate(BUILDINGS):
        water_gateways[b_name] = Gateway(site_id=site.id, name=f"{b_name}栋水表总线",
                                         url=f"tcp://127.0.0.1:{base + 10 + b_idx}", protocol="cjt188")
        session.add(water_gateways[b_name])
    for b_idx, b_name in enumerate(BUILDINGS):
        building = Building(site_id=site.id, name=b_name)
        session.add(building)
        session.flush()
        for f in range(1, FLOORS + 1):
            floor = Floor(building_id=building.id, name=f"{f}F")
            session.add(floor)
            protocol = "modbus-rtu" if b_name == "A" else "dlt645"
            gw = Gateway(site_id=site.id, name=f"{b_name}栋{f}F电表总线",
                         url=f"tcp://127.0.0.1:{base + b_idx * FLOORS + f - 1}", protocol=protocol)
            session.add(gw)
            session.flush()
            for r in range(1, ROOMS_PER_FLOOR + 1):
                number = f"{b_name}{f}{r:02d}"
                room = Room(site_id=site.id, floor_id=floor.id, number=number,
                            area_m2=rng.choice((30, 45, 60, 80, 120)))
                session.add(room)
                session.flush()
                built.rooms += 1
                if b_name == "A":
                    meters = [MeterSpec(serial=f"E{number}", kind="electricity",
                                        profile="acrel-dtsy1352" if f == 1 else "acrel-ddsy1352",
                                        gateway=gw.name, address=str(r))]
                else:
                    meters = [MeterSpec(serial=f"E{number}", kind="electricity", profile="dlt645-2007",
                                        gateway=gw.name, address=f"{b_idx + 1}{f}{r:02d}".rjust(12, "0"))]
                if f == 1:
                    meters.append(MeterSpec(serial=f"W{number}", kind="water", profile="cjt188-water",
                                            gateway=water_gateways[b_name].name,
                                            address=f"{b_idx + 1}{f}{r:02d}".rjust(14, "0")))
                if r == ROOMS_PER_FLOOR:
                    # The last room of each floor is vacant: meters installed, no tenant yet.
                    from core.sites.accounts import attach_meter
                    for spec in meters:
                        attach_meter(session, site.id, room.id, None, spec)
                    continue
                mode = "prepaid-meter" if (b_name == "B" and f == 5) else (
                    "postpaid" if (b_name == "A" and f == 5 and r <= 3) else "prepaid-platform")
                balance_fen = rng.choice((500, 300, 200, 120, 80, 45, 30, 15, 5)) * 100
                if mode == "prepaid-platform":
                    balance_fen += extra_fen.get(number, 0)
                tenant = f"{rng.choice(SURNAMES)}记{rng.choice(SHOPS)}"
                rng.randint(10000000, 99999999)  # the phone's old random digits: kept so later choices stay the same
                acct = open_account(session, OpenAccountRequest(
                    room_id=room.id, tenant_name=tenant, tenant_phone=phone_of(b_idx, f, r), meters=tuple(meters),
                    tariffs={spec.kind: ELECTRICITY_PLAN[0] if spec.kind == "electricity" else WATER_PLAN[0]
                             for spec in meters}, billing_mode=mode,
                    opening_balance_fen=None if mode == "postpaid" else balance_fen),
                    actor="demo", front="cli")
                built.accounts += 1
                built.room_of_account[acct.id] = number
                if mode == "prepaid-platform" and r == 2:
                    # A few tenants at the desk already.
                    cashdesk.desk_recharge(session, acct.id, 5000, key=f"demo-recharge:{acct.id}",
                                           actor="demo", front="cli")
    session.flush()
    built.meters = [(m.id, m.serial, m.kind) for m in session.execute(
        select(Meter.id, Meter.serial, Meter.kind).where(Meter.site_id == site.id, Meter.status == "active")
        .order_by(Meter.id))]
    return built


def phone_of(building_index: int, floor: int, room: int) -> str:
    """The demo tenant's phone: A101 -> 13800130101 (its last four, 0101, bind the room)."""
    return f"1380013{building_index}{floor}{room:02d}"
