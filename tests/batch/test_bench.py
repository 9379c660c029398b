"""``meterpay bench batch`` end to end at a tiny size: both tasks confirmed, the bound measured,
the single command confirmed half-way, the engines' memory reported."""
from __future__ import annotations

import json

from click.testing import CliRunner

from meterpay.cli import cli
from tests.ports import free_port_block


def test_bench_batch_runs_end_to_end_at_a_tiny_size(pg_only, redis_url):
    port = free_port_block(4)
    r = CliRunner().invoke(cli, ["bench", "batch", "--rooms", "12", "--gateways", "3", "--baud", "38400",
                                 "--port-base", str(port)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    assert out["items_by_state"] == {"confirmed": 24} and out["engines"] == 2 and out["bus_locks"] == "redis"
    assert out["bound_s"] > 0 and out["ratio"] > 1
    assert out["single_command"]["state"] == "confirmed"
    assert len(out["engines_peak_rss_mb"]) == 2 and all(m > 10 for m in out["engines_peak_rss_mb"])
