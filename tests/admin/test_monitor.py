"""Room monitor: the grid by building and floor, statuses by colour and text, filters, search,
the live-refresh JSON, site scoping, and a query count that does not grow with the rooms."""
from __future__ import annotations

import pytest
from sqlalchemy import event

from core.db import get_engine
from tests.admin.conftest import room_at


@pytest.fixture
def plaza(factory, session):
    site = factory.site("东方广场")
    rich = factory.account(room=room_at(factory, site, "A101", "A", "1"), balance_fen=30000, tenant="王记")
    low = factory.account(room=room_at(factory, site, "A102", "A", "1"), balance_fen=1500, tenant="李记")
    broke = factory.account(room=room_at(factory, site, "B201", "B", "2"), balance_fen=100, tenant="赵记")
    from core.ledger import cashdesk
    cashdesk.consume(session, broke.id, 600, key="usage:test:1")  # into arrears: -5.00
    room_at(factory, site, "B202", "B", "2")  # vacant
    rich.meters[0].online = True
    rich.meters[0].relay_state = "on"
    low.meters[0].relay_state = "off"
    session.commit()
    return site


def test_the_monitor_shows_every_room_grouped_by_building_and_floor_with_its_status(manage, plaza):
    manage.as_manager("alice", sites=[plaza])
    page = manage.client.get(f"/admin/sites/{plaza.id}/monitor")
    assert page.status_code == 200
    html = page.text
    assert html.index("A101") < html.index("A102") < html.index("B201") < html.index("B202")
    assert 'class="c f-normal o-online s-on"' in html
    assert 'class="c f-alarm2 o-offline s-off"' in html
    assert 'class="c f-arrears o-offline s-unknown"' in html
    assert 'class="c f-vacant o-none s-unknown"' in html
    assert "欠费" in html and "空置" in html and "二级报警" in html
    assert "-5.00" in html


def test_the_summary_bar_counts_rooms_online_offline_and_arrears(manage, plaza):
    manage.as_manager("alice", sites=[plaza])
    data = manage.client.get(f"/admin/sites/{plaza.id}/monitor.json").get_json()
    assert data["summary"] == {"rooms": 4, "online": 1, "offline": 2, "arrears": 1, "alarm": 1, "cut": 1,
                               "mismatch": 0, "vacant": 1}


def test_the_live_refresh_sends_each_room_compactly(manage, plaza, session):
    manage.as_manager("alice", sites=[plaza])
    data = manage.client.get(f"/admin/sites/{plaza.id}/monitor.json").get_json()
    rooms = {tuple(v) for v in data["rooms"].values()}
    assert ("normal", "online", "on", 30000) in rooms
    assert ("arrears", "offline", "unknown", -500) in rooms


@pytest.mark.parametrize("query, shown, hidden", [
    ("building=B", ["B201", "B202"], ["A101"]),
    ("floor=1", ["A101", "A102"], ["B201"]),
    ("status=arrears", ["B201"], ["A101", "A102", "B202"]),
    ("status=cut", ["A102"], ["A101"]),
    ("status=vacant", ["B202"], ["B201"]),
    ("status=online", ["A101"], ["A102"]),
    ("q=赵", ["B201"], ["A101"]),
    ("q=a10", ["A101", "A102"], ["B201"]),
])
def test_filters_and_search_narrow_the_grid(manage, plaza, query, shown, hidden):
    manage.as_manager("alice", sites=[plaza])
    html = manage.client.get(f"/admin/sites/{plaza.id}/monitor?{query}").text
    grid = html[html.index('id="grid"'):]
    for number in shown:
        assert f"<b>{number}</b>" in grid
    for number in hidden:
        assert f"<b>{number}</b>" not in grid


def test_a_manager_of_another_site_gets_404_on_this_sites_monitor(manage, plaza, factory):
    other = factory.site("西城公寓")
    manage.as_manager("bob", sites=[other])
    assert manage.client.get(f"/admin/sites/{plaza.id}/monitor").status_code == 404
    assert manage.client.get(f"/admin/sites/{plaza.id}/monitor.json").status_code == 404
    assert manage.client.get("/admin/sites/999999/monitor").status_code == 404


def test_a_manager_of_all_sites_sees_every_site(manage, plaza, factory):
    factory.site("西城公寓")
    manage.as_manager("root", all_sites=True, role="admin")
    page = manage.client.get("/admin/")
    assert "东方广场" in page.text and "西城公寓" in page.text


def _count_queries(fn):
    statements = []

    def before(conn, cursor, statement, *args):
        statements.append(statement)
    engine = get_engine()
    event.listen(engine, "before_cursor_execute", before)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", before)
    return len(statements)


def test_the_monitor_costs_the_same_few_queries_for_4_rooms_or_40(manage, plaza, factory, session):
    manage.as_manager("alice", sites=[plaza])
    url = f"/admin/sites/{plaza.id}/monitor.json"
    small = _count_queries(lambda: manage.client.get(url))
    for i in range(36):
        factory.account(room=room_at(factory, plaza, f"C{i:03d}", "C", str(i % 5 + 1)), balance_fen=1000 + i)
    session.commit()
    large = _count_queries(lambda: manage.client.get(url))
    assert large == small
    assert small <= 7  # manager, roles, site, the three grid queries (rooms, meters, accounts)


def test_a_postpaid_account_is_shown_as_postpaid_not_as_an_alarm(manage, factory, session):
    site = factory.site("东方广场")
    factory.account(room=room_at(factory, site, "C101", "C", "1"), billing_mode="postpaid")
    session.commit()
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/sites/{site.id}/monitor").text
    assert "f-postpaid" in html and "后付费" in html and "三级报警</span>" not in html
    data = manage.client.get(f"/admin/sites/{site.id}/monitor.json").get_json()
    assert list(data["rooms"].values())[0][0] == "postpaid" and data["summary"]["alarm"] == 0


@pytest.fixture
def mismatched(factory, session):
    """A room whose meter was commanded off but reads on (core.supply.enforce found it)."""
    from core.db import utcnow
    site = factory.site("状态广场")
    account = factory.account(room=room_at(factory, site, "C301", "C", "3"), balance_fen=30000, tenant="孙记")
    factory.account(room=room_at(factory, site, "C302", "C", "3"), balance_fen=30000, tenant="周记")
    meter = account.meters[0]
    meter.online, meter.commanded_state, meter.relay_state, meter.mismatch_since = True, "off", "on", utcnow()
    session.commit()
    return site, account


def test_a_meter_that_disagrees_with_its_command_is_shown_as_a_mismatch(manage, mismatched, session):
    from admin import monitor_data as md
    site, account = mismatched
    cells = md.site_cells(session, site)
    cell = next(c for c in cells if c.number == "C301")
    assert cell.mismatch and "mismatch" in cell.statuses
    assert [c.number for c in md.filter_cells(cells, status="mismatch")] == ["C301"]
    assert md.summarize(cells).mismatch == 1
    assert "mismatch" in md.STATUS_FILTERS
    manage.as_manager("alice", sites=[site])
    data = manage.client.get(f"/admin/sites/{site.id}/monitor.json").get_json()
    assert data["summary"]["mismatch"] == 1
    assert data["rooms"][str(account.room_id)] == ["normal", "online", "on", 30000, None, 1]
    html = manage.client.get(f"/admin/sites/{site.id}/monitor?status=mismatch").text
    assert 'x-1"' in html and 'data-k="mismatch"' in html and "状态不符" in html
    assert "C302" not in html


def test_the_room_page_says_what_was_sent_in_the_managers_language(manage, mismatched):
    site, account = mismatched
    manage.as_manager("alice", sites=[site])
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "已下发：拉闸" in html and "已下发：off" not in html
    assert "与下发不符（自 " in html
    manage.client.get("/admin/lang/en")
    html = manage.client.get(f"/admin/rooms/{account.room_id}").text
    assert "sent: relay off" in html and "sent: off" not in html and "mismatch since " in html
