"""Bills fixtures: a postpaid shop on a TOU plan with a month of readings, and month-end items."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from core.billing.ingest import ingest
from core.models import MonthItem
from core.sites.accounts import MeterSpec
from core.tariffs.store import add_plan
from tests.billing.conftest import at

# Guangdong-style TOU, priced by the meter's period registers
TOU = {"kind": "tou", "unit": "kWh", "prices": {"peak": "1.02", "flat": "0.6", "valley": "0.228"},
       "day_tables": {"d": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"], ["19:00", "flat"]]}}
WATER = {"kind": "flat", "unit": "m3", "price": "5.0"}


def reading(session, meter_id, when, total, peak=None, flat=None, valley=None):
    periods = None if peak is None else {"peak": Decimal(peak), "flat": Decimal(flat), "valley": Decimal(valley)}
    ingest(session, meter_id, at(when), Decimal(total), periods)


_seq = [0]


def item(session, account, *, kind="charge", code="property", name="物业费", amount_fen=12345, mode="bill",
         period="2026-04", revenue_code=None):
    _seq[0] += 1
    n = _seq
    row = MonthItem(site_id=account.site_id, account_id=account.id, kind=kind, source_id=1, code=code, name=name,
                    period=period, period_start=date(int(period[:4]), int(period[5:7]), 1),
                    period_end=date(int(period[:4]), int(period[5:7]), 28),
                    amount_fen=amount_fen, mode=mode, key=f"{kind}:1:{account.id}:{period}:{n[0]}",
                    revenue_code=revenue_code or (f"revenue:charge:{code}" if kind == "charge"
                                                  else "revenue:apportion:electricity"), meta={})
    session.add(row)
    session.flush()
    return row


@pytest.fixture
def shop(factory, session):
    """A postpaid shop (room 101) on TOU electricity and flat water, with April usage:
    peak 40, flat 35, valley 25 kWh (67.50 yuan) and 3 m3 of water (15.00 yuan); a May interval too."""
    site = factory.site(name="Mall")
    add_plan(session, "tou", TOU, site_id=site.id)
    add_plan(session, "water", WATER, site_id=site.id)
    room = factory.room(site, number="101", area_m2=Decimal("50"))
    acct = factory.account(site=site, room=room, billing_mode="postpaid", tariff="tou",
                           tariffs={"water": "water"},
                           meters=(MeterSpec(serial="SHOP-E", kind="electricity"),
                                   MeterSpec(serial="SHOP-W", kind="water")))
    e, w = acct.meters
    reading(session, e.id, "2026-03-31 23:00", "100", "30", "40", "30")
    reading(session, e.id, "2026-04-15 00:00", "150", "50", "60", "40")
    reading(session, e.id, "2026-04-30 23:00", "200", "70", "75", "55")
    reading(session, e.id, "2026-05-01 00:00", "210", "72", "80", "58")  # closes a May interval (site time)
    reading(session, w.id, "2026-04-01 08:00", "10")
    reading(session, w.id, "2026-04-20 08:00", "13")
    session.commit()
    return acct


@pytest.fixture
def manage(session, client):
    from tests.admin.conftest import Manage
    return Manage(session, client)
