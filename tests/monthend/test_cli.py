"""``meterpay charges|apportion|month-end`` as issue 12's contracts say, and one ``error:`` line with
exit 2 for bad input."""
from __future__ import annotations

import json

from click.testing import CliRunner

from meterpay.cli import cli

SCHEME = {"name": "物业费", "code": "property", "basis": "per_m2", "amount": "2.5", "every": "month", "day": 1,
          "mode": "deduct", "prorate": "days", "start": "2026-01-01", "scope": {"floors": [["A", "1"]]}}
RULE = {"name": "公区电", "master": "EM-COMMON", "basis": "ratio", "accounts": {"101": 1, "102": 1, "103": 1},
        "mode": "deduct"}


def run(*args):
    return CliRunner().invoke(cli, list(args))


def ok_json(*args):
    r = run(*args)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_charges_add_prints_the_id_and_list_shows_it(garden, write_json):
    out = ok_json("charges", "add", "--site", "Garden", "--scheme", write_json(SCHEME))
    assert list(out) == ["id"] and isinstance(out["id"], int)
    listed = ok_json("charges", "list", "--site", "Garden", "--json")
    assert [(s["id"], s["code"], s["amount"], s["scope"]) for s in listed] == [
        (out["id"], "property", "2.5", {"floors": [["A", "1"]]})]
    text = run("charges", "list", "--site", "Garden")
    assert text.exit_code == 0 and "property" in text.stdout


def test_bad_schemes_and_rules_are_one_error_line(garden, write_json):
    for bad, word in (({**SCHEME, "basis": "per_room"}, "basis"), ({**SCHEME, "amount": "1.23456"}, "four"),
                      ({**SCHEME, "scope": {"rooms": ["999"]}}, "999"), ({**SCHEME, "day": 31}, "day"),
                      ({**SCHEME, "every": "once"}, "date"), ({**SCHEME, "code": "物业"}, "code")):
        r = run("charges", "add", "--site", "Garden", "--scheme", write_json(bad))
        assert r.exit_code == 2 and r.stderr.startswith("error:") and word in r.stderr, (bad, r.output)
        assert r.stderr.count("\n") == 1
    for bad, word in (({**RULE, "master": "NOPE"}, "master"), ({**RULE, "accounts": ["101"]}, "ratio"),
                      ({**RULE, "basis": "area", "accounts": ["101", "404"]}, "404"),
                      ({**RULE, "accounts": {"101": 0}}, "weight")):
        r = run("apportion", "add", "--site", "Garden", "--rule", write_json(bad))
        assert r.exit_code == 2 and r.stderr.startswith("error:") and word in r.stderr, (bad, r.output)
    r = run("charges", "add", "--site", "Nowhere", "--scheme", write_json(SCHEME))
    assert r.exit_code == 2 and "Nowhere" in r.stderr
    ok_json("charges", "add", "--site", "Garden", "--scheme", write_json(SCHEME))
    r = run("charges", "add", "--site", "Garden", "--scheme", write_json(SCHEME))
    assert r.exit_code == 2 and "property" in r.stderr  # one code per site


def test_month_end_json_contract(garden, write_json):
    ok_json("charges", "add", "--site", "Garden", "--scheme", write_json(SCHEME))
    rule = ok_json("apportion", "add", "--site", "Garden", "--rule", write_json(RULE, "rule.json"))
    assert list(rule) == ["id"]
    preview = ok_json("month-end", "--site", "Garden", "--period", "2026-04", "--preview", "--json")
    out = ok_json("month-end", "--site", "Garden", "--period", "2026-04", "--json")
    assert {"period", "charges_fen", "apportioned_fen", "bills", "lines"} <= set(out)
    assert out["period"] == "2026-04" and out["bills"] == 0
    assert out["charges_fen"] == 12563 + 7625 + 4813 and out["apportioned_fen"] == 10001
    for ln in out["lines"]:
        assert set(ln) == {"room", "kind", "code", "amount"} and ln["kind"] in ("charge", "apportion", "energy")
    lines = sorted((ln["room"], ln["kind"], ln["code"], ln["amount"]) for ln in out["lines"])
    assert ("101", "charge", "property", "125.63") in lines and ("101", "apportion", "apportion:electricity",
                                                                 "33.34") in lines
    assert sorted((ln["room"], ln["kind"], ln["code"], ln["amount"]) for ln in preview["lines"]) == lines
    assert (preview["charges_fen"], preview["apportioned_fen"]) == (out["charges_fen"], out["apportioned_fen"])
    again = ok_json("month-end", "--site", "Garden", "--period", "2026-04", "--json")
    assert again["entries"] == 0 and again["charges_fen"] == out["charges_fen"]
    text = run("month-end", "--site", "Garden", "--period", "2026-04")
    assert text.exit_code == 0 and "125.63" in text.stdout
    check = run("ledger", "check")
    assert check.exit_code == 0, check.output


def test_month_end_exits_0_when_nothing_is_due_and_2_for_bad_input(garden):
    out = ok_json("month-end", "--site", "Garden", "--period", "2026-06", "--json")
    assert (out["charges_fen"], out["apportioned_fen"], out["bills"], out["lines"]) == (0, 0, 0, [])
    for args in (("--period", "2026-13"), ("--period", "2026/04"), ("--site", "Nowhere")):
        base = {"--site": "Garden", "--period": "2026-04"}
        base[args[0]] = args[1]
        r = run("month-end", *[x for kv in base.items() for x in kv], "--json")
        assert r.exit_code == 2 and r.stderr.startswith("error:"), r.output


def test_apportion_master_plan_sets_the_common_meters_own_plan(session, garden):
    from core.models import Meter
    out = ok_json("apportion", "master-plan", "--site", "Garden", "--meter", "EM-COMMON", "--tariff", "电")
    assert out["meter"] == "EM-COMMON" and out["tariff_plan_id"]
    r = run("apportion", "master-plan", "--site", "Garden", "--meter", garden.accounts["101"].meters[0].serial,
            "--tariff", "电")
    assert r.exit_code == 2 and "account" in r.stderr
    session.expire_all()
    assert session.get(Meter, garden.master.id).tariff_plan_id == out["tariff_plan_id"]
