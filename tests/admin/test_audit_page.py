"""Audit log page: who did what, when, from which front; filters; only the manager's sites."""
from __future__ import annotations

from core import audit
from tests.admin.conftest import room_at


def test_the_audit_log_lists_actions_newest_first_and_filters_them(manage, factory, session):
    site = factory.site("东方广场")
    account = factory.account(room=room_at(factory, site, "A101"), balance_fen=5000)
    audit.record(session, actor="manager:bob", front="bot", action="recharge", site_id=site.id,
                 account_id=account.id, amount="20.00")
    session.commit()
    manage.as_manager("alice", sites=[site])
    html = manage.client.get("/admin/audit").text
    assert html.index("manager:bob") < html.index("open_account")
    assert "A101" in html and "20.00" in html
    only_bot = manage.client.get("/admin/audit?front=bot").text
    assert "manager:bob" in only_bot and "open_account" not in only_bot
    by_action = manage.client.get("/admin/audit?action=open").text
    assert "open_account" in by_action and "manager:bob" not in by_action
    by_actor = manage.client.get("/admin/audit?actor=bob").text
    assert "manager:bob" in by_actor
    assert "open_account" not in manage.client.get("/admin/audit?until=2000-01-01").text


def test_a_manager_sees_only_the_audit_of_their_sites(manage, factory, session):
    mine, theirs = factory.site("东方广场"), factory.site("西城公寓")
    audit.record(session, actor="manager:x", front="admin", action="trip", site_id=theirs.id)
    audit.record(session, actor="manager:y", front="admin", action="restore", site_id=mine.id)
    session.commit()
    manage.as_manager("alice", sites=[mine])
    html = manage.client.get("/admin/audit").text
    assert "manager:y" in html and "manager:x" not in html
    assert "manager:x" not in manage.client.get(f"/admin/audit?site={theirs.id}").text


def test_actions_taken_on_the_pages_show_up_in_the_audit_log(manage, factory, session):
    site = factory.site("东方广场")
    account = factory.account(room=room_at(factory, site, "A101"), balance_fen=5000)
    manage.as_manager("alice", sites=[site])
    manage.post(f"/admin/rooms/{account.room_id}/actions/recharge",
                {"amount": "12.34", "op": "9" * 32, "confirm": "yes"})
    html = manage.client.get("/admin/audit?front=admin").text
    assert "manager:alice" in html and "recharge" in html and "12.34" in html
