"""Acrel DDSY1352 single-phase prepaid meter, Modbus RTU (function codes 03H read, 10H write).

Verified against Acrel's manual: energy block 0x0000-0x0009, voltage 0x000B, current 0x000C,
power 0x000D, power factor 0x0010. Unverified (decompiled setup tool / open-source integration):
relay control at 0x0057 (2 registers ``00 EN 00 ST``; EN=1 forced, ST=1 trip, ST=0 close), read
back from the same registers. No documented Modbus recharge register: this meter is run
platform-side (meterpay holds the balance and trips the relay).
"""
from hardware.profiles import register
from hardware.profiles.modbus import ModbusProfile, Reg, Switch

ENERGY = dict(
    blocks=((0x0000, 17),),
    fields={"total_kwh": Reg(0x0000, "u32", "0.01"), "voltage_v": Reg(0x000B, "u16", "0.1"),
            "current_a": Reg(0x000C, "u16", "0.01"), "power_kw": Reg(0x000D, "i16", "0.001"),
            "power_factor": Reg(0x0010, "i16", "0.001")},
    periods={"sharp": Reg(0x0002, "u32", "0.01"), "peak": Reg(0x0004, "u32", "0.01"),
             "flat": Reg(0x0006, "u32", "0.01"), "valley": Reg(0x0008, "u32", "0.01")},
    relay=Switch(state_reg=0x0057, state_words=2, state_index=1, states={0: "on", 1: "off"},
                 write_reg=0x0057, writes={"relay_off": (0x0001, 0x0001), "relay_on": (0x0001, 0x0000)}),
)

PROFILE = register(ModbusProfile(
    name="acrel-ddsy1352", kind="electricity", protocols=("modbus-rtu", "modbus-tcp"),
    commands=frozenset({"relay_off", "relay_on"}), note=__doc__, **ENERGY))
