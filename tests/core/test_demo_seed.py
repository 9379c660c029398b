"""`demo seed` backfills thirty days of readings, billed through the normal path: the room page's
chart has data, the ledger and the billed usage agree, nobody is cut by the backfill (issue 14, item 10)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core import ledger
from core.billing import ingest_batch
from core.db import session_scope
from core.models import Account, JournalEntry, Meter, MeterEvent, Posting, Reading, Room, Site, Tenant
from core.models.alarm import SupplyControl
from core.models.billing import BilledUsage
from core.sites.demo import DEMO_SITE, seed


def test_thirty_days_of_history_billed_as_usual(session):
    """One seed (it takes a while), three questions: readings, the room chart, the money."""
    with session_scope() as s:
        demo = seed(s, history_days=30, bill=ingest_batch)
    every_meter_has_thirty_days_of_plain_readings(demo, session)
    the_room_page_chart_has_thirty_days(session)
    the_ledger_and_the_billed_usage_agree_and_balances_stay_positive(session)


def every_meter_has_thirty_days_of_plain_readings(demo, session):
    assert demo.readings > 30 * 4 * 100
    spans = session.execute(select(Meter.serial, func.min(Reading.taken_at), func.max(Reading.taken_at),
                                   func.count(Reading.id))
                            .join(Reading, Reading.meter_id == Meter.id).group_by(Meter.serial)).all()
    meters = session.scalar(select(func.count()).select_from(Meter).where(Meter.status == "active"))
    assert len(spans) == meters == 120
    for serial, first, last, n in spans:
        assert last - first >= timedelta(days=29), serial
        assert n >= 29 * 4, serial
    assert set(session.scalars(select(Reading.status).distinct())) == {"ok"}
    # to the meters' own resolution (CJ/T 188 water meters report 0.01 m³), so the first poll continues it
    water = session.scalars(select(Reading.total).join(Meter, Meter.id == Reading.meter_id)
                            .where(Meter.kind == "water").limit(200)).all()
    assert water and all(t == t.quantize(Decimal("0.01")) for t in water)
    assert session.scalar(select(func.count()).select_from(MeterEvent)) == 0


def the_room_page_chart_has_thirty_days(session):
    from admin.room_data import daily_usage
    site = session.scalars(select(Site).where(Site.name == DEMO_SITE)).one()
    room = session.scalars(select(Room).where(Room.site_id == site.id, Room.number == "A101")).one()
    meters = list(session.scalars(select(Meter).where(Meter.room_id == room.id).order_by(Meter.kind)))
    chart = daily_usage(session, meters, site)
    assert [s["name"] for s in chart["series"]] == ["EA101", "WA101"]
    for series in chart["series"]:
        values = series["data"]
        assert len(values) == 30 and None not in values
        assert all(v >= 0 for v in values) and sum(v > 0 for v in values) >= 28
    electricity = chart["series"][0]["data"]
    assert 3 * 0.7 * 0.8 <= min(electricity[:-1]) and max(electricity) <= 20 * 1.3 * 1.1


def the_ledger_and_the_billed_usage_agree_and_balances_stay_positive(session):
    wallets = {a.id: ledger.wallet_of(session, a.id).id for a in session.scalars(
        select(Account).where(Account.billing_mode == "prepaid-platform"))}
    assert len(wallets) >= 70
    for account_id, wallet_id in wallets.items():
        posted = session.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0))
                                .join(JournalEntry, JournalEntry.id == Posting.entry_id)
                                .where(Posting.ledger_account_id == wallet_id, JournalEntry.kind == "consumption"))
        billed = session.scalar(select(func.coalesce(func.sum(BilledUsage.amount_fen), 0))
                                .where(BilledUsage.account_id == account_id))
        assert billed > 0 and -posted == billed, account_id
        # one consumption entry per meter and day, as the poller would have made
        days = session.scalar(select(func.count()).select_from(JournalEntry)
                              .where(JournalEntry.account_id == account_id, JournalEntry.kind == "consumption"))
        assert days >= 30
        assert ledger.account_balance(session, account_id) >= 500  # the smallest opening balance stays
    assert session.scalar(select(func.count()).select_from(SupplyControl).where(SupplyControl.state != "on")) == 0
    from core.ledger.check import validate
    assert validate(session) == []


def test_a101_has_the_documented_phone_and_no_history_means_no_readings(session):
    with session_scope() as s:
        result = seed(s)
    assert result.readings == 0 and session.scalar(select(func.count()).select_from(Reading)) == 0
    tenant = session.scalars(select(Tenant).join(Account, Account.tenant_id == Tenant.id)
                             .join(Room, Room.id == Account.room_id).where(Room.number == "A101")).one()
    assert tenant.phone == "13800130101"
    with pytest.raises(ValueError, match="bill"):
        seed(session, history_days=3)
