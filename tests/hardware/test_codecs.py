"""DL/T 645-2007 and CJ/T 188 framing against the vectors in DESIGN.md and hand-checked frames."""
from __future__ import annotations

import pytest

from hardware.codecs import FrameError, bcd_decode, bcd_encode, cjt188, dlt645


def test_read_total_energy_frame_matches_the_design_vector():
    assert dlt645.read_request("000000001234", 0x00000000).hex(" ").upper() == \
        "FE FE FE FE 68 34 12 00 00 00 00 68 11 04 33 33 33 33 F7 16"


def test_a_reply_decodes_with_the_offset_removed_and_garbage_before_it_skipped():
    reply = dlt645.encode("000000001234", 0x91, bytes.fromhex("00000000") + bcd_encode(123456, 4), preamble=False)
    frame, used = dlt645.decode(b"\x00\xFF\xFE\xFE" + reply)
    assert used == 4 + len(reply)
    assert frame.address == "000000001234" and frame.is_reply and not frame.is_error
    assert bcd_decode(frame.data[4:]) == 123456


def test_a_bad_checksum_is_an_error_not_a_frame():
    reply = bytearray(dlt645.encode("000000001234", 0x91, b"\x00\x00\x00\x00\x12\x34\x00\x00"))
    reply[-2] ^= 0x01
    with pytest.raises(FrameError):
        dlt645.decode(bytes(reply))


def test_half_a_frame_asks_for_more_bytes():
    reply = dlt645.encode("000000001234", 0x91, b"\x00" * 8, preamble=False)
    assert dlt645.decode(reply[:9]) == (None, 0)


def test_remote_control_trip_carries_n1_1a_after_password_and_operator():
    from datetime import datetime
    frame, _ = dlt645.decode(dlt645.control_request("000000001234", dlt645.TRIP, dlt645.time_bytes(
        datetime(2026, 11, 27, 20, 30, 5))))
    assert frame.control == 0x1C and len(frame.data) == 16
    assert frame.data[8] == 0x1A and frame.data[10:] == bytes.fromhex("053020271126")


def test_recharge_frame_is_30_bytes_with_amount_and_count_little_endian():
    frame, _ = dlt645.decode(dlt645.recharge_request("000000001234", 5000, 8))
    assert frame.control == 0x03 and len(frame.data) == 30
    assert frame.data[:4] == bytes.fromhex("FF020107")
    assert int.from_bytes(frame.data[8:12], "little") == 5000
    assert int.from_bytes(frame.data[12:16], "little") == 8


def test_broadcast_time_goes_to_all_nines():
    from datetime import datetime
    raw = dlt645.broadcast_time_request(datetime(2026, 1, 2, 3, 4, 5))
    frame, _ = dlt645.decode(raw)
    assert frame.address == "999999999999" and frame.control == 0x08
    assert dlt645.parse_time(frame.data) == datetime(2026, 1, 2, 3, 4, 5)


def test_cjt188_read_request_layout():
    raw = cjt188.read_request("12345678901234")
    # written out by hand: 68 T=10 A0..A6 C=01 L=03 DI=1F 90 SER=00, CS = byte sum (0x315) mod 256
    assert raw.hex(" ").upper() == "68 10 34 12 90 78 56 34 12 01 03 1F 90 00 15 16"
    frame, used = cjt188.decode(b"\xFE\xFE" + raw)
    assert used == len(raw) + 2 and frame.di == 0x901F and frame.address == "12345678901234"


def test_cjt188_valve_close_is_a017_with_99():
    frame, _ = cjt188.decode(cjt188.valve_request("00000000000042", open_=False))
    assert frame.control == 0x04 and frame.di == 0xA017 and frame.data == b"\x99"


def test_cjt188_bad_checksum_is_an_error():
    raw = bytearray(cjt188.read_request("12345678901234"))
    raw[-2] ^= 0xFF
    with pytest.raises(FrameError):
        cjt188.decode(bytes(raw))


def test_bcd_round_trip_and_non_bcd_rejected():
    assert bcd_encode(1234, 2) == b"\x34\x12"
    assert bcd_decode(b"\x34\x12") == 1234
    with pytest.raises(FrameError):
        bcd_decode(b"\x3A")
    with pytest.raises(ValueError):
        bcd_encode(123456, 2)


def test_cjt188_di_order_and_wake_up_bytes_are_settings():
    assert cjt188.read_request("12345678901234", di_order="high-first").hex(" ").upper() == \
        "68 10 34 12 90 78 56 34 12 01 03 90 1F 00 15 16"
    assert cjt188.valve_request("00000000000042", open_=False, di_order="high-first", wake=2).hex(" ").upper() == \
        "FE FE 68 10 42 00 00 00 00 00 00 04 04 A0 17 00 99 12 16"
    with pytest.raises(ValueError):
        cjt188.read_request("12345678901234", wake=5)
    with pytest.raises(ValueError):
        cjt188.read_request("12345678901234", di_order="big")


def test_a_cjt188_reply_matches_its_di_in_either_byte_order():
    low = bytes.fromhex("68 10 42 00 00 00 00 00 00 84 05 17 A0 00 01 00 FB 16")
    high = bytes.fromhex("68 10 42 00 00 00 00 00 00 84 05 A0 17 00 01 00 FB 16")
    for raw in (low, high):
        frame, _ = cjt188.decode(raw)
        assert frame.di_matches(cjt188.DI_VALVE) and not frame.di_matches(cjt188.DI_READ_DATA)


def test_a_refused_recharge_decodes_its_error_word_with_the_03h_table():
    frame, _ = dlt645.decode(bytes.fromhex("68 34 12 00 00 00 00 68 C3 02 53 33 61 16"))
    assert frame.is_error and frame.function == dlt645.PREPAID
    assert frame.error_code == 0x0020 and frame.error_text() == "purchase count error"


def test_a_refused_read_decodes_its_error_byte_with_the_err_table():
    frame, _ = dlt645.decode(bytes.fromhex("68 34 12 00 00 00 00 68 D1 01 35 1D 16"))
    assert frame.error_code == 0x02 and frame.error_text() == "no data requested"
