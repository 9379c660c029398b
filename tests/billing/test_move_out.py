"""Moving out: the leaving tenant pays up to a closing reading, the next one starts its own tier cycle."""
from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core import ledger
from core.billing import RawReading, ingest, ingest_batch
from core.db import new_session
from core.errors import ValidationError
from core.ledger.check import validate
from core.models import Account, BilledUsage, JournalEntry, LedgerAccount, Posting
from core.sites.accounts import MeterSpec, OpenAccountRequest, close_account, open_account
from tests.billing.conftest import BEIJING_TIERS, FLAT, at, kwh


def _next_tenant(session, account, **kw):
    """A new account on the same room and meter, on the same site plan."""
    meter = account.meters[0]
    plan = account.electricity_plan.name
    return open_account(session, OpenAccountRequest(
        room_id=account.room_id, tenant_name="李记", meters=(MeterSpec(serial=meter.serial),), tariff=plan,
        opening_balance_fen=100_000, **kw))


def test_the_next_tenant_starts_its_own_tier_cycle(session, billed_account):
    a, meter = billed_account(BEIJING_TIERS)
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("0"))
    ingest(session, meter.id, at("2026-07-20 09:00"), kwh("400"))  # A is at the top of tier 2
    session.commit()
    spent = 100_000 - ledger.account_balance(session, a.id)
    assert spent == 20332  # 240 x 0.4883 + 160 x 0.5383
    close_account(session, a.id, closing_totals={meter.serial: "410"}, at=at("2026-07-20 10:00"))
    session.commit()
    closing = session.scalars(select(BilledUsage).where(BilledUsage.account_id == a.id)
                              .order_by(BilledUsage.id.desc())).first()
    assert (closing.quantity, closing.amount_fen) == (Decimal(10), 788)  # A's last 10 kWh, at tier 3
    b = _next_tenant(session, a)
    session.commit()
    ingest(session, meter.id, at("2026-07-20 12:00"), kwh("420"))
    session.commit()
    # B's first 10 kWh are B's first of the month: tier 1 (before the fix: 15.77 for A's 10 and B's, at tier 3)
    assert ledger.account_balance(session, b.id) == 100_000 - 488
    assert validate(session) == []


def test_closing_needs_a_fresh_or_entered_reading(session, billed_account):
    a, meter = billed_account(FLAT)
    ingest(session, meter.id, at("2026-07-01 08:00"), kwh("100"))
    session.commit()
    with pytest.raises(ValidationError) as err:
        close_account(session, a.id, at=at("2026-07-01 10:00"))
    assert err.value.field == "closing_totals" and meter.serial in err.value.message
    assert "2026-07-01 08:00" in err.value.message and "enter its closing reading" in err.value.message
    session.rollback()
    assert session.get(Account, a.id).status == "open"
    assert ledger.account_balance(session, a.id) == 100_000
    # A reading at most 15 minutes old is the closing reading; so is one entered now.
    close_account(session, a.id, at=at("2026-07-01 08:15"))
    session.commit()
    assert session.get(Account, a.id).status == "closed"


@pytest.mark.parametrize("total, text", [("99", "below its last reading"), ("abc", "not a decimal")])
def test_a_bad_closing_reading_changes_nothing(session, billed_account, total, text):
    a, meter = billed_account(FLAT)
    ingest(session, meter.id, at("2026-07-01 08:00"), kwh("100"))
    session.commit()
    with pytest.raises(ValidationError) as err:
        close_account(session, a.id, closing_totals={meter.serial: total}, at=at("2026-07-01 10:00"))
    assert text in err.value.message
    session.rollback()
    assert session.get(Account, a.id).status == "open" and session.get(Account, a.id).meters == [meter]


def test_the_refund_on_closing_includes_the_closing_usage(session, billed_account):
    a, meter = billed_account(FLAT, balance_fen=10_000)
    ingest(session, meter.id, at("2026-07-01 08:00"), kwh("100"))
    session.commit()
    close_account(session, a.id, settlement="refund", closing_totals={meter.serial: "110"},
                  at=at("2026-07-01 18:00"))
    session.commit()
    settlement = session.scalar(select(JournalEntry).where(JournalEntry.kind == "settlement",
                                                           JournalEntry.account_id == a.id))
    wallet = ledger.wallet_of(session, a.id)
    paid = session.scalar(select(Posting.amount_fen).where(Posting.entry_id == settlement.id,
                                                           Posting.ledger_account_id == wallet.id))
    assert paid == -9400  # 100.00 less 10 kWh at 0.6
    assert ledger.account_balance(session, a.id) == 0
    assert validate(session) == []


def test_an_unpriced_meter_with_usage_waiting_cannot_close(session, factory):
    acct = factory.account(balance_fen=10_000)  # no plan at all
    meter = acct.meters[0]
    ingest(session, meter.id, at("2026-07-01 08:00"), kwh("100"))
    ingest(session, meter.id, at("2026-07-01 09:00"), kwh("105"))
    session.commit()
    with pytest.raises(ValidationError) as err:
        close_account(session, acct.id, at=at("2026-07-01 09:05"))
    assert "assign a electricity plan first" in err.value.message or "plan first" in err.value.message
    session.rollback()
    assert session.get(Account, acct.id).status == "open"


def test_a_poll_waiting_behind_a_close_bills_nobody(session, billed_account, pg_only):
    a, meter = billed_account(FLAT, balance_fen=10_000)
    ingest(session, meter.id, at("2026-07-01 08:00"), kwh("100"))
    session.commit()
    closer = new_session()
    poll: dict = {}
    try:
        close_account(closer, a.id, closing_totals={meter.serial: "110"}, at=at("2026-07-01 09:00"))

        def poller():
            with new_session() as s:
                poll["result"] = ingest_batch(s, [RawReading(meter.id, at("2026-07-01 09:15"), kwh("112"))])
                s.commit()
        t = threading.Thread(target=poller)
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), "the poll did not wait for the closing account's cursor lock"
        closer.commit()
        t.join(10)
    finally:
        closer.close()
    session.expire_all()
    assert poll["result"].results[0].status == "accepted" and poll["result"].billed_fen == 0
    last = session.scalars(select(BilledUsage).where(BilledUsage.meter_id == meter.id)
                           .order_by(BilledUsage.id.desc())).first()
    assert (last.account_id, last.quantity, last.amount_fen) == (None, Decimal(2), 0)
    assert ledger.account_balance(session, a.id) == 0  # refunded 94.00 at closing; nothing after
    assert session.scalar(select(func.count()).select_from(JournalEntry)
                          .where(JournalEntry.account_id == a.id, JournalEntry.kind == "consumption")) == 1
    assert session.scalar(select(LedgerAccount.balance_fen).where(LedgerAccount.account_id == a.id)) == 0


def test_a_meter_left_with_a_tenants_tier_state_starts_over_for_the_next(session, billed_account):
    """Meters freed before closing took a reading (data from before revision 0004) carry the old
    tenant's cycle; the next account opened on them still starts its own."""
    from sqlalchemy import update

    from core.models import Meter, MeterBillingState
    a, meter = billed_account(BEIJING_TIERS)
    ingest(session, meter.id, at("2026-07-01 00:00"), kwh("0"))
    ingest(session, meter.id, at("2026-07-20 09:00"), kwh("400"))
    session.commit()
    # as the old close_account left it: closed, meter detached, tier state untouched
    session.execute(update(Account).where(Account.id == a.id).values(status="closed"))
    session.execute(update(Meter).where(Meter.id == meter.id).values(account_id=None))
    session.commit()
    assert session.get(MeterBillingState, meter.id).cycle_used == Decimal(400)
    b = _next_tenant(session, a)
    session.commit()
    ingest(session, meter.id, at("2026-07-20 12:00"), kwh("410"))
    session.commit()
    assert ledger.account_balance(session, b.id) == 100_000 - 488
