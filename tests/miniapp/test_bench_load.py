"""``meterpay bench load`` end to end at a tiny size: tenants log in through the sandbox, read their
balance, usage and orders, and recharge (the sandbox's signed callbacks credit every paid order)
on a real ``meterpay serve``, while poll rounds run on a real worker and a billing process imports
readings; the same traffic on the idle system comes first. Behaviour, not speed."""
from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from meterpay.cli import cli
from tests.ports import free_port_block


@pytest.mark.slow
def test_bench_load_drives_the_mix_idle_and_busy_and_every_paid_order_is_credited(database_url, pg_only):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    res = CliRunner().invoke(cli, ["bench", "load", "--clients", "4", "--seconds", "2", "--gateways", "2",
                                   "--meters-per-gateway", "3", "--import-meters", "10", "--poll-interval", "1",
                                   "--paced-rps", "20",
                                   "--port-base", str(free_port_block(2)), "--database-url", database_url])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["bench"] == "load" and out["clients"] == 4
    for side in ("idle", "busy"):
        assert out[side]["ping"]["requests"] > 0 and out[side]["ping"]["errors"] == 0
        mix = out[side]["mix"]
        assert mix["requests"] > 0 and mix["errors"] == 0, mix
        assert mix["by_kind"]["balance"]["requests"] > 0 and mix["by_kind"]["login"]["requests"] >= 4
    # the background ran while the busy side was measured: poll rounds read every meter, billing imported
    rounds = out["background"]["poll_rounds"]
    assert rounds and all(r["finished"] == r["jobs"] for r in rounds)
    assert all(r["ok"] == 6 and r["failed"] == 0 for r in rounds)
    assert out["background"]["billing_imports"] and out["background"]["billing_imports"][0]["accepted"] == 10
    # every order a tenant paid in the sandbox was credited through its signed callback
    assert out["recharges"]["credited"] == out["recharges"]["paid"]
    assert set(out["balance_p99_ms"]) == {"idle", "busy"} and out["ratio"] > 0
    assert isinstance(out["meets_target"], bool)
    # the paced mix (an extra measurement, not the definition): 4 clients, 20 requests a second together
    paced = out["paced"]
    assert paced["offered_rps"] == 20 and paced["errors"] == 0
    assert all(0 < paced["rps"][side] <= 25 for side in ("idle", "busy")), paced
    assert all(out[side]["mix_paced"]["requests"] > 0 for side in ("idle", "busy"))


def test_bench_load_refuses_bad_sizes_in_one_line():
    res = CliRunner().invoke(cli, ["bench", "load", "--clients", "0"])
    assert res.exit_code != 0 and "--clients" in res.output and "Traceback" not in res.output
