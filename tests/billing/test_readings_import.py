"""``meterpay readings import FILE.csv``."""
from __future__ import annotations

import json

from click.testing import CliRunner
from sqlalchemy import func, select

from core import ledger
from core.billing.csv_import import import_text
from core.ledger.check import validate
from core.models import Reading
from meterpay.cli import cli


def run_import(tmp_path, text: str, *args):
    path = tmp_path / "readings.csv"
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(cli, ["readings", "import", str(path), *args])


def test_import_bills_as_it_goes_and_prints_a_summary_last(session, billed_account, tmp_path):
    acct, meter = billed_account()
    s = meter.serial
    res = run_import(tmp_path, "meter_serial,taken_at,total\n"
                               f"{s},2026-07-01T00:00:00+08:00,1000.00\n"
                               f"{s},2026-07-01T01:00:00+08:00,1010.00\n"
                               f"{s},2026-07-01T02:00:00+08:00,1030.00\n")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {
        "accepted": 3, "duplicates": 0, "anomalies": 0, "billed_amount": "18.00"}
    session.expire_all()
    assert ledger.account_balance(session, acct.id) == 100_000 - 1800


def test_importing_the_same_file_twice_moves_no_money_the_second_time(session, billed_account, tmp_path):
    acct, meter = billed_account()
    text = (f"{meter.serial},2026-07-01T00:00:00+08:00,1000\n"
            f"{meter.serial},2026-07-01T01:00:00+08:00,1010\n")
    run_import(tmp_path, text)
    res = run_import(tmp_path, text)
    assert json.loads(res.stdout.strip().splitlines()[-1]) == {
        "accepted": 0, "duplicates": 2, "anomalies": 0, "billed_amount": "0.00"}
    session.expire_all()
    assert ledger.account_balance(session, acct.id) == 100_000 - 600


def test_bad_rows_are_reported_by_line_and_the_good_rows_still_go_in(session, billed_account, tmp_path):
    acct, meter = billed_account()
    s = meter.serial
    res = run_import(tmp_path, "meter_serial,taken_at,total\n"
                               f"{s},2026-07-01T00:00:00+08:00,1000\n"
                               f"NOSUCH,2026-07-01T01:00:00+08:00,1010\n"
                               f"{s},yesterday,1010\n"
                               f"{s},2026-07-01T02:00:00+08:00,12x\n"
                               f"{s},2026-07-01T03:00:00+08:00\n"
                               f"{s},2026-07-01T04:00:00+08:00,1005\n")
    assert res.exit_code == 0
    assert "line 3: meter_serial: no meter 'NOSUCH'" in res.stderr
    assert "line 4: taken_at: 'yesterday'" in res.stderr
    assert "line 5: total: '12x' is not a decimal" in res.stderr
    assert "line 6: total: missing" in res.stderr
    assert json.loads(res.stdout.strip().splitlines()[-1])["accepted"] == 2
    assert run_import(tmp_path, f"{s},2026-07-01T05:00:00+08:00,x\n", "--strict").exit_code == 1


def test_per_period_columns_and_naive_times_in_the_site_timezone(session, billed_account):
    tou = {"kind": "tou", "unit": "kWh", "prices": {"peak": "1.0", "valley": "0.2"},
           "day_tables": {"d": [["00:00", "valley"], ["08:00", "peak"]]}}
    acct, meter = billed_account(tou)
    s = meter.serial
    summary = import_text(f"meter_serial,taken_at,total,peak,valley\n"
                          f"{s},2026-07-01 00:00,100,40,60\n"
                          f"{s},2026-07-02 00:00,110,41,69\n")
    # the meter's registers decide: 1 kWh peak, 9 kWh valley (not the 16:8 of the clock)
    assert summary.billed_fen == 100 + 180
    stored = session.scalar(select(Reading).order_by(Reading.taken_at))
    assert stored.taken_at.isoformat() == "2026-06-30T16:00:00+00:00"


def test_a_wrong_header_is_refused_before_anything_goes_in(session, billed_account, tmp_path):
    acct, meter = billed_account()
    res = run_import(tmp_path, "meter_serial,when,total\nX,2026-07-01T00:00:00+08:00,1\n")
    assert res.exit_code != 0 and "header" in res.stderr and "Traceback" not in res.output
    assert session.scalar(select(func.count()).select_from(Reading)) == 0


def test_small_chunks_bill_the_same_as_one_chunk(session, billed_account):
    a1, m1 = billed_account()
    a2, m2 = billed_account()
    rows = []
    for h in range(10):
        rows.append(f"{m1.serial},2026-07-01T{h:02d}:00:00+08:00,{100 + h * 3}")
        rows.append(f"{m2.serial},2026-07-01T{h:02d}:00:00+08:00,{100 + h * 3}")
    one = import_text("\n".join(rows[::2]) + "\n")
    many = import_text("\n".join(rows[1::2]) + "\n", chunk_size=3)
    assert one.billed_fen == many.billed_fen == 27 * 60
    session.expire_all()
    assert validate(session) == []


def test_rows_per_transaction_come_from_the_environment_or_the_database(monkeypatch):
    import pytest

    from core.billing.csv_import import DEFAULT_CHUNK, SQLITE_CHUNK, default_chunk
    from core.config import get_settings
    from core.errors import ValidationError
    monkeypatch.delenv("METERPAY_IMPORT_CHUNK", raising=False)
    assert default_chunk() == (SQLITE_CHUNK if get_settings().is_sqlite else DEFAULT_CHUNK)
    monkeypatch.setenv("METERPAY_IMPORT_CHUNK", "1234")
    assert default_chunk() == 1234
    for bad in ("lots", "0", "-5"):
        monkeypatch.setenv("METERPAY_IMPORT_CHUNK", bad)
        with pytest.raises(ValidationError, match="METERPAY_IMPORT_CHUNK"):
            default_chunk()
