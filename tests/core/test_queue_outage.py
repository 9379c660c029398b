"""The web never lies about a committed action: a manager's trip while Redis is down is committed
and answered as accepted and queued (no 500); the periodic sweep of pending commands delivers it
when Redis is back, and the meter is cut. A real redis-server of the test's own is stopped and
started; the meter is the project's simulator over TCP."""
from __future__ import annotations

import logging
import re

import pytest
from sqlalchemy import select

from core import jobs
from core.models import MeterCommand
from tests.bot.conftest import sandbox, sandbox_base  # noqa: F401 - the bot's sandbox fixtures
from tests.core.throwaway import ThrowawayRedis

pytestmark = pytest.mark.slow


@pytest.fixture
def down_redis(tmp_path, settings_env):
    redis = ThrowawayRedis(tmp_path / "redis").start()
    settings_env(METERPAY_REDIS_URL=redis.url, METERPAY_METER_TIMEOUT="0.4", METERPAY_METER_RETRIES="0",
                 METERPAY_COMMAND_BACKOFF="0")
    jobs.set_eager(False)
    yield redis
    redis.stop()


@pytest.fixture
def sim_meter():
    from hardware.simulator import SimGateway, Simulator, make_meter
    from hardware.simulator.meters import SimClock
    gw = SimGateway(0, "modbus-rtu", [make_meter("acrel-ddsy1352", "1", SimClock(speed=60), seed=0)], baud=38400,
                    turnaround=0.002, fault_rate=0.0, slow_seconds=1.0)
    sim = Simulator([gw]).start_in_thread()
    yield gw
    sim.stop_thread()


def test_a_trip_during_a_redis_outage_answers_queued_and_the_meter_is_cut_when_redis_is_back(
        down_redis, sim_meter, session, factory, client, caplog):
    from core.sites.accounts import MeterSpec
    from hardware import executor
    from meterpay.worker import run_worker
    from tests.admin.conftest import Manage
    site = factory.site()
    account = factory.account(site=site, billing_mode="prepaid-platform", balance_fen=10000, meters=(
        MeterSpec(serial="OUTAGE-1", profile="acrel-ddsy1352", gateway=f"tcp://127.0.0.1:{sim_meter.port}",
                  address="1"),))
    manage = Manage(session, client)
    manage.as_manager("alice", sites=[site])
    meter = sim_meter.meter("1")
    assert meter.relay_on

    down_redis.stop()
    caplog.set_level(logging.INFO)
    resp = manage.post(f"/admin/rooms/{account.room_id}/actions/trip", {"op": "f" * 32, "confirm": "yes"})
    assert resp.status_code == 303, resp.text[:2000]
    page = client.get(resp.headers["Location"])
    assert page.status_code == 200 and "已下发拉闸命令" in page.text   # accepted, waiting for the meter
    cmd = session.scalar(select(MeterCommand))
    assert (cmd.kind, cmd.state) == ("relay_off", "pending")
    assert any("not queued on meters (Redis unreachable)" in r.getMessage() for r in caplog.records)

    down_redis.start()
    assert executor.retry_due()["enqueued"] == 1   # the periodic sweep (meters-command-retry, every 10 s)
    run_worker(["meters"], burst=True, handle_signals=False)
    session.expire_all()
    assert session.get(MeterCommand, cmd.id).state == "confirmed"
    assert not meter.relay_on and meter.applied.count("relay off") == 1


def test_an_enqueue_after_commit_that_cannot_reach_redis_keeps_the_commit_and_raises_nothing(down_redis, session,
                                                                                           factory):
    from core.db import session_scope
    from core.sites.accounts import MeterSpec
    from core.supply import control
    account = factory.account(meters=(MeterSpec(serial="OUTAGE-2"),))
    down_redis.stop()
    with session_scope() as s:   # the commit inside raises nothing although the enqueue fails
        ids = [c.id for c in control.trip(s, account.id, actor="test")]
    assert [session.get(MeterCommand, i).state for i in ids] == ["pending"]
    assert jobs.redis_outage.is_down
    down_redis.start()
    jobs.enqueue("tests.core.jobs_target.record", "back")
    assert not jobs.redis_outage.is_down


@pytest.mark.usefixtures("sandbox")
def test_a_trip_by_chat_during_a_redis_outage_is_answered_and_queued(down_redis, client, session, factory):
    """The bot's path: message dedupe falls back to the process while Redis is away, the confirmed
    trip is committed and answered, its command waits for the sweep."""
    from core.sites.managers import create_manager
    from tests.bot.helpers import WeChat
    site = factory.site("Chat Site")
    account = factory.account(room=factory.room(site, "C101"), balance_fen=10000)
    alice = create_manager(session, "alice", "password123", sites=["Chat Site"])
    alice.wechat_openid = "o-alice"
    session.commit()
    down_redis.stop()
    wechat = WeChat(client)
    asked = wechat.say("o-alice", "拉闸 C101")
    code = re.search(r"确认 (\d{4})", asked)
    assert code, asked
    reply = wechat.say("o-alice", f"确认 {code.group(1)}")
    assert "未执行" not in reply and "C101" in reply, reply
    cmd = session.scalar(select(MeterCommand).where(MeterCommand.meter_id == account.meters[0].id))
    assert (cmd.kind, cmd.state) == ("relay_off", "pending")


def test_a_notification_committed_while_redis_was_down_is_delivered_by_the_sweep(down_redis, session, factory):
    from datetime import timedelta

    from bot import delivery
    from core.alarms import notifications
    from core.models import Notification
    account = factory.account()
    down_redis.stop()
    note = notifications.add(session, key="outage:note:1", kind="chat", channel="webhook",
                             recipient="http://127.0.0.1:9/hook", body="hello", account_id=account.id)
    session.commit()
    assert session.get(Notification, note.id).status == "pending"
    down_redis.start()
    assert delivery.retry_due() == 0                      # not yet: it may still be on its way
    assert delivery.retry_due(now=note.created_at + timedelta(minutes=3)) == 1   # stuck: queued again
