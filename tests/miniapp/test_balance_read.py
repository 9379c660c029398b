"""The hot balance read: right value for a bound openid, nothing for others, survives a dead connection."""
from core.ledger import cashdesk
from core.models import TenantBinding
from core.sites import selfservice


def test_bound_balance_is_read_for_the_bound_openid_only(session, factory):
    acct = factory.account(balance_fen=4200)
    session.add(TenantBinding(openid="o-alice", account_id=acct.id, tenant_id=acct.tenant_id))
    session.commit()
    assert selfservice.bound_balance_fen("o-alice", acct.id) == 4200
    assert selfservice.bound_balance_fen("o-mallory", acct.id) is None
    assert selfservice.bound_balance_fen("o-alice", acct.id + 999) is None
    cashdesk.desk_recharge(session, acct.id, 800)
    session.commit()
    assert selfservice.bound_balance_fen("o-alice", acct.id) == 5000


def test_a_dead_pooled_connection_is_replaced_transparently(pg_only, session, factory):
    acct = factory.account(balance_fen=100)
    session.add(TenantBinding(openid="o-bob", account_id=acct.id, tenant_id=acct.tenant_id))
    session.commit()
    assert selfservice.bound_balance_fen("o-bob", acct.id) == 100
    engine = selfservice._read_engine()
    raw = engine.raw_connection()
    pid = raw.dbapi_connection.info.backend_pid
    raw.close()
    from sqlalchemy import text
    session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    session.commit()
    assert selfservice.bound_balance_fen("o-bob", acct.id) == 100
