"""PostgreSQL restarting under load (a cluster of the test's own, stopped and started again): web
requests get a quick 503 with Retry-After (not a hang, not a 500), a job waits for the database
and commits once, and nothing committed before the restart is lost."""
from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import text

from core import jobs
from core.db import new_session, reset_engine, session_scope
from tests.core.throwaway import ThrowawayPostgres

pytestmark = pytest.mark.slow


@pytest.fixture
def throwaway_pg(tmp_path, settings_env, pg_only):
    from core.migrate import upgrade
    pg = ThrowawayPostgres(tmp_path / "pg").init()
    settings_env(METERPAY_DATABASE_URL=pg.url)
    reset_engine()
    upgrade(pg.url)
    with session_scope() as s:
        s.execute(text("CREATE TABLE outage_probe (tag text PRIMARY KEY)"))
    yield pg
    reset_engine()   # before settings_env puts the session's database back
    pg.destroy()


def probe_tags() -> list[str]:
    with session_scope() as s:
        return sorted(s.scalars(text("SELECT tag FROM outage_probe")))


def test_the_web_answers_a_quick_503_while_postgresql_is_down_and_works_when_it_is_back(throwaway_pg):
    from meterpay.app import create_app
    from tests.admin.conftest import Manage
    from tests.factories import Factory
    session = new_session()
    factory = Factory(session)
    site = factory.site()
    account = factory.account(site=site, balance_fen=5000)
    client = create_app({"TESTING": True}).test_client()
    Manage(session, client).as_manager("alice", sites=[site])
    page = f"/admin/rooms/{account.room_id}"
    assert client.get(page).status_code == 200
    session.close()

    throwaway_pg.stop()
    for path, headers in ((page, {"Accept": "text/html"}), ("/healthz", {})):
        started = time.monotonic()
        resp = client.get(path, headers=headers)
        assert time.monotonic() - started < 5, path
        assert resp.status_code == 503, (path, resp.status_code, resp.text[:500])
    assert client.get(page, headers={"Accept": "text/html"}).headers["Retry-After"] == "5"
    api = client.get(page, headers={"Accept": "application/json"})
    assert api.status_code == 503 and api.get_json()["code"] == "unavailable"
    assert client.get("/healthz").get_json()["database"]["status"] == "error"

    throwaway_pg.start()
    assert client.get(page).status_code == 200
    assert client.get("/healthz").get_json()["database"]["status"] == "ok"


def test_a_job_waits_out_a_postgresql_restart_and_commits_once(throwaway_pg, redis_url, caplog):
    from meterpay.worker import run_worker
    with session_scope() as s:
        s.execute(text("INSERT INTO outage_probe (tag) VALUES ('before')"))
    jobs.set_eager(False)
    jobs.enqueue("tests.core.outage_jobs.db_write", "during", queue="default")

    throwaway_pg.stop()
    restart = threading.Timer(3.0, throwaway_pg.start)
    restart.start()
    caplog.set_level(logging.INFO)
    try:
        run_worker(["default"], burst=True, handle_signals=False)
    finally:
        restart.join()
    assert probe_tags() == ["before", "during"]   # committed before: kept; the job: once
    messages = [r.getMessage() for r in caplog.records]
    assert sum("PostgreSQL is unreachable" in m for m in messages) == 1, messages
    assert sum("PostgreSQL is back" in m for m in messages) == 1, messages
    from redis import Redis
    from rq import Queue
    q = Queue("default", connection=Redis.from_url(redis_url))
    assert q.count == 0 and q.failed_job_registry.count == 0


def test_a_job_that_outlives_its_wait_for_the_database_fails_and_rq_runs_it_again(throwaway_pg, redis_url,
                                                                                 settings_env):
    from redis import Redis
    from rq import Queue

    from meterpay.worker import run_worker
    settings_env(METERPAY_JOB_DB_WAIT="1")
    jobs.set_eager(False)
    job_id = jobs.enqueue("tests.core.outage_jobs.db_write", "late", queue="default")
    throwaway_pg.stop()
    restart = threading.Timer(2.5, throwaway_pg.start)   # after the first try gave up waiting
    restart.start()
    try:
        run_worker(["default"], burst=True, handle_signals=False)
    finally:
        restart.join()
    assert probe_tags() == ["late"]
    job = Queue("default", connection=Redis.from_url(redis_url)).fetch_job(job_id)
    assert job.get_status() == "finished" and job.retries_left < jobs.JOB_RETRIES
