"""Each protocol end to end: the field tools read and command simulated meters over real TCP."""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from hardware import field
from hardware.errors import BadFrame, CommError, GatewayDown, NoReply, WrongAddress


def run_cli(*args):
    from meterpay.cli import cli
    return CliRunner(mix_stderr=False).invoke(cli, list(args), catch_exceptions=False) if _mix_ok() else \
        CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _mix_ok():
    import inspect
    return "mix_stderr" in inspect.signature(CliRunner.__init__).parameters


def test_acrel_meter_read_prints_the_json_keys(simulator):
    gw = simulator("modbus-rtu", [("acrel-ddsy1352", "1"), ("acrel-ddsy1352", "2")])
    result = run_cli("meter", "read", "--gateway", gw.url, "--protocol", "modbus-rtu", "--address", "2",
                     "--profile", "acrel-ddsy1352", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    sim = gw.meter("2")
    assert set(data) == {"total_kwh", "periods", "voltage_v", "current_a", "power_kw", "power_factor", "relay"}
    assert set(data["periods"]) == {"sharp", "peak", "flat", "valley"}
    assert abs(Decimal(data["total_kwh"]) - Decimal(str(sim.total_kwh))) < Decimal("0.1")
    assert data["relay"] == "on"


def test_acrel_relay_off_stops_consumption(simulator):
    gw = simulator("modbus-rtu", [("acrel-ddsy1352", "7")])
    out = field.command(gw.url, "modbus-rtu", "7", "relay_off")
    assert out["confirmed"] and out["values"]["relay"] == "off"
    before = field.read(gw.url, "modbus-rtu", "7").total_kwh
    import time
    time.sleep(0.3)
    assert field.read(gw.url, "modbus-rtu", "7").total_kwh == before
    assert gw.meter("7").applied == ["relay off"]


def test_modbus_tcp_framing_reads_the_same_meter(simulator):
    gw = simulator("modbus-tcp", [("acrel-dtsy1352", "3")])
    values = field.read(gw.url, "modbus-tcp", "3", "acrel-dtsy1352")
    assert values.total_kwh > 0 and values.relay == "on"


def test_dlt645_meter_reads_energy_rates_balance_and_count(simulator):
    gw = simulator("dlt645", [("dlt645-2007", "000000001234")], baud=9600)
    sim = gw.meter("000000001234")
    v = field.read(gw.url, "dlt645", "000000001234", "dlt645-2007")
    assert v.purchase_count == sim.purchase_count
    assert v.remaining_fen == pytest.approx(sim.balance_fen, abs=50)
    assert sum(v.periods.values()) == pytest.approx(v.total_kwh, abs=Decimal("0.05"))
    assert v.relay == "on"


def test_dlt645_relay_keep_power_prices_alarms_tou_and_clock_are_confirmed_by_reading_back(simulator):
    gw = simulator("dlt645", [("dlt645-2007", "000000000001")])
    a = "000000000001"
    assert field.command(gw.url, "dlt645", a, "relay_off")["confirmed"]
    assert field.command(gw.url, "dlt645", a, "relay_on")["confirmed"]
    assert field.command(gw.url, "dlt645", a, "keep_power_on")["confirmed"]
    assert field.command(gw.url, "dlt645", a, "set_prices", {"prices": {"peak": "1.2345", "valley": "0.3"}})[
        "confirmed"]
    assert gw.meter(a).prices["peak"] == Decimal("1.2345")
    assert field.command(gw.url, "dlt645", a, "set_alarms", {"alarm1_fen": 3000, "alarm2_fen": 1000})["confirmed"]
    assert field.command(gw.url, "dlt645", a, "set_tou", {"slots": [
        {"start": "00:00", "period": "valley"}, {"start": "08:00", "period": "flat"},
        {"start": "10:00", "period": "peak"}]})["confirmed"]
    assert field.sync_clock(gw.url, "dlt645", a)["confirmed"]
    assert field.sync_clock(gw.url, "dlt645", a, broadcast=True)["confirmed"]
    assert "broadcast time" in gw.meter(a).applied


def test_dlt645_recharge_adds_once_even_when_the_same_purchase_is_run_twice(simulator):
    gw = simulator("dlt645", [("dlt645-2007", "000000000009")])
    sim = gw.meter("000000000009")
    n = sim.purchase_count + 1
    first = field.recharge(gw.url, "dlt645", "000000000009", 5000, purchase_count=n)
    again = field.recharge(gw.url, "dlt645", "000000000009", 5000, purchase_count=n)
    assert first["confirmed"] and not first["already_applied"] and first["purchase_count"] == n
    assert again["already_applied"]
    assert [a for a in sim.applied if a.startswith("recharge")] == [f"recharge 5000 #{n}"]


def test_the_simulated_meter_refuses_a_stale_purchase_count(simulator):
    from hardware.codecs import dlt645
    gw = simulator("dlt645", [("dlt645-2007", "000000000002")])
    sim = gw.meter("000000000002")
    frame, _ = dlt645.decode(dlt645.recharge_request(sim.address, 100, sim.purchase_count))
    reply, _ = dlt645.decode(sim.handle(frame))
    assert reply.is_error and sim.applied == []


def test_cjt188_water_meter_reads_and_closes_its_valve(simulator):
    gw = simulator("cjt188", [("cjt188-water", "12345678901234")], baud=2400)
    v = field.read(gw.url, "cjt188", "12345678901234")
    assert v.valve == "open" and v.water_m3 > 0
    out = field.command(gw.url, "cjt188", "12345678901234", "valve_close")
    assert out["confirmed"] and out["values"]["valve"] == "closed"


def test_modbus_valve_water_meter_over_cli(simulator):
    gw = simulator("modbus-rtu", [("modbus-valve-water", "5")])
    res = run_cli("meter", "valve", "--gateway", gw.url, "--protocol", "modbus-rtu", "--address", "5",
                  "--profile", "modbus-valve-water", "close", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["values"] == {"water_m3": json.loads(res.stdout)["values"]["water_m3"],
                                                "valve": "closed"}


@pytest.mark.parametrize("fault, error", [("garbage", CommError), ("bad_checksum", (BadFrame, NoReply)),
                                          ("wrong_address", WrongAddress), ("no_reply", NoReply)])
@pytest.mark.parametrize("protocol, profile, address", [
    ("modbus-rtu", "acrel-ddsy1352", "4"), ("dlt645", "dlt645-2007", "000000000004"),
    ("cjt188", "cjt188-water", "00000000000004")])
def test_a_spoiled_reply_never_becomes_a_reading(simulator, protocol, profile, address, fault, error):
    gw = simulator(protocol, [(profile, address)])
    gw.meter(address).script.append(fault)
    with pytest.raises(error):
        field.read(gw.url, protocol, address, profile)
    # and the bus recovers for the next request
    assert field.read(gw.url, protocol, address, profile).to_json()


def test_the_cli_says_one_line_when_the_gateway_is_dead():
    res = run_cli("meter", "read", "--gateway", "tcp://127.0.0.1:9", "--protocol", "dlt645", "--address",
                  "000000000001", "--json")
    assert res.exit_code != 0
    assert "Traceback" not in (res.output + (res.stderr if _mix_ok() else ""))
    err = res.stderr if _mix_ok() else res.output
    assert err.strip().startswith("error: gateway 127.0.0.1:9 is not reachable")


def test_the_cli_says_one_line_on_timeout(simulator):
    gw = simulator("modbus-rtu", [("acrel-ddsy1352", "1")])
    res = run_cli("meter", "read", "--gateway", gw.url, "--protocol", "modbus-rtu", "--address", "9", "--json",
                  "--timeout", "0.2")
    err = res.stderr if _mix_ok() else res.output
    assert res.exit_code != 0 and err.strip() == "error: unit 9 did not answer within 0.2s"


def test_the_cli_rejects_a_bad_gateway_url_and_a_bad_amount():
    res = run_cli("meter", "read", "--gateway", "http://x", "--protocol", "modbus-rtu", "--address", "1")
    assert res.exit_code != 0 and "tcp://HOST:PORT" in (res.stderr if _mix_ok() else res.output)
    for url in ("tcp://127.0.0.1:abc", "tcp://127.0.0.1:99999"):
        res = run_cli("meter", "read", "--gateway", url, "--protocol", "dlt645", "--address", "1")
        assert res.exit_code != 0 and "tcp://HOST:PORT" in (res.stderr if _mix_ok() else res.output)
    res = run_cli("meter", "recharge", "--gateway", "tcp://127.0.0.1:9", "--protocol", "dlt645", "--address", "1",
                  "--amount", "-5")
    assert res.exit_code != 0 and "negative" in (res.stderr if _mix_ok() else res.output)


def test_an_acrel_meter_cannot_be_recharged_meter_side(simulator):
    gw = simulator("modbus-rtu", [("acrel-ddsy1352", "1")])
    res = run_cli("meter", "recharge", "--gateway", gw.url, "--protocol", "modbus-rtu", "--address", "1",
                  "--amount", "50.00")
    assert res.exit_code != 0 and "platform-side" in (res.stderr if _mix_ok() else res.output)
    assert gw.meter("1").applied == []


def test_a_gateway_that_goes_down_is_gateway_down(simulator):
    gw = simulator("dlt645", [("dlt645-2007", "000000000001")])
    gw.sim.set_down(gw, True)
    with pytest.raises(GatewayDown):
        field.read(gw.url, "dlt645", "000000000001")
    gw.sim.set_down(gw, False)
    assert field.read(gw.url, "dlt645", "000000000001").total_kwh > 0


def test_the_field_cli_needs_no_database(simulator):
    import os
    import subprocess
    import sys
    gw = simulator("cjt188", [("cjt188-water", "00000000000001")])
    env = dict(os.environ, METERPAY_DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    out = subprocess.run([sys.executable, "-c", "from meterpay.cli import main; main()", "meter", "read",
                          "--gateway", gw.url, "--protocol", "cjt188", "--address", "00000000000001", "--json"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["valve"] == "open"


# --- field variations real meters and gateways show (issue 14, items 3 and 4) ---------------

def _with_profile(profile, url, protocol, address, kind=None):
    """Read (or send ``kind`` and read back) with a profile object that is not registered."""
    from hardware import aio
    from hardware.transports import open_link

    async def go():
        async with open_link(url, protocol, 0.4) as link:
            if kind is None:
                return await profile.read(link, address)
            await profile.send(link, address, kind, {})
            return await profile.verify(link, address, kind, {})
    return aio.run(go())


def test_a_dlt645_meter_refusing_the_block_and_current_is_read_and_its_relay_confirmed(simulator):
    gw = simulator("dlt645", [("dlt645-2007", "000000000021")])
    sim = gw.meter("000000000021")
    sim.refuses = {0x0000FF00, 0x02020100}
    v = field.read(gw.url, "dlt645", sim.address)
    assert v.current_a is None and v.voltage_v is not None
    assert set(v.periods) == {"sharp", "peak", "flat", "valley"}
    assert sum(v.periods.values()) == pytest.approx(v.total_kwh, abs=Decimal("0.05"))
    out = field.command(gw.url, "dlt645", sim.address, "relay_off")
    assert out["confirmed"] and out["values"]["relay"] == "off" and sim.relay_on is False


def test_a_dlt645_meter_that_refuses_a_live_value_with_other_error_still_reads(simulator):
    gw = simulator("dlt645", [("dlt645-2007", "000000000022")])
    sim = gw.meter("000000000022")
    sim.refuses = {0x02060000}
    sim.refusal_code = 0x01
    assert field.read(gw.url, "dlt645", sim.address).power_factor is None


@pytest.mark.parametrize("protocol, profile, address", [
    ("modbus-rtu", "acrel-ddsy1352", "4"), ("modbus-tcp", "acrel-ddsy1352", "4"),
    ("dlt645", "dlt645-2007", "000000000004"), ("cjt188", "cjt188-water", "00000000000004")])
def test_a_gateway_that_hangs_up_after_a_request_is_gateway_down_at_once(simulator, protocol, profile, address):
    import time
    gw = simulator(protocol, [(profile, address)])
    gw.meter(address).script.append("hang_up")
    t = time.perf_counter()
    with pytest.raises(GatewayDown, match="closed the connection"):
        field.read(gw.url, protocol, address, profile, timeout=2)
    assert time.perf_counter() - t < 0.5
    assert field.read(gw.url, protocol, address, profile).to_json()  # the next connection works


def test_a_modbus_link_reconnects_after_the_gateway_hung_up(simulator):
    from hardware import aio
    from hardware.transports import open_link
    gw = simulator("modbus-rtu", [("acrel-ddsy1352", "6")])
    gw.meter("6").script.append("hang_up")

    async def go():
        async with open_link(gw.url, "modbus-rtu", 2) as link:
            with pytest.raises(GatewayDown):
                await link.read(6, 0, 2)
            return await link.read(6, 0, 2)
    assert len(aio.run(go())) == 2


def test_a_battery_water_meter_answers_only_after_wake_up_bytes(simulator):
    from dataclasses import replace

    from hardware import profiles
    gw = simulator("cjt188", [("cjt188-water", "00000000000031")])
    sim = gw.meter("00000000000031")
    sim.wake_up = 2
    with pytest.raises(NoReply):
        field.read(gw.url, "cjt188", sim.address)
    woken = replace(profiles.get("cjt188-water"), name="cjt188-wake-2", wake_up=2)
    assert _with_profile(woken, gw.url, "cjt188", sim.address).valve == "open"
    ok, values, _ = _with_profile(woken, gw.url, "cjt188", sim.address, "valve_close")
    assert ok and sim.valve_open is False


def test_a_water_meter_of_the_other_di_order_needs_its_profile_and_either_reply_order_is_taken(simulator):
    from dataclasses import replace

    from hardware import profiles
    from hardware.errors import MeterRefused
    gw = simulator("cjt188", [("cjt188-water", "00000000000032"), ("cjt188-water", "00000000000033")])
    high = gw.meter("00000000000032")
    high.di_order = "high-first"
    with pytest.raises(MeterRefused):
        field.read(gw.url, "cjt188", high.address)
    variant = replace(profiles.get("cjt188-water"), name="cjt188-high-first", di_order="high-first")
    assert _with_profile(variant, gw.url, "cjt188", high.address).water_m3 > 0
    ok, _values, _ = _with_profile(variant, gw.url, "cjt188", high.address, "valve_close")
    assert ok and high.valve_open is False
    # a meter that takes low-first requests but answers high-first: the default profile reads it
    odd = gw.meter("00000000000033")
    odd.reply_di_order = "high-first"
    assert field.read(gw.url, "cjt188", odd.address).valve == "open"
    assert field.command(gw.url, "cjt188", odd.address, "valve_close")["confirmed"]


def test_a_refused_recharge_says_why_with_the_03h_error_word(simulator):
    from hardware import aio, profiles
    from hardware.errors import MeterRefused
    from hardware.transports import open_link
    gw = simulator("dlt645", [("dlt645-2007", "000000000023")])
    sim = gw.meter("000000000023")
    prof = profiles.get("dlt645-2007")

    async def send(count):
        async with open_link(gw.url, "dlt645", 0.4) as link:
            await prof.send_recharge(link, sim.address, 100, count)
    with pytest.raises(MeterRefused, match="repeated recharge") as info:
        aio.run(send(sim.purchase_count))
    assert info.value.code == 0x0002
    with pytest.raises(MeterRefused, match="purchase count error") as info:
        aio.run(send(sim.purchase_count + 5))
    assert info.value.code == 0x0020
    assert sim.applied == []


def test_a_registered_cjt188_variant_is_read_by_name_and_simulated_with_its_settings(simulator):
    from dataclasses import replace

    from hardware import profiles
    variant = replace(profiles.get("cjt188-water"), name="test-cjt188-battery", di_order="high-first", wake_up=2)
    profiles.register(variant)
    try:
        gw = simulator("cjt188", [("test-cjt188-battery", "00000000000041")])
        sim = gw.meter("00000000000041")
        assert (sim.di_order, sim.wake_up) == ("high-first", 2)
        with pytest.raises(NoReply):  # the default profile neither wakes it nor speaks its order
            field.read(gw.url, "cjt188", sim.address)
        assert field.read(gw.url, "cjt188", sim.address, "test-cjt188-battery").valve == "open"
        assert field.command(gw.url, "cjt188", sim.address, "valve_close", profile="test-cjt188-battery")[
            "confirmed"]
    finally:
        del profiles.PROFILES["test-cjt188-battery"]
