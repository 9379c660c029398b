"""The room monitor's summary bar shows when the site was last polled, and says so when polling is late."""
from __future__ import annotations

from datetime import timedelta

from core.db import utcnow
from core.models import Gateway
from tests.admin.conftest import Manage


def test_the_monitor_summary_shows_the_last_poll_and_when_it_is_late(session, factory, client):
    site = factory.site("Poll Site", poll_interval_minutes=5)
    factory.account(room=factory.room(site, "P101"))
    gw = Gateway(site_id=site.id, name="poll-gw", url="tcp://127.0.0.1:3", last_seen_at=utcnow() - timedelta(minutes=3))
    session.add(gw)
    session.commit()
    Manage(session, client).as_manager("alice", sites=[site])
    page = client.get(f"/admin/sites/{site.id}/monitor").text
    assert "上次轮询" in page and "3 分钟前" in page and 'class="bad" id="polling"' not in page
    assert client.get(f"/admin/sites/{site.id}/monitor.json").get_json()["summary"]["poll"] == "3 分钟前"

    gw.last_seen_at = utcnow() - timedelta(minutes=30)
    session.commit()
    page = client.get(f"/admin/sites/{site.id}/monitor").text
    assert 'class="bad" id="polling"' in page and "轮询延迟" in page and "30 分钟前" in page


def test_a_site_without_gateways_shows_no_polling_cell(session, factory, client):
    site = factory.site("Import Only")
    factory.account(room=factory.room(site, "I101"))
    Manage(session, client).as_manager("alice", sites=[site])
    assert 'id="polling"' not in client.get(f"/admin/sites/{site.id}/monitor").text
    assert "poll" not in client.get(f"/admin/sites/{site.id}/monitor.json").get_json()["summary"]
