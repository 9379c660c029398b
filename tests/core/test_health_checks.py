"""/healthz and `meterpay status` tell the truth: database, Redis, queue depths, live workers per
queue, the scheduler's heartbeat, overdue meter commands and late polling per site, each with a
503 when it is out of bounds."""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from redis import Redis
from rq import Queue, Worker

from core import jobs
from core.db import utcnow
from core.models import Gateway, MeterCommand
from meterpay.cli import cli


def healthz(client):
    resp = client.get("/healthz")
    return resp.status_code, resp.get_json()


@pytest.fixture
def rq_app(redis_url):
    from meterpay.app import create_app
    return create_app({"TESTING": True}).test_client()


def live_everything(redis_url) -> list[Worker]:
    conn = Redis.from_url(redis_url)
    workers = [Worker([Queue(q, connection=conn)], connection=conn, name=f"w-{q}") for q in jobs.QUEUES]
    for w in workers:
        w.register_birth()
    conn.hset(jobs.SCHEDULER_HEARTBEAT_KEY, "cron-a", f"{time.time():.3f}")
    return workers


def test_healthz_needs_a_live_worker_per_queue_and_a_fresh_scheduler_heartbeat(rq_app, redis_url):
    code, body = healthz(rq_app)
    assert code == 503
    assert body["workers"]["status"] == "error" and body["workers"]["per_queue"] == dict.fromkeys(jobs.QUEUES, 0)
    assert body["scheduler"]["status"] == "error" and body["scheduler"]["heartbeat_age_s"] is None
    assert set(body["failing"]) == {"workers", "scheduler"}

    workers = live_everything(redis_url)
    code, body = healthz(rq_app)
    assert code == 200, body
    assert body["workers"]["per_queue"] == dict.fromkeys(jobs.QUEUES, 1)
    assert body["queue"]["queued"] == dict.fromkeys(jobs.QUEUES, 0) and body["redis"]["status"] == "ok"

    # a worker whose key expired (it stopped beating) is not live
    conn = Redis.from_url(redis_url)
    conn.delete(workers[1].key)
    code, body = healthz(rq_app)
    assert code == 503 and body["workers"]["per_queue"][jobs.QUEUES[1]] == 0


def test_a_scheduler_heartbeat_older_than_two_intervals_is_stale(rq_app, redis_url, settings_env):
    live_everything(redis_url)
    settings_env(METERPAY_SCHEDULER_HEARTBEAT="5")
    conn = Redis.from_url(redis_url)
    conn.hset(jobs.SCHEDULER_HEARTBEAT_KEY, "cron-a", f"{time.time() - 9:.3f}")
    assert healthz(rq_app)[0] == 200
    conn.hset(jobs.SCHEDULER_HEARTBEAT_KEY, "cron-a", f"{time.time() - 11:.3f}")
    code, body = healthz(rq_app)
    assert code == 503 and body["scheduler"]["status"] == "error" and body["scheduler"]["stale_after_s"] == 10


def test_a_queue_deeper_than_the_bound_fails_the_check(rq_app, redis_url, settings_env):
    live_everything(redis_url)
    settings_env(METERPAY_HEALTH_QUEUE_MAX="2")
    jobs.set_eager(False)
    for i in range(3):
        jobs.enqueue("tests.core.jobs_target.record", i, queue="notify")
    code, body = healthz(rq_app)
    assert code == 503 and body["queue"]["queued"]["notify"] == 3 and "notify" in body["queue"]["error"]


def test_a_pending_command_long_past_its_attempt_time_fails_the_check(client, session, factory, settings_env):
    from core.sites.accounts import MeterSpec
    from core.supply import commands
    account = factory.account(meters=(MeterSpec(serial="HC-1"),))
    cmd = commands.request(session, account.meters[0].id, "relay_off", key="hc:1", enqueue=False)
    cmd.next_attempt_at = utcnow() - timedelta(seconds=100)
    session.commit()
    code, body = healthz(client)
    assert code == 200 and body["commands"]["pending"] == 1 and body["commands"]["most_overdue_s"] >= 100
    settings_env(METERPAY_HEALTH_COMMAND_LAG="60")
    code, body = healthz(client)
    assert code == 503 and body["commands"]["status"] == "error" and body["failing"] == ["commands"]
    session.get(MeterCommand, cmd.id).state = "confirmed"
    session.commit()
    assert healthz(client)[0] == 200


def test_polling_is_late_at_a_site_whose_last_round_is_older_than_two_intervals(client, session, factory):
    site = factory.site("North", poll_interval_minutes=5)
    gw = Gateway(site_id=site.id, name="north-1", url="tcp://127.0.0.1:1", last_seen_at=utcnow() - timedelta(minutes=4))
    session.add(gw)
    session.commit()
    code, body = healthz(client)
    assert code == 200
    north = body["polling"]["sites"]["North"]
    assert north["interval_s"] == 300 and not north["late"] and 230 < north["last_round_age_s"] < 260

    gw.last_seen_at = utcnow() - timedelta(minutes=12)
    session.commit()
    code, body = healthz(client)
    assert code == 503 and body["polling"]["late"] == ["North"] and body["failing"] == ["polling"]

    gw.last_seen_at = None   # never answered
    session.commit()
    assert healthz(client)[1]["polling"]["sites"]["North"]["last_round_age_s"] is None
    assert healthz(client)[0] == 503


def test_meterpay_status_prints_the_checks_and_exits_1_when_one_fails(session, factory):
    runner = CliRunner()
    ok = runner.invoke(cli, ["status"])
    assert ok.exit_code == 0, ok.output
    assert "meterpay status: OK" in ok.output and "[ok  ] database" in ok.output
    site = factory.site("South")
    session.add(Gateway(site_id=site.id, name="south-1", url="tcp://127.0.0.1:2",
                        last_seen_at=utcnow() - timedelta(hours=2)))
    session.commit()
    bad = runner.invoke(cli, ["status"])
    assert bad.exit_code == 1
    assert "[FAIL] polling" in bad.output and "LATE South: last round 2.0 h ago" in bad.output
    as_json = runner.invoke(cli, ["status", "--json"])
    import json
    assert json.loads(as_json.output)["polling"]["late"] == ["South"]


def test_healthz_keeps_its_old_keys_and_is_quick(client):
    started = time.perf_counter()
    code, body = healthz(client)
    assert time.perf_counter() - started < 1.0
    assert code == 200 and body["status"] == "ok"
    assert body["database"]["status"] == "ok" and body["queue"]["backend"] == "in-process"
