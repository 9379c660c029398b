"""A small site whose every report figure is worked out by hand (docs/reports.md walks through it).

Plaza, Asia/Shanghai. Building A floor 1: 101 (flat 0.60/kWh), 102 (TOU: valley 0.20 from 00:00,
flat 0.50 from 08:00, peak 1.00 from 18:00, valley from 22:00), both prepaid on the platform;
202 (water, 5.00/m³, prepaid). Building B floor 2: 201 (flat 1.00/kWh, postpaid: accrued, not posted).

April 2026, every interval dated by the reading that closes it:

- 101: 03-31 23:00 1000.00 (baseline) -> 04-01 00:00 1001.00 (1 kWh, 0.60) -> 04-15 12:00 1011.00
  (10 kWh, 6.00) -> 05-01 00:30 1021.00 (10 kWh, 6.00: May's). April: 11 kWh, 6.60, all flat.
- 102: 04-02 07:00 500.00 -> 09:00 502.00 (1 valley 0.20 + 1 flat 0.50) -> 19:00 512.00 (9 flat
  4.50 + 1 peak 1.00). April: 12 kWh = valley 1, flat 10, peak 1; fee 6.20 = 0.20 + 5.00 + 1.00.
- 201: 04-03 00:00 0.00 -> 04-20 00:00 50.00: 50 kWh, 50.00 accrued (no entry: postpaid).
- 202: 04-05 08:00 10.000 -> 20:00 10.125: 0.125 m³, 0.625 -> 0.63 (half up).
- A property fee of 30.00 for 2026-04 from 101's wallet (key charge:1:<account>:2026-04): April 1.
- A WeChat payment of 200.00 to 101, paid 04-30 23:59:50, credited after midnight: April 30.

Income April: electricity 12.80 (6.60 + 6.20), water 0.63, property 30.00, total 43.43; cash in
wechat 200.00.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from core.sites.accounts import MeterSpec
from core.tariffs.store import add_plan

SH = ZoneInfo("Asia/Shanghai")
FLAT_060 = {"kind": "flat", "unit": "kWh", "price": "0.6"}
FLAT_100 = {"kind": "flat", "unit": "kWh", "price": "1.0"}
WATER_5 = {"kind": "flat", "unit": "m3", "price": "5"}
TOU = {"kind": "tou", "unit": "kWh", "prices": {"peak": "1.0", "flat": "0.5", "valley": "0.2"},
       "day_tables": {"normal": [["00:00", "valley"], ["08:00", "flat"], ["18:00", "peak"], ["22:00", "valley"]]},
       "default_table": "normal"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


@dataclass
class Plaza:
    site: object
    a101: object
    a102: object
    a201: object
    a202: object
    order_no: str


def ingest(session, meter, when: str, total: str) -> None:
    from core.billing import ingest as bill
    res = bill(session, meter.id, at(when), Decimal(total))
    assert res.status == "accepted", res


def post_charge(session, account, amount_fen: int, period: str, code: str = "property") -> int:
    """What issue 12's custom charges post: wallet -> revenue:charge:<code>, keyed by the period."""
    from core import ledger
    from core.ledger import journal
    wallet = ledger.wallet_of(session, account.id)
    revenue = ledger.system_account(session, f"revenue:charge:{code}")
    return journal.post(session, key=f"charge:1:{account.id}:{period}", kind="charge",
                        legs=[journal.Leg(wallet.id, -amount_fen), journal.Leg(revenue.id, amount_fen)],
                        account_id=account.id, memo=f"{code} {period}").entry_id


def pay_online(session, account, amount_fen: int, paid_at: datetime, channel: str = "wechat") -> str:
    from core.payments import orders
    from core.payments.provider import PaymentReport
    order = orders.create_order(session, account.id, amount_fen, channel)
    orders.settle(session, PaymentReport(channel=channel, order_no=order.order_no, state="paid",
                                         txn_id=f"TXN-{order.order_no}", amount_fen=amount_fen, paid_at=paid_at))
    return order.order_no


@pytest.fixture
def plaza(session, factory) -> Plaza:
    site = factory.site("Plaza")
    for name, spec in (("flat-060", FLAT_060), ("flat-100", FLAT_100), ("water-5", WATER_5), ("tou", TOU)):
        add_plan(session, name, spec)
    rooms = {n: factory.room(site, n, building=b, floor=f) for n, b, f in
             (("101", "A", "1"), ("102", "A", "1"), ("202", "A", "1"), ("201", "B", "2"))}
    a101 = factory.account(room=rooms["101"], tariff="flat-060", balance_fen=100_000, tenant="Tea",
                           meters=(MeterSpec(serial="E101"),))
    a102 = factory.account(room=rooms["102"], tariff="tou", balance_fen=100_000, tenant="Noodle",
                           meters=(MeterSpec(serial="E102"),))
    a201 = factory.account(room=rooms["201"], tariff="flat-100", billing_mode="postpaid", tenant="Books",
                           meters=(MeterSpec(serial="E201"),))
    a202 = factory.account(room=rooms["202"], tariff="water-5", balance_fen=10_000, tenant="Cafe",
                           meters=(MeterSpec(serial="W202", kind="water", profile="cjt188-water"),))
    m = {a.id: a.meters[0] for a in (a101, a102, a201, a202)}
    for when, total in (("2026-03-31 23:00", "1000.00"), ("2026-04-01 00:00", "1001.00"),
                        ("2026-04-15 12:00", "1011.00"), ("2026-05-01 00:30", "1021.00")):
        ingest(session, m[a101.id], when, total)
    for when, total in (("2026-04-02 07:00", "500.00"), ("2026-04-02 09:00", "502.00"),
                        ("2026-04-02 19:00", "512.00")):
        ingest(session, m[a102.id], when, total)
    ingest(session, m[a201.id], "2026-04-03 00:00", "0")
    ingest(session, m[a201.id], "2026-04-20 00:00", "50.00")
    ingest(session, m[a202.id], "2026-04-05 08:00", "10.000")
    ingest(session, m[a202.id], "2026-04-05 20:00", "10.125")
    post_charge(session, a101, 3000, "2026-04")
    order_no = pay_online(session, a101, 20_000, at("2026-04-30 23:59:50"))
    session.commit()
    return Plaza(site, a101, a102, a201, a202, order_no)
