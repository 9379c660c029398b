"""Random sequences of money operations, with duplicate deliveries of the same cause."""
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InsufficientFunds, ValidationError
from core.ledger import cashdesk
from core.ledger import check as ledger_check
from core.ledger import journal as ledger
from core.models import JournalEntry

amounts = st.integers(min_value=1, max_value=50_000)
keys = st.sampled_from([f"cause-{i}" for i in range(6)])  # a small pool: duplicates are common
ops = st.lists(st.one_of(
    st.tuples(st.just("recharge"), amounts, keys),
    st.tuples(st.just("consume"), amounts, keys),
    st.tuples(st.just("refund"), amounts, keys),
    st.tuples(st.just("reverse"), st.integers(min_value=0, max_value=30), keys),
), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(ops)
def test_every_sequence_keeps_the_books_exact(session, factory, sequence):
    acct = factory.account(balance_fen=10_000)
    expected = 10_000
    seen: dict[str, int] = {}      # idempotency key -> wallet delta it caused
    entries: list[int] = []
    reversed_: set[int] = set()
    tag = f"a{acct.id}"
    for op, value, key in sequence:
        key = f"{tag}:{op}:{key}"
        try:
            if op == "recharge":
                r = cashdesk.desk_recharge(session, acct.id, value, key=key)
                delta = value
            elif op == "consume":
                r = cashdesk.consume(session, acct.id, value, key=key)
                delta = -value
            elif op == "refund":
                r = cashdesk.refund(session, acct.id, value, key=key)
                delta = -value
            else:
                if not entries:
                    continue
                target = entries[value % len(entries)]
                original = session.get(JournalEntry, target)
                if original.kind == "reversal":
                    continue
                r = cashdesk.reverse_entry(session, target)
                wallet = ledger.wallet_of(session, acct.id)
                delta = -sum(p.amount_fen for p in original.postings if p.ledger_account_id == wallet.id)
                key = f"reversal:{target}"
                if target in reversed_:
                    assert not r.created
                    continue
                reversed_.add(target)
        except InsufficientFunds:
            assert op == "refund" and value > expected
            session.rollback()
            continue
        session.commit()
        if key in seen:
            assert not r.created, "a duplicate cause moved money again"
        else:
            assert r.created or op == "reverse"
            seen[key] = delta
            expected += delta
            entries.append(r.entry_id)
        assert ledger.account_balance(session, acct.id) == expected
    wallet = ledger.wallet_of(session, acct.id)
    assert ledger.balance_from_postings(session, wallet.id) == expected
    assert ledger_check.validate(session) == []


def test_an_unbalanced_entry_is_refused(session, factory):
    acct = factory.account()
    wallet = ledger.wallet_of(session, acct.id)
    cash = ledger.system_account(session, "cash:desk")
    import pytest
    with pytest.raises(ValidationError, match="sum to zero"):
        ledger.post(session, key="bad", kind="recharge", legs=[ledger.Leg(wallet.id, 100), ledger.Leg(cash.id, -99)])
    with pytest.raises(ValidationError, match="integer fen"):
        ledger.post(session, key="bad2", kind="recharge", legs=[ledger.Leg(wallet.id, 1.5), ledger.Leg(cash.id, -1.5)])
    session.rollback()
    assert ledger.find_entry(session, "bad") is None


def test_a_post_inside_a_unit_that_rolls_back_leaves_nothing(session, factory):
    """The post is the unit's first write (before it only reads): on SQLite its savepoint must still sit
    inside the unit's transaction, so the unit's rollback takes the entry back (PostgreSQL does this anyway)."""
    from sqlalchemy import func, select

    from core.db import new_session
    from core.ledger import account_balance
    acct = factory.account(balance_fen=1_000)
    ledger.system_account(session, "cash:desk")
    session.commit()
    with new_session() as unit:
        assert account_balance(unit, acct.id) == 1_000  # a read first: no transaction open yet on pysqlite
        cashdesk.desk_recharge(unit, acct.id, 500, key="unit-then-fails", actor="test")
        unit.rollback()  # what a failure after the post does
    with new_session() as s:
        assert s.scalar(select(func.count()).select_from(JournalEntry)
                        .where(JournalEntry.idempotency_key == "unit-then-fails")) == 0
        assert account_balance(s, acct.id) == 1_000
