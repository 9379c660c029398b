"""A generic Modbus RTU water meter with a motorised valve (the common Chinese DTU-era layout).

Registers (holding, FC 03H / 10H): 0x0000-0x0001 cumulative volume UINT32 in 0.001 m3;
0x0002 valve state (0 open, 1 closed, 2 abnormal); 0x0010 valve control, write 0x0055 to open
and 0x0099 to close. Vendors differ: copy this file and change the numbers for another model.
"""
from hardware.profiles import register
from hardware.profiles.modbus import ModbusProfile, Reg, Switch

PROFILE = register(ModbusProfile(
    name="modbus-valve-water", kind="water", protocols=("modbus-rtu", "modbus-tcp"),
    commands=frozenset({"valve_open", "valve_close"}), note=__doc__,
    blocks=((0x0000, 3),),
    fields={"water_m3": Reg(0x0000, "u32", "0.001")},
    valve=Switch(state_reg=0x0002, states={0: "open", 1: "closed", 2: "abnormal"}, write_reg=0x0010,
                 writes={"valve_open": (0x0055,), "valve_close": (0x0099,)}),
))
