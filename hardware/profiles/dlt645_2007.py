"""A generic DL/T 645-2007 meter-side prepaid meter (money type).

Identifiers from DL/T 645-2007: 0000FF00 energy block (total + rates 1-4 = sharp/peak/flat/
valley), 02010100 voltage A, 02020100 current A, 02030000 total active power, 02060000 power
factor, 00900200 remaining amount, 03330201 purchase count (money type; energy type meters use
03320201), 04000503 status word 3 (bit 4 relay off; bit 12 keep-power: unverified), 04001001/2
alarm amounts, 04001003 overdraft limit, 04050101-04 rate prices, 04010001 first daily TOU
table, 04000101/02 date and time. Remote control 1CH (1A trip, 1C close, 3A/3B keep-power);
recharge 03H/070102FF with zero MACs (secondary source: vendor meters without an ESAM).
"""
from hardware.profiles import register
from hardware.profiles.dlt645_base import Dlt645Profile, Item

PROFILE = register(Dlt645Profile(
    name="dlt645-2007", kind="electricity", protocols=("dlt645",), note=__doc__,
    commands=frozenset({"relay_off", "relay_on", "keep_power_on", "keep_power_off", "recharge", "set_prices",
                        "set_alarms", "set_tou", "sync_clock"}),
    items={"voltage_v": Item(0x02010100, 2, 1), "current_a": Item(0x02020100, 3, 3, signed=True),
           "power_kw": Item(0x02030000, 3, 4, signed=True), "power_factor": Item(0x02060000, 2, 3, signed=True)},
    prices={"sharp": 0x04050101, "peak": 0x04050102, "flat": 0x04050103, "valley": 0x04050104},
    alarms={"alarm1_fen": 0x04001001, "alarm2_fen": 0x04001002, "overdraft_fen": 0x04001003},
))
