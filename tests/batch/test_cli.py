"""``meterpay batch ...`` as the issue's contract says: flags, JSON keys, exit codes."""
from __future__ import annotations

import json
from datetime import timedelta

from click.testing import CliRunner

from core.batch import tasks
from core.utils import utcnow
from meterpay.cli import cli
from tests.batch.helpers import drive


def run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def rooms_of(factory, site):
    for floor in ("2", "3"):
        for n in (1, 2):
            factory.account(room=factory.room(site, number=f"{floor}0{n}", building="A", floor=floor))
    factory.account(room=factory.room(site, number="B101", building="B", floor="1"))


def test_create_by_floor_prints_id_items_and_no_time(factory, session):
    site = factory.site("Tower")
    rooms_of(factory, site)
    r = run("batch", "create", "--site", "Tower", "--action", "relay_off", "--floor", "A:3", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out) >= {"id", "items", "scheduled_at"} and out["items"] == 2 and out["scheduled_at"] is None
    shown = json.loads(run("batch", "show", str(out["id"]), "--json").output)
    assert set(shown) >= {"id", "state", "counts", "items"}
    assert set(shown["counts"]) == {"queued", "sent", "confirmed", "failed", "skipped", "cancelled"}
    assert [(i["room"], set(i)) for i in shown["items"]][0][1] >= {"room", "meter", "state", "reason"}
    assert [i["room"] for i in shown["items"]] == ["301", "302"]
    assert shown["state"] == "pending" and shown["counts"]["queued"] == 2


def test_create_by_building_all_and_a_rooms_file(factory, session, tmp_path):
    site = factory.site("Mall")
    rooms_of(factory, site)
    by_building = json.loads(run("batch", "create", "--site", "Mall", "--action", "sync_clock", "--building", "B",
                                 "--json").output)
    assert by_building["items"] == 1
    everything = json.loads(run("batch", "create", "--site", "Mall", "--action", "relay_on", "--all", "--json").output)
    assert everything["items"] == 5
    for name, text in (("r.txt", "201\n302\n"), ("r.csv", "room,amount\n201,20.00\n302,5\n")):
        f = tmp_path / name
        f.write_text(text)
        out = json.loads(run("batch", "create", "--site", "Mall", "--action", "recharge", "--rooms", str(f),
                             "--params", '{"amount": "20.00"}', "--json").output)
        assert out["items"] == 2
    unknown = tmp_path / "bad.txt"
    unknown.write_text("201\n999\n")
    bad = run("batch", "create", "--site", "Mall", "--action", "relay_off", "--rooms", str(unknown))
    assert bad.exit_code == 2 and "999" in bad.output


def test_params_per_action_and_their_refusals(factory, session):
    from core.tariffs.store import add_plan
    site = factory.site("Dorm")
    rooms_of(factory, site)
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.1"})
    session.commit()
    ok = {
        "recharge": '{"amount": "20.00"}',
        "set_meter_prices": '{"prices": {"sharp": "1.2000", "peak": "1.0000", "flat": "0.6000", "valley": "0.3000"}}',
        "set_alarms": '{"alarm1": "50.00", "alarm2": "20.00", "alarm3": "0.00"}',
        "set_tariff": '{"electricity": "商业电价", "from": "2020-01-01"}',
        "charge": '{"code": "rent", "name": "租金", "amount": "100.00"}',
    }
    for action, params in ok.items():
        r = run("batch", "create", "--site", "Dorm", "--action", action, "--all", "--params", params, "--json")
        assert r.exit_code == 0, (action, r.output)
    for action, params in (("recharge", '{"amount": 20.5}'), ("recharge", '{"amount": "-1"}'),
                           ("set_alarms", '{"alarm1": "10.00", "alarm2": "20.00"}'),
                           ("set_tariff", '{"electricity": "nope"}'), ("charge", '{"amount": "1.00"}'),
                           ("relay_off", "[1]"), ("fly", "{}")):
        r = run("batch", "create", "--site", "Dorm", "--action", action, "--all", "--params", params)
        assert r.exit_code == 2 and r.output.startswith("error:"), (action, params, r.output)
    assert run("batch", "create", "--site", "Nowhere", "--action", "relay_off", "--all").exit_code == 2
    assert run("batch", "create", "--site", "Dorm", "--action", "relay_off", "--floor", "A3").exit_code == 2
    assert run("batch", "create", "--site", "Dorm", "--action", "relay_off").exit_code == 2


def test_at_run_cancel_and_retry(factory, session):
    site = factory.site("Hotel")
    rooms_of(factory, site)
    at = (utcnow() + timedelta(days=1)).astimezone(tasks.site_zone(site)).strftime("%Y-%m-%d %H:%M")
    out = json.loads(run("batch", "create", "--site", "Hotel", "--action", "charge", "--all", "--at", at,
                         "--params", '{"code": "svc", "name": "服务费", "amount": "1.00"}', "--json").output)
    assert out["scheduled_at"] == at
    task = out["id"]
    assert json.loads(run("batch", "show", str(task), "--json").output)["state"] == "scheduled"
    r = run("batch", "run", str(task))
    assert r.exit_code == 0 and "starts now" in r.output
    drive(task)
    shown = json.loads(run("batch", "show", str(task), "--json").output)
    assert shown["state"] == "finished" and shown["counts"]["confirmed"] == 5
    again = run("batch", "run", str(task))
    assert again.exit_code == 0 and "nothing done" in again.output
    assert "0 item" in run("batch", "retry", str(task), "--failed").output
    later = json.loads(run("batch", "create", "--site", "Hotel", "--action", "relay_off", "--all", "--at", at,
                           "--json").output)["id"]
    assert "cancelled" in run("batch", "cancel", str(later)).output
    assert json.loads(run("batch", "show", str(later), "--json").output)["counts"]["cancelled"] == 5
    past = run("batch", "create", "--site", "Hotel", "--action", "relay_off", "--all", "--at", "2001-01-01 08:00")
    assert past.exit_code == 2 and "passed" in past.output
    assert run("batch", "show", "99999").exit_code == 2
    assert "301" in run("batch", "show", str(later)).output


def test_a_plan_from_a_later_day_waits_for_that_day_even_with_an_earlier_at(factory, session):
    from core.tariffs.store import add_plan
    site = factory.site("Flats")
    rooms_of(factory, site)
    add_plan(session, "商业电价", {"kind": "flat", "unit": "kWh", "price": "1.1"})
    session.commit()
    zone = tasks.site_zone(site)
    at = (utcnow() + timedelta(days=1)).astimezone(zone).strftime("%Y-%m-%d %H:%M")
    start = (utcnow() + timedelta(days=10)).astimezone(zone).date().isoformat()
    out = json.loads(run("batch", "create", "--site", "Flats", "--action", "set_tariff", "--all", "--at", at,
                         "--params", json.dumps({"electricity": "商业电价", "from": start}), "--json").output)
    assert out["scheduled_at"] == f"{start} 00:00"
