"""``meterpay bench billing`` runs end to end on a scratch database (tiny sizes here)."""
from __future__ import annotations

import json

from click.testing import CliRunner

from meterpay.cli import cli


def test_bench_billing_reports_rates_and_a_clean_ledger(database_url):
    res = CliRunner().invoke(cli, ["bench", "billing", "--meters", "60", "--readings", "4", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["readings"] == 240 and out["accepted"] == 240
    assert out["replay_duplicates"] == 240 and out["replay_billed_amount"] == "0.00"
    assert out["ledger_problems"] == 0 and out["readings_per_second"] > 0
    if out["database"] == "postgresql":
        assert out["copy_seconds"] > 0 and out["ratio_vs_copy"] > 0
