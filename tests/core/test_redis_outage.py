"""`meterpay worker` and `meterpay scheduler` ride out a Redis outage (a real redis-server on a port
of its own, stopped and started again): they stay up, log the outage once when it starts and once
when it ends, go on working afterwards, and a job the outage broke off runs again."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis
from rq import Queue

from tests.core.throwaway import ThrowawayRedis

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def spawn(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    out = log.open("w")
    return subprocess.Popen([sys.executable, "-m", "meterpay.cli", *args], env=env, stdout=out,
                            stderr=subprocess.STDOUT, cwd=ROOT)


def child_env(redis_url: str, **extra) -> dict:
    env = {**os.environ, "METERPAY_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT), "METERPAY_LOG_LEVEL": "INFO",
           **extra}
    env.pop("METERPAY_METRICS_DIR", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) while waiting for {what}:\n"
                                 f"{log.read_text() if log else ''}")
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f":\n{log.read_text()}" if log else ""))


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def test_a_worker_rides_out_a_redis_outage_and_runs_the_job_it_broke_off_again(tmp_path):
    redis = ThrowawayRedis(tmp_path / "redis", persistent=True).start()
    marks, log = tmp_path / "marks.txt", tmp_path / "worker.log"
    worker = spawn(["worker", "--queues", "default"], child_env(redis.url), log)
    try:
        q = Queue("default", connection=Redis.from_url(redis.url))
        from rq import Retry
        q.enqueue("tests.core.outage_jobs.mark", str(marks), "before", retry=Retry(max=3))
        wait_for(lambda: "before" in lines(marks), 30, "the first job", worker, log)

        # a job is running when Redis goes away; it ends during the outage
        q.enqueue("tests.core.outage_jobs.slow_mark", str(marks), "slow", 1.5, retry=Retry(max=3))
        wait_for(lambda: "start slow" in lines(marks), 30, "the slow job to start", worker, log)
        redis.stop()
        wait_for(lambda: "done slow" in lines(marks), 30, "the slow job to end", worker, log)
        time.sleep(4)  # an outage of several backoff rounds
        assert worker.poll() is None, log.read_text()
        redis.start()

        # the broken-off job runs again, and new work is taken
        wait_for(lambda: lines(marks).count("done slow") == 2, 60, "the broken-off job to run again", worker, log)
        q = Queue("default", connection=Redis.from_url(redis.url))
        q.enqueue("tests.core.outage_jobs.mark", str(marks), "after")
        wait_for(lambda: "after" in lines(marks), 60, "a job after the outage", worker, log)
        assert worker.poll() is None
    finally:
        code = stop(worker)
        redis.stop()
    text = log.read_text()
    assert code == 0, text
    assert text.count("Redis is unreachable") == 1, text
    assert text.count("Redis is back after") == 1, text
    assert "could not connect to Redis" not in text and "Traceback" not in text
    assert "queued again on default" in text


def test_the_scheduler_rides_out_a_redis_outage_and_beats_again(tmp_path):
    redis = ThrowawayRedis(tmp_path / "redis").start()
    log = tmp_path / "scheduler.log"
    proc = spawn(["scheduler"], child_env(redis.url, METERPAY_SCHEDULER_HEARTBEAT="1"), log)

    def beats() -> dict:
        try:
            return Redis.from_url(redis.url).hgetall("meterpay:heartbeat:scheduler")
        except Exception:  # noqa: BLE001 - Redis is down on purpose at times
            return {}

    def queued(name: str) -> int:
        return Redis.from_url(redis.url).llen(f"rq:queue:{name}")

    try:
        wait_for(lambda: beats() and queued("meters") > 0, 30, "the first heartbeat and periodic jobs", proc, log)
        redis.stop()
        time.sleep(5)
        assert proc.poll() is None, log.read_text()
        redis.start()  # empty: the outage lost every key
        wait_for(lambda: bool(beats()), 30, "a heartbeat after the outage", proc, log)
        wait_for(lambda: queued("meters") > 0, 30, "periodic jobs enqueued again", proc, log)
        first = float(next(iter(beats().values())))
        wait_for(lambda: float(next(iter(beats().values()), b"0")) > first, 10, "the heartbeat going on", proc, log)
    finally:
        code = stop(proc)
        redis.stop()
    text = log.read_text()
    assert code == 0, text
    assert text.count("Redis is unreachable") == 1, text
    assert text.count("Redis is back after") == 1, text
