"""``meterpay bench reports`` runs end to end on a scratch PostgreSQL database (tiny sizes here):
every report equals its naive baseline, ingest is measured with and without the rollups, and the
ledger check is clean."""
from __future__ import annotations

import json

from click.testing import CliRunner

from meterpay.cli import cli


def test_bench_reports_compares_each_report_with_its_baseline(pg_only, database_url):
    res = CliRunner().invoke(cli, ["bench", "reports", "--meters", "20", "--months", "6", "--repeat", "1",
                                   "--ingest-rounds", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["meters"] == 20 and out["counts"]["readings"] > 20 * 24 * 150
    assert out["energy"]["rows"] == 20 and out["income"]["rows"] == 365 and out["income"]["income_fen"] > 0
    assert out["check"]["problems"] == 0 and out["ingest"]["with_rollups_per_second"] > 0
    assert all(out["targets_met"].values())
