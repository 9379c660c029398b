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


def test_compare_ref_runs_both_trees_interleaved_and_reports_the_ratio(database_url):
    """``python -m bench.compare_ref`` (here this checkout against itself, tiny sizes, once each):
    both sides billed the same amount, and the ratio is the head's median over the ref's."""
    from pathlib import Path

    from bench.compare_ref import main
    here = str(Path(__file__).resolve().parents[2])
    res = CliRunner().invoke(main, ["--ref-dir", here, "--head-dir", here, "--repeat", "1", "--meters", "30",
                                    "--readings", "3", "--cpu", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert [r["side"] for r in out["runs"]] == ["ref", "head"]
    assert out["same_billed_amount"] and out["ledger_problems"] == 0
    assert out["ratio_of_medians"] == round(out["median_head"] / out["median_ref"], 3)
    assert out["cpu"]["same_billed_amount"] and [r["side"] for r in out["cpu"]["runs"]] == ["ref", "head"]
    assert all(r[name]["readings_per_second"] > 0 for r in out["cpu"]["runs"] for name in ("first", "next"))
