"""Month-end money to the fen, worked out by hand on the Garden site (see conftest)."""
from __future__ import annotations

from sqlalchemy import func, select

from core.ledger import account_balance
from core.ledger.check import validate
from core.models import JournalEntry, MonthItem
from core.monthend.rules import add_rule
from core.monthend.run import run_month_end
from core.monthend.schemes import add_scheme
from tests.monthend.conftest import at, ingest, open_at

PER_M2 = {"name": "物业费", "code": "property", "basis": "per_m2", "amount": "2.5", "every": "month", "day": 1,
          "mode": "deduct", "prorate": "days", "start": "2026-01-01", "scope": {"buildings": ["A"]}}


def items(session, kind=None):
    q = select(MonthItem).order_by(MonthItem.id)
    if kind:
        q = q.where(MonthItem.kind == kind)
    return {(i.account_id, i.source_id): i for i in session.scalars(q)}


def test_per_m2_charge_rounds_half_up_once_and_prorates_by_days(session, factory, garden):
    a = garden.accounts
    late = open_at(factory, garden.site, "104", area="31.00", opened="2026-04-21 09:30")  # 21..30: 10 days
    gone = open_at(factory, garden.site, "105", area="12.00")
    gone.status, gone.closed_at = "closed", at("2026-04-10 18:00")  # 1..10: 10 days
    scheme = add_scheme(session, garden.site.id, PER_M2)
    session.commit()
    result = run_month_end(garden.site.id, "2026-04", actor="test")
    got = {i.account_id: i.amount_fen for i in items(session, "charge").values()}
    # 2.5 x 50.25 = 125.625 -> 125.63; 2.5 x 30.50 = 76.25; 2.5 x 19.25 = 48.125 -> 48.13; 2.5 x 40 = 100
    # 104: 2.5 x 31 x 10/30 = 25.8333.. -> 25.83; 105: 2.5 x 12 x 10/30 = 10.00
    assert got == {a["101"].id: 12563, a["102"].id: 7625, a["103"].id: 4813, a["201"].id: 10000,
                   late.id: 2583, gone.id: 1000}
    assert result.charges_fen == 12563 + 7625 + 4813 + 10000 + 2583 + 1000
    assert result.entries == 5  # the closed account's share goes on its bill: its wallet was settled
    assert items(session, "charge")[(gone.id, scheme.id)].mode == "bill"
    assert account_balance(session, a["101"].id) == 10000 - 12563  # below zero: posted all the same
    entry = session.scalar(select(JournalEntry).where(
        JournalEntry.idempotency_key == f"charge:{scheme.id}:{a['101'].id}:2026-04"))
    assert entry.kind == "charge" and entry.meta["period"] == "2026-04"
    assert {(p.ledger_account.code, p.amount_fen) for p in entry.postings} == {
        (f"wallet:{a['101'].id}", -12563), ("revenue:charge:property", 12563)}
    assert validate(session) == []


def test_area_split_gives_the_leftover_fen_to_the_largest_remainder(session, garden):
    a = garden.accounts
    rule = add_rule(session, garden.site.id, {"name": "公区电", "master": "EM-COMMON", "basis": "area",
                                               "accounts": ["101", "102", "103"], "mode": "deduct"})
    session.commit()
    result = run_month_end(garden.site.id, "2026-04", actor="test")
    # 10001 x 50.25/100 = 5025.5025, x 30.50/100 = 3050.305, x 19.25/100 = 1925.1925: floors 10000,
    # the last fen to the largest remainder (.5025: room 101)
    got = {i.account_id: i.amount_fen for i in items(session, "apportion").values()}
    assert got == {a["101"].id: 5026, a["102"].id: 3050, a["103"].id: 1925}
    assert result.apportioned_fen == 10001
    item = items(session, "apportion")[(a["101"].id, rule.id)]
    assert item.key == f"apportion:{rule.id}:{a['101'].id}:2026-04" and item.revenue_code == "revenue:apportion:electricity"
    assert item.meta["master_fen"] == 10001 and item.entry_id is not None
    assert validate(session) == []


def test_equal_ratio_ties_go_to_the_lower_account_id(session, garden):
    a = garden.accounts
    add_rule(session, garden.site.id, {"name": "电梯", "master": "EM-COMMON", "basis": "ratio",
                                       "accounts": {"103": 1, "101": 1, "102": 1}, "mode": "deduct"})
    session.commit()
    run_month_end(garden.site.id, "2026-04", actor="test")
    got = {i.account_id: i.amount_fen for i in items(session, "apportion").values()}
    low, mid, high = sorted([a["101"].id, a["102"].id, a["103"].id])
    assert got == {low: 3334, mid: 3334, high: 3333}  # 10001/3 = 3333 r 2: two ties, lowest ids first


def test_days_present_weigh_the_area_of_who_was_there(session, garden):
    a = garden.accounts
    a["102"].status, a["102"].closed_at = "closed", at("2026-04-15 10:00")  # 1..15: 15 days
    add_rule(session, garden.site.id, {"name": "公区电", "master": "EM-COMMON", "basis": "area",
                                       "accounts": ["101", "102"], "mode": "deduct"})
    session.commit()
    run_month_end(garden.site.id, "2026-04", actor="test")
    got = {i.account_id: i.amount_fen for i in items(session, "apportion").values()}
    # weights 50.25 x 30 = 1507.5 and 30.50 x 15 = 457.5 (sum 1965): 10001 x 1507.5/1965 = 7672.5229..,
    # 10001 x 457.5/1965 = 2328.4770..: floors 10000, the last fen to .5229 (room 101)
    assert got == {a["101"].id: 7673, a["102"].id: 2328}
    modes = {i.account_id: (i.mode, i.entry_id is None) for i in items(session, "apportion").values()}
    assert modes == {a["101"].id: ("deduct", False), a["102"].id: ("bill", True)}  # 102 closed: billed


def test_usage_basis_splits_by_each_accounts_own_kwh(session, garden):
    a = garden.accounts
    for room, kwh in (("101", "30.00"), ("102", "10.00")):
        meter = a[room].meters[0]
        ingest(session, meter.id, "2026-04-02 00:00", "0")
        ingest(session, meter.id, "2026-04-20 00:00", kwh)
    session.commit()
    add_rule(session, garden.site.id, {"name": "按用量", "master": "EM-COMMON", "basis": "usage",
                                       "accounts": ["101", "102", "103"], "mode": "deduct"})
    session.commit()
    run_month_end(garden.site.id, "2026-04", actor="test")
    got = {i.account_id: i.amount_fen for i in items(session, "apportion").values()}
    # 10001 x 30/40 = 7500.75, x 10/40 = 2500.25; 103 used nothing: 0, no item
    assert got == {a["101"].id: 7501, a["102"].id: 2500}


def test_a_master_without_readings_covering_the_month_is_reported_not_guessed(session, garden):
    add_rule(session, garden.site.id, {"name": "公区电", "master": "EM-COMMON", "basis": "area",
                                       "accounts": ["101", "102"], "mode": "deduct"})
    session.commit()
    result = run_month_end(garden.site.id, "2026-05", actor="test")  # no reading after May's end
    assert result.apportioned_fen == 0 and result.entries == 0
    assert len(result.problems) == 1 and "no readings covering 2026-05" in result.problems[0]["message"]
    assert session.scalar(select(func.count()).select_from(MonthItem)) == 0


def test_bill_mode_and_postpaid_items_post_nothing_at_month_end(session, factory, garden):
    a = garden.accounts
    post = open_at(factory, garden.site, "301", area="10.00", floor="3", billing_mode="postpaid")
    add_scheme(session, garden.site.id, {"name": "垃圾费", "code": "garbage", "basis": "fixed", "amount": "10",
                                         "every": "month", "mode": "bill", "prorate": "none",
                                         "start": "2026-01-01", "scope": {"rooms": ["101"]}})
    add_scheme(session, garden.site.id, {**PER_M2, "scope": {"rooms": ["102", "301"]}})
    session.commit()
    result = run_month_end(garden.site.id, "2026-04", actor="test")
    rows = sorted((i.account_id, i.code, i.mode, i.amount_fen, i.entry_id is None) for i in items(session).values())
    assert rows == sorted([(a["101"].id, "garbage", "bill", 1000, True), (a["102"].id, "property", "deduct", 7625, False),
                           (post.id, "property", "bill", 2500, True)])
    assert result.entries == 1 and result.charges_fen == 1000 + 7625 + 2500


def test_ledger_check_finds_an_item_that_disagrees_with_its_entry(session, garden):
    add_scheme(session, garden.site.id, PER_M2)
    session.commit()
    run_month_end(garden.site.id, "2026-04", actor="test")
    assert validate(session) == []
    item = session.scalars(select(MonthItem).order_by(MonthItem.id)).first()
    item.amount_fen += 1
    session.flush()
    assert [p.check for p in validate(session)] == ["month-item"]
    item.amount_fen -= 1
    item.entry_id = None
    session.flush()
    assert [p.check for p in validate(session)] == ["month-item"]


def test_a_water_master_is_split_the_same_way(session, factory, garden):
    from core.sites.accounts import MeterSpec, attach_meter
    from core.tariffs.store import plan_for
    room = factory.room(garden.site, number="C2", floor="B1")
    pump = attach_meter(session, garden.site.id, room.id, None, MeterSpec("WM-COMMON", kind="water",
                                                                           profile="cjt188-water"))
    pump.tariff_plan_id = plan_for(session, "水", site_id=garden.site.id, utility="water").id
    session.commit()
    # 10.000 m3 at 5.00 in April (the 05-01 00:30 reading closes May's interval)
    for when, total in (("2026-03-31 23:00", "100.000"), ("2026-04-30 12:00", "110.000"),
                        ("2026-05-01 00:30", "111.000")):
        ingest(session, pump.id, when, total)
    session.commit()
    a = garden.accounts
    add_rule(session, garden.site.id, {"name": "水泵", "master": "WM-COMMON", "basis": "ratio",
                                       "accounts": {"101": 3, "201": 1}, "mode": "deduct"})
    session.commit()
    result = run_month_end(garden.site.id, "2026-04", actor="test")
    got = {i.account_id: (i.amount_fen, i.code, i.revenue_code) for i in items(session, "apportion").values()}
    assert got == {a["101"].id: (3750, "apportion:water", "revenue:apportion:water"),
                   a["201"].id: (1250, "apportion:water", "revenue:apportion:water")}
    assert result.apportioned_fen == 5000 and validate(session) == []


def test_a_room_without_an_area_is_reported_by_the_run_and_by_every_run_after(session, factory, garden):
    bare = open_at(factory, garden.site, "104", area=None)
    add_scheme(session, garden.site.id, PER_M2)
    session.commit()
    first = run_month_end(garden.site.id, "2026-04", actor="test")
    again = run_month_end(garden.site.id, "2026-04", actor="test")
    for result in (first, again):
        assert [p["message"] for p in result.problems] == ["room 104: no area_m2 for the per-m² scheme property"]
    assert bare.id not in {i.account_id for i in items(session, "charge").values()}
    assert first.charges_fen == again.charges_fen == 12563 + 7625 + 4813 + 10000


def test_a_quarterly_charge_reaches_an_account_opened_after_the_quarters_first_month(session, factory, garden):
    """Rent 900 a quarter, by days: the April run charges everyone open by April's end; an account
    opened on May 10 is charged by the May run, 900 x 52/91 (May 10 .. June 30 of Q2's 91 days)."""
    spec = {"name": "房租", "code": "rent", "basis": "fixed", "amount": "900", "every": "quarter", "day": 1,
            "mode": "deduct", "prorate": "days", "start": "2026-01-01", "scope": {"rooms": ["101", "106"]}}
    late = open_at(factory, garden.site, "106", area=None, opened="2026-05-10 10:00")
    scheme = add_scheme(session, garden.site.id, spec)
    session.commit()
    april = run_month_end(garden.site.id, "2026-04", actor="test")  # 106 is not open yet
    assert april.charges_fen == 90000
    may = run_month_end(garden.site.id, "2026-05", actor="test")
    june = run_month_end(garden.site.id, "2026-06", actor="test")
    got = {i.account_id: (i.amount_fen, i.period) for i in items(session, "charge").values()}
    # 900 x 52/91 = 514.2857.. -> 514.29
    assert got == {garden.accounts["101"].id: (90000, "2026-Q2"), late.id: (51429, "2026-Q2")}
    assert may.charges_fen == 51429 and june.charges_fen == 0
    assert session.scalar(select(JournalEntry.id).where(
        JournalEntry.idempotency_key == f"charge:{scheme.id}:{late.id}:2026-Q2")) is not None
    assert validate(session) == []


def _second_master(session, garden, serial: str, *, plan: bool):
    from core.models import Room
    from core.sites.accounts import MeterSpec, attach_meter
    from core.tariffs.store import plan_for
    common = session.scalar(select(Room).where(Room.number == "C1"))
    master = attach_meter(session, garden.site.id, common.id, None, MeterSpec(serial))
    if plan:
        master.tariff_plan_id = plan_for(session, "电", site_id=garden.site.id, utility="electricity").id
    session.commit()
    return master


def test_monthly_frozen_readings_at_midnight_on_the_1st_give_exactly_the_month_between_them(session, garden):
    """Readings at 00:00 on May 1 and Jun 1: May's master usage is the 50.00 kWh between them (at
    1.00/kWh), not April's interval that the May 1 reading closed."""
    master = _second_master(session, garden, "EM-MIDNIGHT", plan=True)
    for when, total in (("2026-04-01 00:00", "100.00"), ("2026-05-01 00:00", "130.00"),
                        ("2026-06-01 00:00", "180.00"), ("2026-07-01 00:00", "200.00")):
        ingest(session, master.id, when, total)
    session.commit()
    add_rule(session, garden.site.id, {"name": "夜", "master": "EM-MIDNIGHT", "basis": "ratio",
                                       "accounts": {"101": 1, "102": 1}, "mode": "deduct"})
    session.commit()
    may = run_month_end(garden.site.id, "2026-05", actor="test")
    assert may.apportioned_fen == 5000 and may.problems == []
    assert sorted(i.amount_fen for i in items(session, "apportion").values()) == [2500, 2500]


def test_a_master_read_before_it_had_a_plan_is_priced_by_the_plan_at_month_end(session, garden):
    """The master's readings came in before its plan was set (billed unpriced): the month end prices
    them by the master's plan, 100.00 kWh x 1.00 = 100.00, split 50.00 / 50.00 by area 1:1."""
    master = _second_master(session, garden, "EM-LATEPLAN", plan=False)
    for when, total in (("2026-04-01 00:00", "1000.00"), ("2026-04-30 12:00", "1100.00"),
                        ("2026-05-01 00:00", "1100.00")):
        ingest(session, master.id, when, total)
    from core.tariffs.store import plan_for
    master.tariff_plan_id = plan_for(session, "电", site_id=garden.site.id, utility="electricity").id
    session.commit()
    add_rule(session, garden.site.id, {"name": "晚", "master": "EM-LATEPLAN", "basis": "ratio",
                                       "accounts": {"101": 1, "102": 1}, "mode": "deduct"})
    session.commit()
    april = run_month_end(garden.site.id, "2026-04", actor="test")
    assert april.apportioned_fen == 10000 and april.problems == []
    assert sorted(i.amount_fen for i in items(session, "apportion").values()) == [5000, 5000]
    assert validate(session) == []
