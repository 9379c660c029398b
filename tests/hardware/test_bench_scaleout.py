"""``meterpay bench poll --workers N`` and ``bench commands --workers N`` end to end, tiny sizes:
real ``meterpay worker`` processes on a private redis-server, a scratch PostgreSQL database and
the simulator over TCP. What is checked is behaviour (every meter read and billed, every command
confirmed, CPU reported per worker), not speed."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from meterpay.cli import cli
from tests.ports import free_port_block

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_base(database_url, pg_only):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    return database_url


def _run(args: list[str]) -> dict:
    res = CliRunner().invoke(cli, ["bench", *args])
    assert res.exit_code == 0, (res.output, "".join(__import__("traceback").format_exception(*res.exc_info)))
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_poll_rounds_on_two_worker_processes_read_and_bill_every_meter(pg_base):
    port = free_port_block(3)
    out = _run(["poll", "--workers", "2", "--gateways", "3", "--meters-per-gateway", "2", "--rounds", "2",
                "--port-base", str(port), "--database-url", pg_base])
    assert out["mode"] == "rq-workers" and out["workers"] == 2 and out["meters"] == 6
    assert out["shard_gateways"] == 2 and out["jobs_per_round"] == 2
    for run in out["runs"]:
        assert run["ok"] == 6 and run["failed"] == 0 and run["failed_jobs"] == 0
        assert sum(run["billing"].values()) == 6      # every reading went through billing
        assert len(run["worker_cpu_s"]) == 2 and run["workers_cpu_s"] > 0
        assert run["postgres_cpu_s"] >= 0 and run["redis_cpu_s"] is not None
    assert set(out["cpu_ms_per_meter"]) == {"workers", "postgres", "redis", "simulator"}


def test_a_command_burst_on_worker_processes_confirms_every_command_once(pg_base):
    port = free_port_block(3)
    out = _run(["commands", "--workers", "2", "--gateways", "3", "--commands", "9", "--batch", "3",
                "--port-base", str(port), "--database-url", pg_base])
    assert out["mode"] == "rq-workers" and out["jobs"] == 3 and out["failed_jobs"] == 0
    assert out["confirmed"] == 9 and out["other"] == 0
    assert len(out["worker_cpu_s"]) == 2 and out["commands_per_s"] > 0


def test_worker_mode_refuses_sqlite():
    res = CliRunner().invoke(cli, ["bench", "poll", "--workers", "1", "--gateways", "1",
                                   "--database-url", "sqlite:////tmp/nowhere.db"])
    assert res.exit_code != 0
    assert "PostgreSQL" in res.output
