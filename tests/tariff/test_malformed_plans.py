"""A malformed plan is refused with a message naming the field; the CLI exits non-zero, no traceback."""
from __future__ import annotations

import copy
import json

import pytest
from click.testing import CliRunner

from core.errors import ValidationError
from core.tariffs import parse_plan
from meterpay.cli import cli
from tests.tariff.plans import BEIJING_RESIDENTIAL, GUANGDONG_TOU, usage


def broken(plan: dict, path: list, value) -> dict:
    plan = copy.deepcopy(plan)
    target = plan
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return plan


CASES = [
    (broken(GUANGDONG_TOU, ["day_tables", "normal", 2], ["13:00", "peak"]), "day_tables.normal[3]"),  # unsorted
    (broken(GUANGDONG_TOU, ["day_tables", "normal", 1], ["00:00", "flat"]), "day_tables.normal[1]"),  # overlap
    (broken(GUANGDONG_TOU, ["day_tables", "normal", 0], ["00:00", "shoulder"]), "shoulder"),
    (broken(GUANGDONG_TOU, ["prices", "midnight"], "0.1"), "prices.midnight"),
    (broken(GUANGDONG_TOU, ["day_tables", "normal", 0], ["25:00", "valley"]), "day_tables.normal[0]"),
    (broken(GUANGDONG_TOU, ["calendar", 0, "table"], "winter"), "calendar[0].table"),
    (broken(GUANGDONG_TOU, ["default_table"], "nope"), "default_table"),
    (broken(GUANGDONG_TOU, ["prices", "valley"], KeyError), "valley"),
    (broken(BEIJING_RESIDENTIAL, ["tiers", 1, "upto"], "200"), "tiers[1].upto"),  # not increasing
    (broken(BEIJING_RESIDENTIAL, ["tiers", 0, "upto"], None), "tiers[0].upto"),
    (broken(BEIJING_RESIDENTIAL, ["tiers", 2, "price"], "-0.1"), "tiers[2].price"),  # negative
    (broken(BEIJING_RESIDENTIAL, ["tiers", 2, "price"], KeyError), "tiers[2].price"),  # missing
    (broken(BEIJING_RESIDENTIAL, ["cycle"], "week"), "cycle"),
    (broken(BEIJING_RESIDENTIAL, ["tiers"], KeyError), "tiers"),
    ({"kind": "flat", "unit": "kWh"}, "price"),
    ({"kind": "flat", "unit": "kWh", "price": "-1"}, "price"),
    ({"kind": "flat", "unit": "kWh", "price": "six"}, "price"),
    ({"kind": "flat", "unit": "kWh", "price": [1]}, "price"),
    ({"kind": "flat", "unit": "kWh", "price": "0.12345"}, "price"),
    ({"kind": "flat", "unit": "kW", "price": "1"}, "unit"),
    ({"kind": "stepped", "unit": "kWh", "price": "1"}, "kind"),
    ({"unit": "kWh", "price": "1"}, "kind"),
    ({"kind": "flat", "unit": "kWh", "price": "1", "monthly_charge": "x"}, "monthly_charge"),
]


@pytest.mark.parametrize("plan,names", CASES)
def test_a_malformed_plan_is_refused_naming_the_field(plan, names):
    with pytest.raises(ValidationError) as err:
        parse_plan(plan)
    assert names in err.value.message


def test_more_than_14_segments_are_refused():
    table = [[f"{h:02d}:00", "peak"] for h in range(15)]
    with pytest.raises(ValidationError, match=r"day_tables.d: has 15 segments"):
        parse_plan({"kind": "tou", "unit": "kWh", "prices": {"peak": "1"}, "day_tables": {"d": table}})


def test_quote_cli_prints_the_json(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(BEIJING_RESIDENTIAL))
    (tmp_path / "usage.json").write_text(json.dumps(usage(("2026-07-01T00:00:00+08:00", "1000.00"),
                                                          ("2026-07-31T00:00:00+08:00", "1500.00"))))
    res = CliRunner().invoke(cli, ["tariff", "quote", "--plan", str(tmp_path / "plan.json"),
                                   "--usage", str(tmp_path / "usage.json")])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["total"] == "282.15"


@pytest.mark.parametrize("plan,names", CASES[:4] + CASES[8:9])
def test_quote_cli_refuses_a_malformed_plan_without_a_traceback(tmp_path, plan, names):
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "usage.json").write_text(json.dumps(usage(("2026-07-01T00:00:00+08:00", "1"))))
    res = CliRunner().invoke(cli, ["tariff", "quote", "--plan", str(tmp_path / "plan.json"),
                                   "--usage", str(tmp_path / "usage.json")])
    assert res.exit_code != 0
    assert names in res.stderr and "Traceback" not in res.output + res.stderr


@pytest.mark.parametrize("bad,names", [
    ({"readings": [{"at": "2026-07-01T00:00:00", "total": "1"}]}, "readings[0].at"),
    ({"readings": [{"at": "2026-07-01T00:00:00+08:00"}]}, "readings[0].total"),
    ({"readings": [{"at": "2026-07-01T00:00:00+08:00", "total": "2"},
                   {"at": "2026-07-02T00:00:00+08:00", "total": "1"}]}, "readings[1].total"),
    ({"readings": [{"at": "2026-07-01T00:00:00+08:00", "total": "1", "periods": {"noon": "1"}}]}, "noon"),
    ({"rows": []}, "readings"),
])
def test_malformed_usage_is_refused_naming_the_field(bad, names):
    from core.tariffs import quote
    with pytest.raises(ValidationError) as err:
        quote(BEIJING_RESIDENTIAL, bad)
    assert names in err.value.message


def test_json_numbers_are_read_as_the_decimals_they_were_written_as():
    from decimal import Decimal

    from core.tariffs import quote
    assert parse_plan({"kind": "flat", "unit": "kWh", "price": 0.6}).price == Decimal("0.6")
    q = quote({"kind": "flat", "unit": "kWh", "price": 0.6},
              {"readings": [{"at": "2026-07-01T00:00:00+08:00", "total": 1000.1},
                            {"at": "2026-07-02T00:00:00+08:00", "total": 1010.2}]})
    assert q["total"] == "6.06"
