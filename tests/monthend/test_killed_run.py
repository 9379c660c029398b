"""A month-end run killed (SIGKILL) halfway through a step, then run again: `meterpay ledger check`
is clean after the kill and after the resumed run, and every key is posted once."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from core.models import JournalEntry, MonthEndStep
from core.monthend.run import run_month_end
from meterpay.cli import cli
from tests.monthend.test_run_safety import busy, snapshot, totals  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[2]
# Runs the month; on the second step's posting it writes a mark and hangs before the commit.
HANG_IN_SECOND_STEP = """
import sys, time
import core.monthend.run as run
real, calls = run.post_many, []
def hang(*args, **kwargs):
    out = real(*args, **kwargs)
    calls.append(1)
    if len(calls) == 2:
        open(sys.argv[2], "w").write("posted, not committed")
        time.sleep(120)
    return out
run.post_many = hang
run.run_month_end(int(sys.argv[1]), "2026-04", actor="doomed")
"""


def test_a_run_killed_halfway_is_finished_by_the_next_and_the_ledger_stays_clean(session, busy, tmp_path):  # noqa: F811
    clean = run_month_end(busy.site.id, "2026-04", preview=True, actor="test")
    mark = tmp_path / "mark"
    proc = subprocess.Popen([sys.executable, "-c", HANG_IN_SECOND_STEP, str(busy.site.id), str(mark)], cwd=ROOT,
                            env=os.environ.copy())
    try:
        deadline = time.time() + 120
        while not mark.exists():
            assert proc.poll() is None, "the run ended before it was killed"
            assert time.time() < deadline
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(MonthEndStep)) == 1  # the first step, whole
    check = CliRunner().invoke(cli, ["ledger", "check"])
    assert check.exit_code == 0, check.output
    resumed = run_month_end(busy.site.id, "2026-04", actor="test")
    assert totals(resumed) == totals(clean)
    keys = session.scalars(select(JournalEntry.idempotency_key)).all()
    assert len(keys) == len(set(keys))
    check = CliRunner().invoke(cli, ["ledger", "check"])
    assert check.exit_code == 0, check.output
    before = snapshot(session)
    again = run_month_end(busy.site.id, "2026-04", actor="test")
    assert again.entries == 0 and snapshot(session)["balances"] == before["balances"]
