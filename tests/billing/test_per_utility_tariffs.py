"""Each utility is priced with its own plan: water with the water plan (m3), never with a kWh plan."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core import ledger
from core.billing import RawReading, ingest, ingest_batch
from core.errors import ValidationError
from core.ledger.check import validate
from core.models import Account, AccountPreset, AuditLog, BilledUsage, LedgerAccount, Posting, TariffPlan
from core.sites.accounts import MeterSpec, OpenAccountRequest, change_tariff, open_account, save_preset
from core.tariffs.store import add_plan
from tests.billing.conftest import at

POWER = {"kind": "flat", "unit": "kWh", "price": "1.0"}
WATER = {"kind": "flat", "unit": "m3", "price": "5.0"}


@pytest.fixture
def site(factory, session):
    site = factory.site("水电广场")
    add_plan(session, "电", POWER, site_id=site.id)
    add_plan(session, "水", WATER, site_id=site.id)
    session.commit()
    return site


def _meters(n: int = 1):
    return (MeterSpec(serial=f"E{n:05d}"), MeterSpec(serial=f"W{n:05d}", kind="water", profile="cjt188-water"))


def _plan_id(session, site, name) -> int:
    return session.scalar(select(TariffPlan.id).where(TariffPlan.site_id == site.id, TariffPlan.name == name))


def _revenue(session, code) -> int:
    acct = session.scalar(select(LedgerAccount).where(LedgerAccount.code == code))
    return 0 if acct is None else int(session.scalar(
        select(func.coalesce(func.sum(Posting.amount_fen), 0)).where(Posting.ledger_account_id == acct.id)))


def test_water_is_priced_with_the_water_plan(session, factory, site):
    acct = factory.account(site=site, balance_fen=100_000, meters=_meters(), tariffs={"electricity": "电",
                                                                                       "water": "水"})
    power, water = acct.meters
    ingest(session, water.id, at("2026-07-01 00:00"), Decimal("10.000"))
    result = ingest(session, water.id, at("2026-07-01 12:00"), Decimal("12.000"))
    ingest(session, power.id, at("2026-07-01 00:00"), Decimal("100"))
    ingest(session, power.id, at("2026-07-01 12:00"), Decimal("103"))
    session.commit()
    assert result.billed_fen == 1000  # 2 m3 at 5.00, not 2 "kWh" at 1.00
    assert _revenue(session, "revenue:water") == 1000 and _revenue(session, "revenue:electricity") == 300
    assert ledger.account_balance(session, acct.id) == 100_000 - 1300
    usage = {u.meter_id: u for u in session.scalars(select(BilledUsage))}
    assert usage[water.id].plan_id == _plan_id(session, site, "水")
    assert usage[power.id].plan_id == _plan_id(session, site, "电")
    assert validate(session) == []


def test_a_kwh_plan_never_prices_a_water_meter(session, factory, site):
    # The old way to open: one plan named, a kWh one; the water meter stays unpriced.
    acct = factory.account(site=site, balance_fen=100_000, meters=_meters(), tariff="电")
    water = acct.meters[1]
    assert (acct.electricity_plan_id, acct.water_plan_id) == (_plan_id(session, site, "电"), None)
    ingest(session, water.id, at("2026-07-01 00:00"), Decimal("10.000"))
    held = ingest(session, water.id, at("2026-07-02 00:00"), Decimal("12.000"))
    ingest(session, water.id, at("2026-07-03 00:00"), Decimal("13.500"))
    session.commit()
    assert held.status == "accepted" and held.billed_fen == 0 and "unpriced" in held.reason
    assert ledger.account_balance(session, acct.id) == 100_000
    # A water plan set later bills the whole gap since the last priced reading, at the water price.
    change_tariff(session, acct.id, "水")
    after = ingest(session, water.id, at("2026-07-04 00:00"), Decimal("14.000"))
    session.commit()
    assert after.billed_fen == 2000  # 10.000 -> 14.000 m3 at 5.00
    assert ledger.account_balance(session, acct.id) == 100_000 - 2000
    assert session.scalar(select(func.count()).select_from(BilledUsage)
                          .where(BilledUsage.meter_id == water.id)) == 1


def _open_water_with_power_plan(session, factory, site):
    open_account(session, OpenAccountRequest(room_id=factory.room(site).id, tenant_name="王", meters=_meters(7),
                                             tariffs={"electricity": "电", "water": "电"}))


def _change_water_to_power_plan(session, factory, site):
    acct = factory.account(site=site, meters=_meters(8), tariffs={"electricity": "电", "water": "水"})
    change_tariff(session, acct.id, "电", utility="water")


def _preset_water_with_power_plan(session, factory, site):
    save_preset(session, "店铺", tariffs={"water": "电"}, site_id=site.id)


def _import_water_row_with_power_plan(session, factory, site):
    from core.sites.importer import import_rows
    header = {c: "" for c in ("building", "floor", "room", "tenant", "phone", "meter_serial", "meter_kind",
                              "tariff", "billing_mode")}
    rows = [(2, {**header, "building": "A", "floor": "1", "room": "A1", "tenant": "王", "meter_serial": "E9",
                 "meter_kind": "electricity", "tariff": "电"}),
            (3, {**header, "building": "A", "floor": "1", "room": "A1", "tenant": "王", "meter_serial": "W9",
                 "meter_kind": "water", "tariff": "电"})]
    report = import_rows(session, site.name, rows)
    assert [e.line for e in report.errors] == [3, 2]
    raise ValidationError(report.errors[0].reason)


@pytest.mark.parametrize("assign", [_open_water_with_power_plan, _change_water_to_power_plan,
                                    _preset_water_with_power_plan, _import_water_row_with_power_plan])
def test_a_wrong_unit_plan_is_refused_wherever_it_is_assigned(session, factory, site, assign):
    before = (session.scalar(select(func.count()).select_from(Account)),
              session.scalar(select(func.count()).select_from(AccountPreset)))
    with pytest.raises(ValidationError) as err:
        assign(session, factory, site)
    assert err.value.message.startswith("tariff:") and "'电' is priced in kWh; a water meter needs m3" in err.value.message
    session.rollback()
    accounts = session.scalars(select(Account)).all()
    assert all(a.water_plan_id in (None, _plan_id(session, site, "水")) for a in accounts)
    assert (len(accounts) - (assign is _change_water_to_power_plan),
            session.scalar(select(func.count()).select_from(AccountPreset))) == before
    assert not session.scalars(select(AuditLog).where(AuditLog.action == "change_tariff")).all()


def test_the_bulk_copy_path_records_the_plan(session, factory, site, pg_only):
    accounts = [factory.account(site=site, balance_fen=100_000, meters=_meters(n), commit=False,
                                tariffs={"electricity": "电", "water": "水"}) for n in range(30)]
    session.commit()
    rows = []
    for h in range(3):
        for acct in accounts:
            power, water = acct.meters
            rows.append(RawReading(power.id, at("2026-07-01 00:00") + timedelta(hours=h), Decimal(100 + 2 * h)))
            rows.append(RawReading(water.id, at("2026-07-01 00:00") + timedelta(hours=h), Decimal(10) + h))
    assert len(rows) >= 100
    result = ingest_batch(session, rows)
    session.commit()
    assert result.billed_fen == 30 * (400 + 1000)  # 4 kWh at 1.00 and 2 m3 at 5.00 each
    assert _revenue(session, "revenue:water") == 30 * 1000 and _revenue(session, "revenue:electricity") == 30 * 400
    plan_of = {(u.meter_id): u.plan_id for u in session.scalars(select(BilledUsage))}
    assert len(plan_of) == 60
    for acct in accounts:
        power, water = acct.meters
        assert plan_of[power.id] == _plan_id(session, site, "电") and plan_of[water.id] == _plan_id(session, site, "水")
    assert validate(session) == []


def test_a_meter_on_no_account_is_priced_with_its_own_plan_and_charges_nobody(session, factory, site):
    from core.models import JournalEntry
    from core.sites.accounts import attach_meter
    master = attach_meter(session, site.id, factory.room(site).id, None, MeterSpec("EM1"))
    master.tariff_plan_id = _plan_id(session, site, "电")
    plain = attach_meter(session, site.id, factory.room(site).id, None, MeterSpec("EM2"))
    session.commit()
    for m in (master, plain):
        ingest(session, m.id, at("2026-07-01 00:00"), Decimal("100"))
        ingest(session, m.id, at("2026-07-02 00:00"), Decimal("130"))
    session.commit()
    usage = {u.meter_id: u for u in session.scalars(select(BilledUsage))}
    assert (usage[master.id].account_id, usage[master.id].plan_id, usage[master.id].amount) == \
        (None, master.tariff_plan_id, Decimal(30))
    assert (usage[plain.id].plan_id, usage[plain.id].amount) == (None, Decimal(0))  # no plan: the cursor moves
    assert session.scalar(select(func.count()).select_from(JournalEntry)) == 0
