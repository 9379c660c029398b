"""Bills made from billed usage and month-end items, confirmed into the ledger once, paid, credited."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from core.bills import generate, service
from core.errors import Conflict, InsufficientFunds, ValidationError
from core.ledger import account_balance, cashdesk
from core.ledger.check import validate
from core.ledger.receivables import RECEIVABLE
from core.models import Bill, BilledUsage, BillLine, JournalEntry, LedgerAccount, MonthItem, Posting, Site
from core.reports.check import validate as validate_rollups
from core.sites.accounts import MeterSpec
from tests.bills.conftest import item


def gen(session, acct, period="2026-04", preview=False):
    res = generate.generate_for_period(session, acct.site_id, period, preview=preview, actor="test", front="cli")
    session.commit()
    return res


def balances(session):
    return {code: int(session.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0))
                                     .join(LedgerAccount, LedgerAccount.id == Posting.ledger_account_id)
                                     .where(LedgerAccount.code == code)))
            for code in session.scalars(select(LedgerAccount.code).where(LedgerAccount.kind != "wallet"))}


def clean(session):
    return validate(session) + validate_rollups(session)


def test_a_bill_has_a_line_per_utility_and_tou_period_plus_charges_and_apportionment(session, shop):
    item(session, shop)  # 物业费 123.45, bill mode
    item(session, shop, kind="apportion", code="common-e", name="公摊电费", amount_fen=1001)
    item(session, shop, code="rent", name="房租", amount_fen=99999, mode="deduct")  # deducted elsewhere, not billed
    item(session, shop, code="parking", name="停车", amount_fen=500, period="2026-05")  # another month
    session.commit()

    preview = gen(session, shop, preview=True)
    assert preview.count == 1 and session.scalar(select(func.count()).select_from(Bill)) == 0

    res = gen(session, shop)
    assert res.count == 1
    lines = {(ln["kind"], ln["code"]): ln["amount_fen"] for ln in res.lines}
    # peak 40 x 1.02 = 40.80; flat 35 x 0.60 = 21.00; valley 25 x 0.228 = 5.70; water 3 m3 x 5 = 15.00
    assert lines == {("energy", "electricity:peak"): 4080, ("energy", "electricity:flat"): 2100,
                     ("energy", "electricity:valley"): 570, ("energy", "water:all"): 1500,
                     ("charge", "property"): 12345, ("apportion", "common-e"): 1001}
    assert [(ln["room"], ln["kind"], ln["code"], ln["amount_fen"]) for ln in res.lines] == \
        [(ln["room"], ln["kind"], ln["code"], ln["amount_fen"]) for ln in preview.lines]
    bill = session.scalar(select(Bill))
    assert bill.state == "draft" and bill.total_fen == 4080 + 2100 + 570 + 1500 + 12345 + 1001 == 21596
    assert bill.bill_no == f"B{shop.site_id}-202604-00001"
    assert (bill.period_start, bill.period_end) == (date(2026, 4, 1), date(2026, 4, 30))
    # the April intervals are on the bill; the one closed at 00:00 on 1 May (site time) is not
    usage = session.execute(select(BilledUsage.ended_at, BilledUsage.bill_id).order_by(BilledUsage.ended_at)).all()
    assert [b for _t, b in usage] == [bill.id, bill.id, bill.id, None]
    assert session.scalar(select(MonthItem.bill_no).where(MonthItem.code == "property")) == bill.bill_no
    assert session.scalar(select(MonthItem.bill_no).where(MonthItem.code == "rent")) is None
    assert session.scalar(select(MonthItem.bill_no).where(MonthItem.code == "parking")) is None
    assert session.scalar(select(func.count()).select_from(JournalEntry).where(JournalEntry.kind != "opening")) == 0

    again = gen(session, shop)
    assert again.count == 0 and session.scalar(select(func.count()).select_from(Bill)) == 1


def test_confirm_posts_the_receivable_once_and_revenue_per_line(session, shop):
    item(session, shop)
    gen(session, shop)
    before = balances(session)
    done = service.confirm(session, shop.site_id, "2026-04", actor="manager:a", front="cli")
    session.commit()
    assert done.count == 1 and done.total_fen == 4080 + 2100 + 570 + 1500 + 12345
    bill = session.scalar(select(Bill))
    assert bill.state == "confirmed" and bill.entry_id is not None
    assert bill.due_date == service.site_today(session.get(Site, bill.site_id)) + timedelta(days=15)
    entry = session.get(JournalEntry, bill.entry_id)
    assert entry.idempotency_key == f"bill:{bill.bill_no}" and entry.account_id == shop.id
    after = balances(session)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
    assert delta == {RECEIVABLE: -20595, "revenue:electricity": 6750, "revenue:water": 1500,
                     "revenue:charge:property": 12345}
    assert account_balance(session, shop.id) == 0  # the wallet is untouched
    assert service.confirm(session, shop.site_id, "2026-04", actor="manager:b", front="cli").count == 0
    session.commit()
    assert session.scalar(select(func.count()).select_from(JournalEntry).where(
        JournalEntry.idempotency_key.like("bill:%"))) == 1
    assert clean(session) == []


def test_states_move_from_confirmed_to_partly_paid_to_paid(session, shop):
    gen(session, shop)  # 67.50 + 15.00 = 82.50
    service.confirm(session, shop.site_id, "2026-04", actor="m", front="cli")
    session.commit()
    no = session.scalar(select(Bill.bill_no))
    service.pay_at_desk(session, no, 3000, method="cash", key="desk-1", actor="m", front="admin")
    session.commit()
    bill = session.scalar(select(Bill))
    assert (bill.state, bill.paid_fen, bill.open_fen) == ("partly_paid", 3000, 5250)
    # the same form twice moves money once
    assert service.pay_at_desk(session, no, 3000, method="cash", key="desk-1", actor="m", front="admin").created is False
    session.commit()
    with pytest.raises(ValidationError):
        service.pay_at_desk(session, no, 5251, method="transfer", key="desk-2", actor="m", front="admin")
    session.rollback()
    with pytest.raises(InsufficientFunds):
        service.pay_at_desk(session, no, 5250, method="wallet", key="desk-3", actor="m", front="admin")
    session.rollback()
    cashdesk.desk_recharge(session, shop.id, 6000, key="topup")
    service.pay_at_desk(session, no, 5250, method="wallet", key="desk-4", actor="m", front="admin")
    session.commit()
    bill = session.scalar(select(Bill))
    assert (bill.state, bill.paid_fen, bill.open_fen) == ("paid", 8250, 0) and bill.paid_at is not None
    assert account_balance(session, shop.id) == 750
    assert balances(session)[RECEIVABLE] == 0
    with pytest.raises(Conflict):
        service.pay_at_desk(session, no, 1, method="cash", key="desk-5", actor="m", front="admin")
    session.rollback()
    assert clean(session) == []


def test_a_draft_is_not_paid_and_a_wrong_method_is_refused(session, shop):
    gen(session, shop)
    no = session.scalar(select(Bill.bill_no))
    with pytest.raises(Conflict):
        service.pay_at_desk(session, no, 100, method="cash", key="d1", actor="m", front="admin")
    session.rollback()
    with pytest.raises(ValidationError):
        service.pay_at_desk(session, no, 100, method="cheque", key="d2", actor="m", front="admin")
    session.rollback()
    assert session.scalar(select(func.count()).select_from(JournalEntry).where(JournalEntry.kind == "payment")) == 0


def test_overdue_is_an_owed_bill_past_its_due_date(session, shop):
    gen(session, shop)
    service.confirm(session, shop.site_id, "2026-04", actor="m", front="cli")
    session.commit()
    bill = session.scalar(select(Bill))
    site = session.get(Site, shop.site_id)
    today = service.site_today(site)
    assert bill.due_date == today + timedelta(days=15)
    assert not service.is_overdue(bill, today) and service.is_overdue(bill, today + timedelta(days=16))
    assert [r.bill.bill_no for r in service.list_bills(session, site, "2026-04", state="overdue")] == []
    bill.due_date = today - timedelta(days=1)  # as if confirmed long ago (test only)
    session.commit()
    rows = service.list_bills(session, site, "2026-04", state="overdue")
    assert [r.bill.bill_no for r in rows] == [bill.bill_no] and rows[0].overdue and rows[0].days_overdue == 1
    assert [r.bill.bill_no for r in service.list_bills(session, site, "2026-04", state="confirmed")] == [bill.bill_no]
    assert service.list_bills(session, site, "2026-04", state="paid") == []


def test_a_credit_note_takes_back_a_line_and_what_is_owed(session, shop):
    item(session, shop)
    gen(session, shop)
    service.confirm(session, shop.site_id, "2026-04", actor="m", front="cli")
    session.commit()
    bill = session.scalar(select(Bill).where(Bill.kind == "bill"))
    line = next(ln for ln in service.detail(session, bill.bill_no).row.lines if ln.code == "property")
    before = balances(session)
    credit = service.credit_note(session, bill.bill_no, line.line_no, 2345, reason="面积更正", actor="m", front="admin")
    session.commit()
    assert credit.kind == "credit" and credit.corrects_id == bill.id and credit.bill_no.startswith(f"C{shop.site_id}-")
    session.refresh(bill)
    assert (bill.total_fen, bill.credited_fen, bill.open_fen, bill.state) == (20595, 2345, 18250, "partly_paid")
    after = balances(session)
    assert after["revenue:charge:property"] - before["revenue:charge:property"] == -2345
    assert after[RECEIVABLE] - before[RECEIVABLE] == 2345
    with pytest.raises(ValidationError):  # 123.45 - 23.45 = 100.00 left on the line
        service.credit_note(session, bill.bill_no, line.line_no, 10001, reason="x", actor="m", front="admin")
    session.rollback()
    # pay the rest, then credit the line once more: the bill is paid, so it goes to the wallet
    service.pay_at_desk(session, bill.bill_no, 18250, method="cash", key="c-pay", actor="m", front="admin")
    service.credit_note(session, bill.bill_no, line.line_no, 10000, reason="免收", actor="m", front="admin")
    session.commit()
    session.refresh(bill)
    assert (bill.state, bill.open_fen) == ("paid", 0)
    assert account_balance(session, shop.id) == 10000
    assert clean(session) == []
    # the detail page's data traces both credit notes to the bill
    d = service.detail(session, bill.bill_no)
    assert [c.total_fen for c in d.credits] == [2345, 10000]
    # the order overview shows each credit note's whole amount (owed less, or to the wallet)
    from core.bills.service import site_today
    from core.reports import finance
    site = session.get(Site, shop.site_id)
    today = site_today(site)
    report = finance.orders(session, site, today - timedelta(days=1), today + timedelta(days=1), kind="adjustment")
    assert sorted(r.amount_fen for r in report.rows) == [2345, 10000]


def test_a_correction_bill_is_a_new_numbered_draft_pointing_at_the_bill(session, shop):
    gen(session, shop)
    service.confirm(session, shop.site_id, "2026-04", actor="m", front="cli")
    session.commit()
    bill = session.scalar(select(Bill))
    new = service.correction_bill(session, bill.bill_no, [{"kind": "charge", "code": "repair", "name": "维修费",
                                                          "amount_fen": 5000, "revenue_code": "revenue:charge:repair"}],
                                  reason="漏收维修费", actor="m", front="admin")
    session.commit()
    assert new.state == "draft" and new.corrects_id == bill.id and new.bill_no == f"B{shop.site_id}-202604-00002"
    assert service.confirm(session, shop.site_id, "2026-04", actor="m", front="cli").count == 1
    session.commit()
    session.refresh(bill)
    assert bill.total_fen == 8250 and bill.state == "confirmed"  # the first bill is never edited
    listed = {r.bill.bill_no: r.as_json(with_lines=False)["corrects"]
              for r in service.list_bills(session, session.get(Site, shop.site_id), "2026-04")}
    assert listed == {bill.bill_no: None, new.bill_no: bill.bill_no}
    assert clean(session) == []


def test_ledger_check_sees_a_bill_that_disagrees_with_the_receivable(session, shop):
    gen(session, shop)
    service.confirm(session, shop.site_id, "2026-04", actor="m", front="cli")
    session.commit()
    assert [p for p in validate(session) if p.check == "bills"] == []
    bill = session.scalar(select(Bill))
    bill.paid_fen = 100  # as if paid without an entry
    session.commit()
    problems = [p for p in validate(session) if p.check == "bills"]
    assert len(problems) == 1 and "owe 8150 fen" in problems[0].message


def test_tiered_usage_gets_a_line_per_tier_split_to_the_fen(session, factory):
    from core.sites.accounts import MeterSpec
    from core.tariffs.store import add_plan
    from tests.billing.conftest import BEIJING_TIERS
    from tests.bills.conftest import reading
    site = factory.site(name="Tiers")
    add_plan(session, "bj", BEIJING_TIERS, site_id=site.id)
    acct = factory.account(site=site, billing_mode="postpaid", tariff="bj", meters=(MeterSpec(serial="TIER-1"),))
    m = acct.meters[0]
    for when, total in (("2026-07-01 00:00", "0"), ("2026-07-15 00:00", "300"), ("2026-07-31 00:00", "500")):
        reading(session, m.id, when, total)
    session.commit()
    res = gen(session, acct, "2026-07")
    # 240 x 0.4883 = 117.192, 160 x 0.5383 = 86.128, 100 x 0.7883 = 78.83: 282.15 in all (28215 fen, as billed);
    # split by largest remainder: 11719.2 -> 11719, 8612.8 -> 8613 (the leftover fen), 7883.0 -> 7883
    assert [(ln["code"], ln["amount_fen"]) for ln in res.lines] == [
        ("electricity:tier1", 11719), ("electricity:tier2", 8613), ("electricity:tier3", 7883)]
    names = [ln.name for ln in service.detail(session, res.bill_nos[0]).row.lines]
    assert names == ["电费（第1阶梯）", "电费（第2阶梯）", "电费（第3阶梯）"]


def test_generating_without_lines_makes_the_same_bills_and_totals(session, shop):
    item(session, shop)  # 物业费 123.45, bill mode
    item(session, shop, kind="apportion", code="common-e", name="公摊电费", amount_fen=1001)
    session.commit()
    preview = gen(session, shop, preview=True)
    res = generate.generate_for_period(session, shop.site_id, "2026-04", preview=False, actor="test", front="cli",
                                       with_lines=False)
    session.commit()
    # 40.80 + 21.00 + 5.70 + 15.00 + 123.45 + 10.01
    assert (res.count, res.total_fen, res.bill_nos) == (1, 21596, [f"B{shop.site_id}-202604-00001"])
    assert (preview.count, preview.total_fen) == (res.count, res.total_fen)
    bill = session.scalar(select(Bill))
    assert bill.total_fen == 21596
    assert session.scalar(select(func.count()).select_from(BillLine).where(BillLine.bill_id == bill.id)) == 6
    assert session.scalar(select(MonthItem.bill_no).where(MonthItem.code == "property")) == bill.bill_no


def test_a_vacant_shop_gets_no_bill_and_spends_no_number_until_it_uses_something(session, shop, factory):
    from tests.bills.conftest import reading
    room = factory.room(session.get(Site, shop.site_id), number="102")
    vacant = factory.account(site=session.get(Site, shop.site_id), room=room, billing_mode="postpaid", tariff="tou",
                             meters=(MeterSpec(serial="SHOP2-E", kind="electricity"),))
    meter = vacant.meters[0]
    reading(session, meter.id, "2026-03-31 23:00", "500", "100", "200", "200")
    reading(session, meter.id, "2026-04-30 23:00", "500", "100", "200", "200")  # April: nothing used
    session.commit()
    assert session.scalar(select(func.count()).select_from(BilledUsage).where(BilledUsage.account_id == vacant.id))
    res = gen(session, shop)
    assert res.count == 1 and res.bill_nos == [f"B{shop.site_id}-202604-00001"]  # no gap for the vacant shop
    assert session.scalar(select(func.count()).select_from(Bill).where(Bill.account_id == vacant.id)) == 0
    # its rows point at no bill: unclaimed, not claimed by a bill that was never made
    assert session.scalars(select(BilledUsage.bill_id).where(BilledUsage.account_id == vacant.id)).all() == [None]
    # in May it uses 10 kWh flat: the May bill takes the April row too, and its lines are May's
    reading(session, meter.id, "2026-05-20 12:00", "510", "100", "210", "200")
    session.commit()
    may = gen(session, vacant, period="2026-05")
    assert may.count == 2  # the shop's 1 May interval and the once-vacant shop
    bill = session.scalar(select(Bill).where(Bill.account_id == vacant.id))
    assert bill.bill_no.endswith("-202605-00002") or bill.bill_no.endswith("-202605-00001")
    assert bill.total_fen == 600  # 10 kWh x 0.60
    assert set(session.scalars(select(BilledUsage.bill_id).where(BilledUsage.account_id == vacant.id))) == {bill.id}
    assert clean(session) == []
