"""Two managers confirming the same period at once post each bill once (real threads, PostgreSQL);
``meterpay bench bills`` runs end to end at a tiny size."""
from __future__ import annotations

import json
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from bench.bills import PERIOD, build
from core.bills import generate, service
from core.db import new_session
from core.ledger.check import validate
from core.models import Bill, JournalEntry
from core.reports.check import validate as validate_rollups
from meterpay.cli import cli


@pytest.mark.parametrize("n", [3, 60])  # 60: the COPY path of the receivables
def test_two_confirms_at_once_post_each_bill_once(pg_only, session, n):
    site_id = build(session, n, 2, seed=n)
    made = generate.generate_for_period(session, site_id, PERIOD, preview=False, actor="t", front="cli")
    session.commit()
    assert made.count == n
    barrier = threading.Barrier(2)
    counts, errors = [], []

    def confirm(who):
        try:
            with new_session() as s:
                barrier.wait(timeout=10)
                done = service.confirm(s, site_id, PERIOD, actor=who, front="cli")
                s.commit()
                counts.append(done.count)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=confirm, args=(f"manager:{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and sorted(counts) == [0, n]
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(JournalEntry).where(
        JournalEntry.idempotency_key.like("bill:%"))) == n
    assert set(session.scalars(select(Bill.state))) == {"confirmed"}
    assert validate(session) + validate_rollups(session) == []


def test_two_generations_at_once_make_one_bill_per_account(pg_only, session):
    site_id = build(session, 5, 2, seed=5)
    barrier = threading.Barrier(2)
    counts, errors = [], []

    def run():
        try:
            with new_session() as s:
                barrier.wait(timeout=10)
                counts.append(generate.generate_for_period(s, site_id, PERIOD, preview=False, actor="t",
                                                           front="cli").count)
                s.commit()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and sorted(counts) == [0, 5]
    assert session.scalar(select(func.count()).select_from(Bill)) == 5


def test_bench_bills_runs_end_to_end(pg_only, database_url):
    res = CliRunner().invoke(cli, ["bench", "bills", "--accounts", "30", "--intervals", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["generate"]["bills"] == 30 and out["rerun"]["bills"] == 0 and out["confirm"]["bills"] == 30
    assert out["preview"]["bills"] == 30 and out["check"]["problems"] == 0
    # per account: 3 intervals of 185 or 184 fen (one in five is 185) and a 50.00 property fee
    assert out["total_fen"] == 30 * 5000 + sum(185 if k % 5 == 0 else 184 for k in range(3)) * 30
