"""``meterpay bench month-end`` runs end to end on a scratch PostgreSQL database (tiny sizes here)."""
from __future__ import annotations

import json

from click.testing import CliRunner

from meterpay.cli import cli


def test_bench_month_end_runs_reruns_and_compares_with_copy(pg_only, database_url):
    res = CliRunner().invoke(cli, ["bench", "month-end", "--accounts", "120", "--rules", "3", "--rule-size", "50",
                                   "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    run, rerun = out["run"], out["rerun"]
    # 120 x (property + service) deduct, 60 prepaid rent items on a bill: deduct only for the prepaid half;
    # rules 1 and 3 deduct, rule 2 bills
    assert run["entries"] > 0 and rerun["entries"] == 0 and run["problems"] == 0
    assert (rerun["charges_fen"], rerun["apportioned_fen"], rerun["items"]) == \
        (run["charges_fen"], run["apportioned_fen"], run["items"])
    assert run["items"] >= 3 * 120 and out["ledger_problems"] == 0 and out["copy_seconds"] > 0
