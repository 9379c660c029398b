"""Garden: a small site whose month-end figures are worked out by hand (docs/monthend.md walks it).

Asia/Shanghai; plan 电: flat 1.00/kWh. Building A floor 1: 101 (50.25 m²), 102 (30.50 m²), 103
(19.25 m²); floor 2: 201 (40.00 m²). Each has an account opened 2026-03-01 with 100.00 in the wallet.
Room C1 (building A, floor B1) has no tenant: the common-area master meter EM-COMMON, priced by 电.

Master readings (each interval dated by its closing reading): 03-31 23:00 1000.00 (baseline) ->
04-15 12:00 1050.00 (50.00) -> 04-30 23:00 1100.01 (50.01) -> 05-01 00:30 1101.00 (0.99: May's).
April: 100.01 kWh = 100.01 yuan = 10001 fen.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from core.sites.accounts import MeterSpec, attach_meter
from core.tariffs.store import add_plan

SH = ZoneInfo("Asia/Shanghai")
FLAT_100 = {"kind": "flat", "unit": "kWh", "price": "1.0"}
WATER_5 = {"kind": "flat", "unit": "m3", "price": "5"}
MASTER_READINGS = [("2026-03-31 23:00", "1000.00"), ("2026-04-15 12:00", "1050.00"),
                   ("2026-04-30 23:00", "1100.01"), ("2026-05-01 00:30", "1101.00")]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


def ingest(session, meter_id: int, when: str, total: str) -> None:
    from core.billing import ingest as bill
    res = bill(session, meter_id, at(when), Decimal(total))
    assert res.status == "accepted", res


@dataclass
class Garden:
    site: object
    accounts: dict  # room -> account
    master: object


def open_at(factory, site, number: str, *, area: str | None, floor: str = "1", opened: str = "2026-03-01 00:00",
            balance_fen: int = 10000, billing_mode: str = "prepaid-platform", building: str = "A"):
    room = factory.room(site, number=number, floor=floor, area_m2=Decimal(area) if area else None, building=building)
    acct = factory.account(site=site, room=room, balance_fen=balance_fen, billing_mode=billing_mode, tariff="电",
                           commit=False)
    acct.opened_at = at(opened)
    factory.session.flush()
    return acct


@pytest.fixture
def garden(session, factory):
    site = factory.site("Garden")
    site.timezone = "Asia/Shanghai"
    add_plan(session, "电", FLAT_100, site_id=site.id)
    add_plan(session, "水", WATER_5, site_id=site.id)
    accounts = {n: open_at(factory, site, n, area=a, floor=f) for n, a, f in
                (("101", "50.25", "1"), ("102", "30.50", "1"), ("103", "19.25", "1"), ("201", "40.00", "2"))}
    common = factory.room(site, number="C1", floor="B1")
    master = attach_meter(session, site.id, common.id, None, MeterSpec("EM-COMMON"))
    from core.tariffs.store import plan_for
    master.tariff_plan_id = plan_for(session, "电", site_id=site.id, utility="electricity").id
    session.commit()
    for when, total in MASTER_READINGS:
        ingest(session, master.id, when, total)
    session.commit()
    return Garden(site, accounts, master)


@pytest.fixture
def write_json(tmp_path):
    def write(obj, name="spec.json") -> str:
        path = tmp_path / name
        path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
        return str(path)
    return write
