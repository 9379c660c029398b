"""Acrel DTSY1352 three-phase prepaid meter, Modbus RTU.

Same register map as the DDSY1352 for energy, phase-A voltage/current, total power and power
factor (manual), and the same unverified relay registers at 0x0057. Meter type register 0x0200
reads 5 here (7 on the DDSY1352). Run platform-side.
"""
from hardware.profiles import register
from hardware.profiles.acrel_ddsy1352 import ENERGY
from hardware.profiles.modbus import ModbusProfile

PROFILE = register(ModbusProfile(
    name="acrel-dtsy1352", kind="electricity", protocols=("modbus-rtu", "modbus-tcp"),
    commands=frozenset({"relay_off", "relay_on"}), note=__doc__, **ENERGY))
