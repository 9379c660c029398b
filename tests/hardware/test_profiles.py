"""Profiles decode registers and data identifiers into the one MeterValues shape."""
from __future__ import annotations

from decimal import Decimal

import pytest

from hardware import profiles
from hardware.profiles.modbus import Reg
from hardware.values import JSON_KEYS, MeterValues


def test_every_profile_of_the_issue_is_registered():
    assert {"acrel-ddsy1352", "acrel-dtsy1352", "dlt645-2007", "cjt188-water", "modbus-valve-water"} <= set(
        profiles.names())


def test_an_unknown_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown meter profile 'nope'"):
        profiles.get("nope")


def test_registering_a_profile_twice_fails_fast():
    with pytest.raises(RuntimeError, match="twice"):
        profiles.register(profiles.get("acrel-ddsy1352"))


def test_acrel_energy_is_uint32_high_word_first_in_hundredths_of_a_kwh():
    assert Reg(0, "u32", "0.01").decode({0: 0x0001, 1: 0x86A0}) == Decimal("1000.00")


def test_acrel_power_is_signed_in_watts():
    assert Reg(0x0D, "i16", "0.001").decode({0x0D: 0xFC18}) == Decimal("-1.000")


def test_json_has_only_the_keys_the_profile_has_numbers_as_decimal_strings():
    v = MeterValues(water_m3=Decimal("12.345"), valve="closed")
    assert v.to_json() == {"water_m3": "12.345", "valve": "closed"}
    full = MeterValues(total_kwh=Decimal("1.00"), periods={"peak": Decimal("1.00")}, relay="on", purchase_count=3)
    assert list(full.to_json()) == [k for k in JSON_KEYS if k in full.to_json()]
    assert full.to_json()["periods"] == {"peak": "1.00"}


def test_the_modbus_valve_meter_reads_its_valve_with_its_volume():
    p = profiles.get("modbus-valve-water")
    assert p.kind == "water" and p.requests() == [(0, 3)]


def test_acrel_reads_energy_block_then_relay_registers():
    assert profiles.get("acrel-ddsy1352").requests() == [(0x0000, 17), (0x0057, 2)]


def test_acrel_has_no_meter_side_recharge():
    from hardware.errors import Unsupported
    with pytest.raises(Unsupported):
        profiles.get("acrel-ddsy1352").supports("recharge")


def test_the_registry_loads_once_under_many_threads(monkeypatch):
    """A fresh process whose gateways all ask for a profile at once (issue 14, item 5)."""
    import importlib
    import sys
    import threading
    import time

    saved_profiles = dict(profiles.PROFILES)
    saved_modules = {k: v for k, v in sys.modules.items() if k.startswith("hardware.profiles.")}
    real_import = importlib.import_module

    def slow_import(name, package=None):
        time.sleep(0.02)  # module imports take time in a fresh process; widen the window
        return real_import(name, package)

    profiles.PROFILES.clear()
    monkeypatch.setattr(profiles, "_loaded", False)
    for name in saved_modules:
        if name not in ("hardware.profiles.base", "hardware.profiles.modbus", "hardware.profiles.dlt645_base"):
            del sys.modules[name]
    monkeypatch.setattr(importlib, "import_module", slow_import)
    barrier = threading.Barrier(32)
    got: list = []
    errors: list = []

    def ask():
        barrier.wait()
        try:
            got.append(profiles.get("acrel-ddsy1352").name)
        except Exception as exc:  # noqa: BLE001 - the test collects what each thread saw
            errors.append(exc)

    try:
        threads = [threading.Thread(target=ask) for _ in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == [] and got == ["acrel-ddsy1352"] * 32
        assert {"acrel-ddsy1352", "dlt645-2007", "cjt188-water"} <= set(profiles.PROFILES)
    finally:
        profiles.PROFILES.clear()
        profiles.PROFILES.update(saved_profiles)
        sys.modules.update(saved_modules)
        for name, module in saved_modules.items():
            setattr(profiles, name.rsplit(".", 1)[1], module)
        profiles._loaded = True


def test_a_failed_profile_import_leaves_the_registry_unloaded(monkeypatch):
    import importlib

    def broken(name, package=None):
        raise ImportError("disk went away")

    monkeypatch.setattr(profiles, "_loaded", False)
    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ImportError):
        profiles.names()
    assert profiles._loaded is False
    monkeypatch.undo()
    assert "acrel-ddsy1352" in profiles.names()
