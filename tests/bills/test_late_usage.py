"""A reading stored after its month's bill was made is billed on the next bill, never lost."""
from __future__ import annotations

from sqlalchemy import select

from core.bills import generate
from core.models import Bill, BilledUsage
from tests.bills.conftest import reading


def gen(session, acct, period):
    res = generate.generate_for_period(session, acct.site_id, period, preview=False, actor="test", front="cli")
    session.commit()
    return res


def test_a_late_april_interval_goes_on_the_may_bill(session, shop):
    april = gen(session, shop, "2026-04")
    assert april.count == 1
    _e, w = shop.meters
    # the water meter was offline: its reading of 28 April arrives after April's bill was made
    reading(session, w.id, "2026-04-28 08:00", "15")  # 2 m3 x 5.00 = 10.00
    session.commit()
    late = session.scalar(select(BilledUsage).where(BilledUsage.meter_id == w.id, BilledUsage.bill_id.is_(None)))
    assert late is not None and late.amount_fen == 1000

    may = gen(session, shop, "2026-05")
    assert may.count == 1
    bill = session.scalar(select(Bill).where(Bill.period == "2026-05"))
    session.refresh(late)
    assert late.bill_id == bill.id
    water = [ln for ln in may.lines if ln["code"].startswith("water")]
    assert [ln["amount_fen"] for ln in water] == [1000]
    # and nothing is taken twice: April's bill kept its own rows
    assert gen(session, shop, "2026-05").count == 0
    assert all(u.bill_id is not None for u in session.scalars(select(BilledUsage)))
