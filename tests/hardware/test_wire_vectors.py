"""The real links and profiles against frames written out by hand from the standards.

Every frame below was written byte by byte from DL/T 645-2007, CJ/T 188-2004 and the Modbus
spec (data bytes +33H, BCD low byte first, DI low byte first; checksums are plain byte sums mod
256 from the first 68, Modbus CRC-16 low byte first) and checked by hand; none is built with
the code under test. They reproduce DESIGN.md's vectors (``... 11 04 33 33 33 33 F7 16`` and
the Acrel trip ``... 27 75``). The peer (tests/hardware/scripted_peer.py) knows no protocol.

DL/T 645 meter 000000001234 (``34 12 00 00 00 00`` on the wire), CJ/T 188 meters 12345678901234
and 00000000000042, Modbus unit 1. The clock of the DL/T 645 profile is frozen at 2026-01-02
03:04:05, so a 1CH command is valid until 03:14:05 (``05 14 03 02 01 26``).
"""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import pytest

from hardware import aio, field, profiles
from hardware.errors import GatewayDown, MeterRefused
from hardware.profiles import dlt645_base
from hardware.transports import open_link
from tests.hardware.scripted_peer import ScriptedPeer, frame

DLT_REQ = "FE FE FE FE 68 34 12 00 00 00 00 68 "
DLT_REP = "68 34 12 00 00 00 00 68 "


def req(text: str) -> bytes:
    return frame(DLT_REQ + text)


def rep(text: str) -> bytes:
    return frame(DLT_REP + text)


# --- DL/T 645-2007 requests (from the control byte on) ----------------------------------
READ_TOTAL = req("11 04 33 33 33 33 F7 16")          # 00000000
READ_BLOCK = req("11 04 33 32 33 33 F6 16")          # 0000FF00
READ_RATE1 = req("11 04 33 34 33 33 F8 16")          # 00000100 sharp
READ_RATE2 = req("11 04 33 35 33 33 F9 16")          # 00000200 peak
READ_RATE3 = req("11 04 33 36 33 33 FA 16")          # 00000300 flat
READ_RATE4 = req("11 04 33 37 33 33 FB 16")          # 00000400 valley
READ_VOLTAGE = req("11 04 33 34 34 35 FB 16")        # 02010100
READ_CURRENT = req("11 04 33 34 35 35 FC 16")        # 02020100
READ_POWER = req("11 04 33 33 36 35 FC 16")          # 02030000
READ_PF = req("11 04 33 33 39 35 FF 16")             # 02060000
READ_STATUS3 = req("11 04 36 38 33 37 03 16")        # 04000503
READ_REMAINING = req("11 04 33 35 C3 33 89 16")      # 00900200
READ_COUNT = req("11 04 34 35 66 36 30 16")          # 03330201
READ_SHARP_PRICE = req("11 04 34 34 38 37 02 16")    # 04050101
# 1CH: password 02000000, operator 00000000, N1, N2=00, valid until 2026-01-02 03:14:05
TRIP = req("1C 10 35 33 33 33 33 33 33 33 4D 33 38 47 36 35 34 59 D3 16")
CLOSE = req("1C 10 35 33 33 33 33 33 33 33 4F 33 38 47 36 35 34 59 D5 16")
KEEP = req("1C 10 35 33 33 33 33 33 33 33 6D 33 38 47 36 35 34 59 F3 16")
RELEASE = req("1C 10 35 33 33 33 33 33 33 33 6E 33 38 47 36 35 34 59 F4 16")
# 03H 070102FF: operator 0, 5000 fen (88 13 00 00), purchase #9, MAC1 0, customer 0, MAC2 0
RECHARGE_5000_9 = req("03 1E 32 35 34 3A 33 33 33 33 BB 46 33 33 3C 33 33 33" + " 33" * 14 + " DE 16")
# 14H 04050101 (sharp price), password 02000000, operator 0, 1.2000 yuan (NNNN.NNNN)
WRITE_SHARP_1_2 = req("14 10 34 34 38 37 35 33 33 33 33 33 33 33 33 53 34 33 98 16")
BROADCAST_TIME = frame("FE FE FE FE 68 99 99 99 99 99 99 68 08 06 38 37 36 35 34 59 DB 16")

# --- DL/T 645-2007 replies ----------------------------------------------------------------
TOTAL_12345_67 = rep("91 08 33 33 33 33 9A 78 56 34 17 16")
RATE1_10_00 = rep("91 08 33 34 33 33 33 43 33 33 58 16")
RATE2_20_00 = rep("91 08 33 35 33 33 33 53 33 33 69 16")
RATE3_30_00 = rep("91 08 33 36 33 33 33 63 33 33 7A 16")
RATE4_15_67 = rep("91 08 33 37 33 33 9A 48 33 33 C7 16")
VOLTAGE_220_0 = rep("91 06 33 34 34 35 33 55 05 16")
CURRENT_1_234 = rep("91 07 33 34 35 35 67 45 33 5E 16")
POWER_1_2345 = rep("91 07 33 33 36 35 78 56 34 81 16")
PF_0_950 = rep("91 06 33 33 39 35 83 3C 40 16")
REMAINING_50_00 = rep("91 08 33 35 C3 33 33 83 33 33 29 16")
COUNT_8 = rep("91 06 34 35 66 36 3B 33 20 16")
STATUS_RELAY_OFF = rep("91 06 36 38 33 37 43 33 FB 16")
STATUS_RELAY_ON = rep("91 06 36 38 33 37 33 33 EB 16")
CONTROL_OK = rep("9C 00 B2 16")
WRITE_OK = rep("94 00 AA 16")
READ_REFUSED = rep("D1 01 35 1D 16")                  # ERR 02: no data requested
RECHARGE_REFUSED_COUNT = rep("C3 02 53 33 61 16")     # SERR 0020: purchase count error

# --- CJ/T 188-2004 -------------------------------------------------------------------------
CJ_READ_LOW = frame("68 10 34 12 90 78 56 34 12 01 03 1F 90 00 15 16")
CJ_READ_HIGH = frame("68 10 34 12 90 78 56 34 12 01 03 90 1F 00 15 16")
CJ_VALVE_CLOSE_LOW = frame("68 10 42 00 00 00 00 00 00 04 04 17 A0 00 99 12 16")
CJ_VALVE_CLOSE_HIGH = frame("68 10 42 00 00 00 00 00 00 04 04 A0 17 00 99 12 16")
CJ_VALVE_OPEN_LOW = frame("68 10 42 00 00 00 00 00 00 04 04 17 A0 00 55 CE 16")
# 123.45 m3 (45 23 01 00 2C), settlement 120.00 (00 20 01 00 2C), 2026-01-02 03:04:05, ST 01 00 = closed
_CJ_DATA = "45 23 01 00 2C 00 20 01 00 2C 05 04 03 02 01 26 20 01 00 E0 16"
CJ_REPLY_LOW = frame("68 10 34 12 90 78 56 34 12 81 16 1F 90 00 " + _CJ_DATA)
CJ_REPLY_HIGH = frame("68 10 34 12 90 78 56 34 12 81 16 90 1F 00 " + _CJ_DATA)
CJ_VALVE_REPLY_CLOSED_LOW = frame("68 10 42 00 00 00 00 00 00 84 05 17 A0 00 01 00 FB 16")
CJ_VALVE_REPLY_CLOSED_HIGH = frame("68 10 42 00 00 00 00 00 00 84 05 A0 17 00 01 00 FB 16")

# --- Modbus RTU (Acrel, DESIGN.md) ----------------------------------------------------------
MB_TRIP = frame("01 10 00 57 00 02 04 00 01 00 01 27 75")
MB_TRIP_OK = frame("01 10 00 57 00 02 F0 18")
MB_READ_ENERGY = frame("01 03 00 00 00 11 85 C6")     # 17 registers from 0x0000

A = "000000001234"
ENERGY_BY_SINGLES = [READ_TOTAL, READ_RATE1, READ_RATE2, READ_RATE3, READ_RATE4]
LIVE = [READ_VOLTAGE, READ_CURRENT, READ_POWER, READ_PF]
PREPAID = [READ_STATUS3, READ_REMAINING, READ_COUNT]


@pytest.fixture(autouse=True)
def _frozen_meter_clock(monkeypatch):
    monkeypatch.setattr(dlt645_base.Dlt645Profile, "local_now", lambda self: datetime(2026, 1, 2, 3, 4, 5))
    dlt645_base.forget()  # the per-meter memo is per gateway URL, and OS ports come back
    yield
    dlt645_base.forget()


@pytest.fixture
def peer():
    peers: list[ScriptedPeer] = []

    def start(script):
        p = ScriptedPeer(script).start()
        peers.append(p)
        return p
    yield start
    for p in peers:
        p.stop()


def single_meter(overrides: dict | None = None, *, refuse_block=True, relay_status=STATUS_RELAY_ON):
    """A meter that answers the single identifiers (and refuses the block unless told)."""
    script = {READ_BLOCK: READ_REFUSED if refuse_block else None, READ_TOTAL: TOTAL_12345_67,
              READ_RATE1: RATE1_10_00, READ_RATE2: RATE2_20_00, READ_RATE3: RATE3_30_00, READ_RATE4: RATE4_15_67,
              READ_VOLTAGE: VOLTAGE_220_0, READ_CURRENT: CURRENT_1_234, READ_POWER: POWER_1_2345, READ_PF: PF_0_950,
              READ_STATUS3: relay_status, READ_REMAINING: REMAINING_50_00, READ_COUNT: COUNT_8}
    script.update(overrides or {})
    return script


def test_block_refused_falls_back_to_single_identifiers(peer):
    p = peer(single_meter())
    v = field.read(p.url, "dlt645", A, timeout=0.5)
    assert v.total_kwh == Decimal("12345.67")
    assert v.periods == {"sharp": Decimal("10.00"), "peak": Decimal("20.00"), "flat": Decimal("30.00"),
                         "valley": Decimal("15.67")}
    assert (v.voltage_v, v.current_a, v.power_kw, v.power_factor) == (
        Decimal("220.0"), Decimal("1.234"), Decimal("1.2345"), Decimal("0.950"))
    assert (v.relay, v.remaining_fen, v.purchase_count) == ("on", 5000, 8)
    assert p.received == b"".join([READ_BLOCK, *ENERGY_BY_SINGLES, *LIVE, *PREPAID])
    # the meter is remembered: the next read goes straight to the single identifiers
    p.requests.clear()
    assert field.read(p.url, "dlt645", A, timeout=0.5).total_kwh == Decimal("12345.67")
    assert p.requests == [*ENERGY_BY_SINGLES, *LIVE, *PREPAID]


def test_refused_live_values_are_absent(peer):
    p = peer(single_meter({READ_CURRENT: READ_REFUSED}))
    v = field.read(p.url, "dlt645", A, timeout=0.5)
    assert v.current_a is None and v.voltage_v == Decimal("220.0") and v.power_factor == Decimal("0.950")
    assert v.total_kwh == Decimal("12345.67") and v.purchase_count == 8
    assert "current_a" not in v.to_json()
    p.requests.clear()
    field.read(p.url, "dlt645", A, timeout=0.5)
    assert READ_CURRENT not in p.requests and READ_VOLTAGE in p.requests  # not asked again


def test_a_refused_total_still_fails_the_read(peer):
    p = peer(single_meter({READ_TOTAL: READ_REFUSED}))
    with pytest.raises(MeterRefused, match="no data requested"):
        field.read(p.url, "dlt645", A, timeout=0.5)


def test_a_refused_rate_register_leaves_the_periods_out_not_the_read(peer):
    p = peer(single_meter({READ_RATE4: READ_REFUSED}))
    v = field.read(p.url, "dlt645", A, timeout=0.5)
    assert v.total_kwh == Decimal("12345.67") and v.periods is None


def test_relay_off_confirms_through_the_tolerant_read(peer):
    p = peer(single_meter({TRIP: CONTROL_OK, READ_POWER: READ_REFUSED}, relay_status=STATUS_RELAY_OFF))
    out = field.command(p.url, "dlt645", A, "relay_off", timeout=0.5)
    assert out["confirmed"] and out["values"]["relay"] == "off" and "power_kw" not in out["values"]
    assert p.received == b"".join([TRIP, READ_BLOCK, *ENERGY_BY_SINGLES, *LIVE, *PREPAID])


@pytest.mark.parametrize("kind, request_frame, status", [
    ("relay_on", CLOSE, STATUS_RELAY_ON), ("keep_power_on", KEEP, frame(DLT_REP + "91 06 36 38 33 37 33 43 FB 16")),
    ("keep_power_off", RELEASE, STATUS_RELAY_ON)], ids=["relay_on", "keep_power_on", "keep_power_off"])
def test_control_frames_match_the_standard(peer, kind, request_frame, status):
    # status word 3 with bit 12 set (keep power): 00 10 -> 33 43 on the wire
    p = peer(single_meter({request_frame: CONTROL_OK}, relay_status=status))
    out = field.command(p.url, "dlt645", A, kind, timeout=0.5)
    assert out["confirmed"], out
    assert p.requests[0] == request_frame


def test_a_refused_recharge_says_purchase_count_error(peer):
    p = peer({READ_COUNT: COUNT_8, READ_REMAINING: REMAINING_50_00, RECHARGE_5000_9: RECHARGE_REFUSED_COUNT})
    with pytest.raises(MeterRefused, match="purchase count error") as info:
        field.recharge(p.url, "dlt645", A, 5000, timeout=0.5)
    assert info.value.code == 0x0020
    assert p.received == b"".join([READ_COUNT, READ_REMAINING, RECHARGE_5000_9, READ_COUNT, READ_REMAINING])


def test_set_price_write_matches_the_standard(peer):
    price_reply = rep("91 08 34 34 38 37 33 53 34 33 73 16")   # 04050101 = 1.2000
    p = peer(single_meter({WRITE_SHARP_1_2: WRITE_OK, READ_SHARP_PRICE: price_reply}))
    out = field.command(p.url, "dlt645", A, "set_prices", {"prices": {"sharp": "1.2"}}, timeout=0.5)
    assert out["confirmed"], out
    assert p.requests[0] == WRITE_SHARP_1_2 and p.requests[-1] == READ_SHARP_PRICE



def test_broadcast_time_matches_the_standard(peer):
    p = peer({})
    prof = profiles.get("dlt645-2007")

    async def go():
        async with open_link(p.url, "dlt645", 0.5) as link:
            await prof.broadcast_clock(link, datetime(2026, 1, 2, 3, 4, 5))
    aio.run(go())
    time.sleep(0.05)
    assert p.received == BROADCAST_TIME


def _read_with(profile, url, address, protocol="cjt188"):
    async def go():
        async with open_link(url, protocol, 0.5) as link:
            return await profile.read(link, address)
    return aio.run(go())


def _send_with(profile, url, address, kind, protocol="cjt188"):
    async def go():
        async with open_link(url, protocol, 0.5) as link:
            await profile.send(link, address, kind, {})
    aio.run(go())


def test_cjt188_default_profile_sends_the_di_low_byte_first(peer):
    p = peer({CJ_READ_LOW: CJ_REPLY_LOW, CJ_VALVE_CLOSE_LOW: CJ_VALVE_REPLY_CLOSED_LOW,
              CJ_VALVE_OPEN_LOW: CJ_VALVE_REPLY_CLOSED_LOW})
    v = field.read(p.url, "cjt188", "12345678901234", timeout=0.5)
    assert v.water_m3 == Decimal("123.450") and v.valve == "closed"
    prof = profiles.get("cjt188-water")
    _send_with(prof, p.url, "00000000000042", "valve_close")
    _send_with(prof, p.url, "00000000000042", "valve_open")
    assert p.requests == [CJ_READ_LOW, CJ_VALVE_CLOSE_LOW, CJ_VALVE_OPEN_LOW]


def test_cjt188_high_first_profile_and_either_order_in_replies(peer):
    high = replace(profiles.get("cjt188-water"), name="cjt188-water-high-first", di_order="high-first")
    p = peer({CJ_READ_HIGH: CJ_REPLY_LOW, CJ_VALVE_CLOSE_HIGH: CJ_VALVE_REPLY_CLOSED_HIGH,
              CJ_READ_LOW: CJ_REPLY_HIGH})
    assert _read_with(high, p.url, "12345678901234").water_m3 == Decimal("123.450")   # reply low-first
    _send_with(high, p.url, "00000000000042", "valve_close")                            # reply high-first
    # and the default (low-first) profile takes a reply in the other order too
    assert field.read(p.url, "cjt188", "12345678901234", timeout=0.5).valve == "closed"
    assert p.requests == [CJ_READ_HIGH, CJ_VALVE_CLOSE_HIGH, CJ_READ_LOW]


def test_cjt188_wake_up_bytes_go_before_the_frame(peer):
    woken = replace(profiles.get("cjt188-water"), name="cjt188-water-wake", wake_up=2)
    p = peer({b"\xFE\xFE" + CJ_READ_LOW: b"\xFE\xFE" + CJ_REPLY_LOW})
    assert _read_with(woken, p.url, "12345678901234").valve == "closed"
    assert p.received == b"\xFE\xFE" + CJ_READ_LOW


@pytest.mark.parametrize("settings", [{"di_order": "middle"}, {"wake_up": 5}, {"wake_up": -1}])
def test_cjt188_profile_settings_are_checked(settings):
    with pytest.raises(ValueError):
        replace(profiles.get("cjt188-water"), **settings)


def test_modbus_trip_matches_the_design_vector(peer):
    p = peer({MB_TRIP: MB_TRIP_OK})
    _send_with(profiles.get("acrel-ddsy1352"), p.url, "1", "relay_off", protocol="modbus-rtu")
    assert p.received == MB_TRIP


def test_modbus_gateway_that_closes_is_reported_at_once(peer):
    p = peer({MB_READ_ENERGY: "close"})
    t = time.perf_counter()
    with pytest.raises(GatewayDown, match="closed the connection"):
        field.read(p.url, "modbus-rtu", "1", timeout=2)
    assert time.perf_counter() - t < 0.5
    assert p.received == MB_READ_ENERGY
