"""The per-process balance cache (core/balance_cache.py): exact through LISTEN/NOTIFY.

"Another process" is played by a write in another connection with this process's own
after-commit invalidation switched off, so only the notification can tell the cache.
"""
from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from core.db import session_scope
from core.ledger import balance_cache, cashdesk, system_account, wallet_of
from core.ledger.bulk import Consumption, post_consumptions
from core.models import TenantBinding
from core.sites import selfservice


def poll(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def the_cache() -> balance_cache.BalanceCache:
    engine, key = selfservice._read_engine_and_key()
    cache = balance_cache.cache_for(key, lambda: engine.dialect.create_connect_args(engine.url))
    assert cache is not None
    assert poll(lambda: cache.ready), "the listener never came up"
    return cache


@pytest.fixture
def bound(pg_only, session, factory):
    """An account with 10.00 yuan bound to openid o-1, its balance read once (so cached)."""
    acct = factory.account(balance_fen=1000)
    session.add(TenantBinding(openid="o-1", account_id=acct.id, tenant_id=acct.tenant_id))
    session.commit()
    cache = the_cache()
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1000
    return acct, cache


@pytest.fixture
def notifications_only(monkeypatch):
    """Writes in this process no longer drop entries at commit: only the NOTIFY path can."""
    monkeypatch.setattr(balance_cache, "_invalidate_locally", lambda kind, ids: None)


def set_balance_behind_the_ledgers_back(session, account_id: int, fen: int) -> None:
    session.execute(text("UPDATE ledger_accounts SET balance_fen = :fen WHERE account_id = :a"),
                    {"fen": fen, "a": account_id})
    session.commit()


def test_a_repeated_read_is_served_from_the_cache(bound, session):
    acct, cache = bound
    hits = cache.hits
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1000
    assert cache.hits == hits + 1
    # Proof that no query ran: a change that bypasses the ledger (no notification) is not seen.
    set_balance_behind_the_ledgers_back(session, acct.id, 777)
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1000
    # Someone else, or another account, is never answered from it.
    assert selfservice.bound_balance_fen("o-2", acct.id) is None
    assert selfservice.bound_balance_fen("o-1", acct.id + 999) is None


def test_a_recharge_committed_elsewhere_is_read_after_its_notification(bound, session, notifications_only):
    acct, cache = bound
    seen = cache.notifications
    cashdesk.desk_recharge(session, acct.id, 500)
    session.commit()
    assert poll(lambda: selfservice.bound_balance_fen("o-1", acct.id) == 1500)
    assert cache.notifications > seen
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1500


def test_a_consumption_and_a_bulk_batch_committed_elsewhere_are_read_after_their_notifications(
        bound, session, notifications_only):
    acct, cache = bound
    cashdesk.consume(session, acct.id, 100, key="use:1")
    session.commit()
    assert poll(lambda: selfservice.bound_balance_fen("o-1", acct.id) == 900)
    wallet = wallet_of(session, acct.id)
    revenue = system_account(session, "revenue:electricity")
    items = [Consumption(key=f"bulk:{i}", account_id=acct.id, wallet_id=wallet.id, revenue_id=revenue.id,
                         amount_fen=1) for i in range(60)]  # over COPY_THRESHOLD: the COPY path
    post_consumptions(session, items)
    session.commit()
    assert poll(lambda: selfservice.bound_balance_fen("o-1", acct.id) == 840)


def test_a_rolled_back_posting_changes_nothing_and_a_local_one_is_read_at_once(bound, session):
    acct, cache = bound
    cashdesk.desk_recharge(session, acct.id, 500)
    session.rollback()
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1000
    with session_scope() as s:
        cashdesk.desk_recharge(s, acct.id, 300)
    # This process's own write: dropped at commit, before any notification arrives.
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1300


def test_a_value_read_before_a_commit_is_not_stored_after_its_notification(bound, session, notifications_only):
    acct, cache = bound
    cache.clear()
    token = cache.begin()  # a read starts ...
    seen = cache.notifications
    cashdesk.desk_recharge(session, acct.id, 500)
    session.commit()
    assert poll(lambda: cache.notifications > seen)
    cache.store(token, "o-1", acct.id, wallet_of(session, acct.id).id, 1000)  # ... and ends with the old value
    assert cache.get("o-1", acct.id) is None
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1500


def test_unbinding_revokes_access_at_once_here_and_after_the_notification_elsewhere(bound, session, monkeypatch):
    acct, cache = bound
    with session_scope() as s:
        selfservice.unbind(s, "o-1", acct.id)
    assert selfservice.bound_balance_fen("o-1", acct.id) is None
    # Bound again, cached again, then unbound "in another process".
    session.add(TenantBinding(openid="o-1", account_id=acct.id, tenant_id=acct.tenant_id))
    session.commit()
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1000
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1000
    monkeypatch.setattr(balance_cache, "_invalidate_locally", lambda kind, ids: None)
    with session_scope() as s:
        selfservice.unbind(s, "o-1", acct.id)
    assert poll(lambda: selfservice.bound_balance_fen("o-1", acct.id) is None)


def test_without_the_listener_every_read_goes_to_the_database(bound, session, monkeypatch):
    acct, cache = bound
    connections = cache.connections

    def refuse():
        raise OSError("listener kept down by the test")
    monkeypatch.setattr(cache, "_connect", refuse)
    session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": cache.backend_pid})
    session.commit()
    assert poll(lambda: not cache.ready)
    # Changes that send no notification at all are read at once: nothing is cached meanwhile.
    set_balance_behind_the_ledgers_back(session, acct.id, 4321)
    assert selfservice.bound_balance_fen("o-1", acct.id) == 4321
    set_balance_behind_the_ledgers_back(session, acct.id, 1234)
    assert selfservice.bound_balance_fen("o-1", acct.id) == 1234
    monkeypatch.undo()
    assert poll(lambda: cache.ready and cache.connections > connections, timeout=10)
    # Back on, and empty: the first read is fresh, the next one a hit.
    set_balance_behind_the_ledgers_back(session, acct.id, 2222)
    assert selfservice.bound_balance_fen("o-1", acct.id) == 2222
    hits = cache.hits
    assert selfservice.bound_balance_fen("o-1", acct.id) == 2222
    assert cache.hits == hits + 1


def test_entries_expire_after_the_ttl_and_the_cache_can_be_turned_off(pg_only, session, factory, monkeypatch):
    acct = factory.account(balance_fen=1000)
    session.add(TenantBinding(openid="o-1", account_id=acct.id, tenant_id=acct.tenant_id))
    session.commit()
    balance_cache.reset()
    monkeypatch.setenv("METERPAY_BALANCE_CACHE_TTL", "0")
    try:
        cache = the_cache()
        assert selfservice.bound_balance_fen("o-1", acct.id) == 1000
        set_balance_behind_the_ledgers_back(session, acct.id, 600)
        assert selfservice.bound_balance_fen("o-1", acct.id) == 600
        assert cache.hits == 0
        monkeypatch.setenv("METERPAY_BALANCE_CACHE", "0")
        engine, key = selfservice._read_engine_and_key()
        assert balance_cache.cache_for(key, lambda: engine.dialect.create_connect_args(engine.url)) is None
        assert selfservice.bound_balance_fen("o-1", acct.id) == 600
    finally:
        monkeypatch.undo()
        balance_cache.reset()


def test_an_unreadable_notification_empties_the_cache(bound, session):
    acct, cache = bound
    seen = cache.notifications
    session.execute(text("SELECT pg_notify(:c, 'garbage')"), {"c": balance_cache.CHANNEL})
    session.commit()
    assert poll(lambda: cache.notifications > seen)
    assert cache.get("o-1", acct.id) is None


def test_many_wallets_go_out_in_payloads_postgresql_accepts_and_all_arrive(bound, session):
    acct, cache = bound
    ids = [2**62 + i for i in range(1500)] + [1, 22, 333]
    payloads = balance_cache._payloads("w", sorted(ids))
    assert all(len(p.encode()) < 8000 for p in payloads) and len(payloads) > 1
    assert sorted(int(x) for p in payloads for x in p[1:].split(",")) == sorted(ids)
    seen = cache.notifications
    wallet_id = wallet_of(session, acct.id).id
    balance_cache.wallets_changed(session, ids + [wallet_id])
    session.commit()
    assert poll(lambda: cache.notifications >= seen + len(payloads))
    assert cache.get("o-1", acct.id) is None


def test_orm_writes_that_forget_to_notify_still_do(bound, session, notifications_only):
    from sqlalchemy import select
    acct, cache = bound
    wallet = wallet_of(session, acct.id)
    wallet.balance_fen = 4040  # not through the ledger: the safety net notifies anyway
    session.commit()
    assert poll(lambda: selfservice.bound_balance_fen("o-1", acct.id) == 4040)
    binding = session.scalar(select(TenantBinding).where(TenantBinding.openid == "o-1"))
    binding.openid = "o-9"     # a binding moved to someone else
    session.commit()
    assert poll(lambda: selfservice.bound_balance_fen("o-1", acct.id) is None)
    assert selfservice.bound_balance_fen("o-9", acct.id) == 4040
    assert selfservice.bound_balance_fen("o-9", acct.id) == 4040
    session.delete(binding)    # and deleted
    session.commit()
    assert poll(lambda: selfservice.bound_balance_fen("o-9", acct.id) is None)


# --- plan summaries (the usage chart's tariff) -----------------------------------------------

def _chart_tariff(tenant, account_id: int) -> dict:
    r = tenant.get(f"/accounts/{account_id}/usage?start=2026-11-04&end=2026-11-05")
    assert r.status_code == 200, r.text
    return r.json()["tariff"]


def test_the_usage_charts_plan_is_cached_and_dropped_when_a_version_is_added_here_or_elsewhere(
        pg_only, session, bound_tenant, pay_env, monkeypatch):
    from datetime import date

    from core.tariffs.store import add_plan
    add_plan(session, "cache-plan", {"kind": "flat", "unit": "kWh", "price": "0.5"})
    tenant, account = bound_tenant(tariff="cache-plan")
    cache = the_cache()
    first = _chart_tariff(tenant, account.id)
    assert first["plan"] == "cache-plan" and "0.5" in first["price"]
    hits = cache.hits
    assert _chart_tariff(tenant, account.id) == first
    assert cache.hits == hits + 1
    # Proof that the plan is not read: a version written behind the ORM's back (no notification) is not seen.
    session.execute(text("UPDATE tariff_versions SET spec = CAST(:spec AS json) WHERE plan_id IN "
                         "(SELECT id FROM tariff_plans WHERE name = 'cache-plan')"),
                    {"spec": '{"kind": "flat", "unit": "kWh", "price": "0.9"}'})
    session.commit()
    assert _chart_tariff(tenant, account.id) == first
    # A new version through the store (the ORM) drops it in this process at commit...
    add_plan(session, "cache-plan", {"kind": "flat", "unit": "kWh", "price": "0.7"}, site_id=account.site_id,
             effective_from=date(2000, 1, 2))
    session.commit()
    second = _chart_tariff(tenant, account.id)
    assert second != first and "0.7" in second["price"]
    # ...and in every other process through the notification alone.
    monkeypatch.setattr(balance_cache, "_invalidate_locally", lambda kind, ids: None)
    assert _chart_tariff(tenant, account.id) == second  # cached again
    seen = cache.notifications
    add_plan(session, "cache-plan", {"kind": "flat", "unit": "kWh", "price": "0.8"}, site_id=account.site_id,
             effective_from=date(2000, 1, 3))
    session.commit()
    assert poll(lambda: "0.8" in _chart_tariff(tenant, account.id)["price"])
    assert cache.notifications > seen


def test_a_plan_summary_read_across_a_plan_write_is_not_stored(bound, session):
    acct, cache = bound
    token = cache.begin()
    cache.invalidate("p", [1])          # a plan was written while the summary was being read
    cache.store_plan(token, 1, "2026-11-05", {"plan": "old"})
    assert cache.get_plan(1, "2026-11-05") is None
    token = cache.begin()
    cache.store_plan(token, 1, "2026-11-05", {"plan": "new"})
    assert cache.get_plan(1, "2026-11-05") == {"plan": "new"}
    cache.clear()
    assert cache.get_plan(1, "2026-11-05") is None
