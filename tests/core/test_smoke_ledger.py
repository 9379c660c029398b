from core import cashdesk, ledger, ledger_check


def test_desk_recharge_moves_money_once_per_key(session, factory):
    acct = factory.account(balance_fen=1000)
    r1 = cashdesk.desk_recharge(session, acct.id, 500, key="k1")
    r2 = cashdesk.desk_recharge(session, acct.id, 500, key="k1")
    session.commit()
    assert r1.created and not r2.created
    assert ledger.account_balance(session, acct.id) == 1500
    assert ledger_check.validate(session) == []
