"""Desk money services: bad input changes nothing; good input moves money once."""
import pytest
from sqlalchemy import func, select

from core import ledger
from core.errors import AccountClosed, InsufficientFunds, NotFound, ValidationError
from core.ledger import cashdesk
from core.ledger import check as ledger_check
from core.models import AuditLog, JournalEntry
from core.sites import accounts


def entry_count(session):
    return session.scalar(select(func.count()).select_from(JournalEntry))


@pytest.mark.parametrize("amount", [0, -1, -5000])
def test_zero_or_negative_recharge_is_refused_and_changes_nothing(session, factory, amount):
    acct = factory.account(balance_fen=1000)
    before = entry_count(session)
    with pytest.raises(ValidationError, match="positive"):
        cashdesk.desk_recharge(session, acct.id, amount)
    session.rollback()
    assert entry_count(session) == before
    assert ledger.account_balance(session, acct.id) == 1000


def test_amount_above_the_configured_cap_is_refused(session, factory, settings_env):
    acct = factory.account()
    settings_env(METERPAY_MAX_AMOUNT="100")
    with pytest.raises(ValidationError, match="above the limit"):
        cashdesk.desk_recharge(session, acct.id, 10001)
    session.rollback()
    cashdesk.desk_recharge(session, acct.id, 10000)
    session.commit()
    assert ledger.account_balance(session, acct.id) == 10000


def test_float_amounts_are_refused(session, factory):
    acct = factory.account()
    with pytest.raises(ValidationError):
        cashdesk.desk_recharge(session, acct.id, 10.5)


def test_unknown_account_is_not_found(session):
    with pytest.raises(NotFound):
        cashdesk.desk_recharge(session, 999999, 100)


def test_closed_account_takes_no_money(session, factory):
    acct = factory.account(balance_fen=500)
    accounts.close_account(session, acct.id)
    session.commit()
    before = entry_count(session)
    with pytest.raises(AccountClosed):
        cashdesk.desk_recharge(session, acct.id, 100)
    session.rollback()
    assert entry_count(session) == before


def test_refund_never_overdraws(session, factory):
    acct = factory.account(balance_fen=1000)
    with pytest.raises(InsufficientFunds):
        cashdesk.refund(session, acct.id, 1001)
    session.rollback()
    cashdesk.refund(session, acct.id, 1000, key="refund-all")
    session.commit()
    assert ledger.account_balance(session, acct.id) == 0


def test_refund_to_an_unknown_target_is_refused(session, factory):
    acct = factory.account(balance_fen=1000)
    with pytest.raises(ValidationError, match="refund target"):
        cashdesk.refund(session, acct.id, 100, to="pocket")


def test_adjustment_needs_a_reason_and_may_go_down(session, factory):
    acct = factory.account(balance_fen=1000)
    with pytest.raises(ValidationError, match="reason"):
        cashdesk.adjust(session, acct.id, 100, reason=" ")
    cashdesk.adjust(session, acct.id, -300, reason="meter misread in March")
    session.commit()
    assert ledger.account_balance(session, acct.id) == 700


def test_reversal_undoes_an_entry_once(session, factory):
    acct = factory.account(balance_fen=1000)
    r = cashdesk.desk_recharge(session, acct.id, 2500)
    session.commit()
    first = cashdesk.reverse_entry(session, r.entry_id)
    again = cashdesk.reverse_entry(session, r.entry_id)
    session.commit()
    assert first.created and not again.created
    assert ledger.account_balance(session, acct.id) == 1000
    with pytest.raises(ValidationError, match="reversal is not reversed"):
        cashdesk.reverse_entry(session, first.entry_id)


def test_consumption_may_run_into_arrears(session, factory):
    acct = factory.account(balance_fen=100)
    cashdesk.consume(session, acct.id, 250, key="reading:1")
    session.commit()
    assert ledger.account_balance(session, acct.id) == -150
    assert ledger_check.validate(session) == []


def test_money_actions_are_audited_with_actor_and_front(session, factory):
    acct = factory.account()
    cashdesk.desk_recharge(session, acct.id, 100, actor="manager:alice", front="admin")
    session.commit()
    row = session.scalars(select(AuditLog).where(AuditLog.action == "recharge")).one()
    assert (row.actor, row.front, row.account_id, row.detail["amount"]) == ("manager:alice", "admin", acct.id, "1.00")


def test_close_account_refunds_the_balance_and_frees_the_meters(session, factory):
    acct = factory.account(balance_fen=4321)
    meter_ids = [m.id for m in acct.meters]
    accounts.close_account(session, acct.id, settlement="refund")
    session.commit()
    assert ledger.account_balance(session, acct.id) == 0
    assert acct.status == "closed"
    from core.models import Meter
    assert all(session.get(Meter, mid).account_id is None for mid in meter_ids)
    settlement = session.scalars(select(JournalEntry).where(JournalEntry.kind == "settlement")).one()
    assert sorted(p.amount_fen for p in settlement.postings) == [-4321, 4321]


def test_close_account_writes_off_arrears(session, factory):
    acct = factory.account(balance_fen=100)
    cashdesk.consume(session, acct.id, 600, key="r1")
    accounts.close_account(session, acct.id, settlement="writeoff")
    session.commit()
    assert ledger.account_balance(session, acct.id) == 0
    assert ledger.balance_from_postings(session, ledger.system_account(session, "equity:bad-debt").id) == -500
    assert ledger_check.validate(session) == []
