"""The demo site: two buildings, five floors, ten rooms a floor, electricity and water meters,
tenants with balances, and a manager. Its gateways point at the local simulator
(``meterpay simulate --from-db``) on ports from METERPAY_SIM_PORT_BASE (default 17100).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import config
from core.ledger import cashdesk
from core.models import Building, Floor, Gateway, Manager, Room, Site
from core.sites.accounts import MeterSpec, OpenAccountRequest, open_account
from core.sites.managers import create_manager
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


@dataclass(frozen=True)
class DemoResult:
    created: bool
    site_id: int
    rooms: int
    accounts: int
    manager: tuple[str, str]


def port_base() -> int:
    return config.get("METERPAY_SIM_PORT_BASE")


def seed(session: Session, *, if_empty: bool = False) -> DemoResult:
    existing = session.scalar(select(Site).where(Site.name == DEMO_SITE))
    if existing is not None:
        if not if_empty:
            from core.errors import Conflict
            raise Conflict(f"the demo site {DEMO_SITE!r} exists already")
        existing_rooms = session.scalars(select(Room).where(Room.site_id == existing.id)).all()
        return DemoResult(False, existing.id, len(existing_rooms), 0, DEMO_MANAGER)

    rng = random.Random(20261127)
    site = Site(name=DEMO_SITE, timezone="Asia/Shanghai",
                settings={"poll_interval_minutes": 1, "emergency_credit_fen": 0})
    session.add(site)
    session.flush()
    add_plan(session, ELECTRICITY_PLAN[0], ELECTRICITY_PLAN[1], site_id=site.id)
    add_plan(session, WATER_PLAN[0], WATER_PLAN[1], site_id=site.id)
    base = port_base()
    water_gateways = {}
    for b_idx, b_name in enumerate(BUILDINGS):
        water_gateways[b_name] = Gateway(site_id=site.id, name=f"{b_name}栋水表总线",
                                         url=f"tcp://127.0.0.1:{base + 10 + b_idx}", protocol="cjt188")
        session.add(water_gateways[b_name])
    accounts = 0
    rooms = 0
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
                rooms += 1
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
                balance_yuan = rng.choice((500, 300, 200, 120, 80, 45, 30, 15, 5))
                acct = open_account(session, OpenAccountRequest(
                    room_id=room.id, tenant_name=f"{rng.choice(SURNAMES)}记{rng.choice(SHOPS)}",
                    tenant_phone=f"138{rng.randint(10000000, 99999999)}", meters=tuple(meters),
                    tariffs={spec.kind: ELECTRICITY_PLAN[0] if spec.kind == "electricity" else WATER_PLAN[0]
                             for spec in meters}, billing_mode=mode,
                    opening_balance_fen=None if mode == "postpaid" else balance_yuan * 100),
                    actor="demo", front="cli")
                accounts += 1
                if mode == "prepaid-platform" and r == 2:
                    # A few tenants at the desk already.
                    cashdesk.desk_recharge(session, acct.id, 5000, key=f"demo-recharge:{acct.id}",
                                           actor="demo", front="cli")
    if session.scalar(select(Manager).where(Manager.username == DEMO_MANAGER[0])) is None:
        create_manager(session, DEMO_MANAGER[0], DEMO_MANAGER[1], all_sites=True, role="admin",
                       display_name="演示管理员")
    session.flush()
    return DemoResult(True, site.id, rooms, accounts, DEMO_MANAGER)
