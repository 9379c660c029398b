"""Published tariffs (DESIGN.md, "Tariff facts for tests") as plan files."""

BEIJING_RESIDENTIAL = {"kind": "tiered", "unit": "kWh", "cycle": "month",
                       "tiers": [{"upto": "240", "price": "0.4883"}, {"upto": "400", "price": "0.5383"},
                                 {"upto": None, "price": "0.7883"}]}

# Guangdong commercial TOU 2021: peak:flat:valley = 1.7:1:0.38 on flat 0.6; critical peak = peak + 25%.
GUANGDONG_TOU = {
    "kind": "tou", "unit": "kWh",
    "prices": {"sharp": "1.275", "peak": "1.02", "flat": "0.6", "valley": "0.228"},
    "day_tables": {
        "normal": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"], ["12:00", "flat"],
                   ["14:00", "peak"], ["19:00", "flat"]],
        "summer": [["00:00", "valley"], ["08:00", "flat"], ["10:00", "peak"], ["11:00", "sharp"],
                   ["12:00", "flat"], ["14:00", "peak"], ["15:00", "sharp"], ["17:00", "peak"],
                   ["19:00", "flat"]]},
    "calendar": [{"months": [7, 8, 9], "table": "summer"}],
    "default_table": "normal"}

BEIJING_WATER = {"kind": "tiered", "unit": "m3", "cycle": "year",
                 "tiers": [{"upto": "180", "price": "5"}, {"upto": "260", "price": "7"},
                           {"upto": None, "price": "9"}]}


def usage(*pairs, periods=None):
    """usage(("2026-07-01T00:00:00+08:00", "1000.00"), ...) -> the usage file."""
    readings = [{"at": a, "total": t} for a, t in pairs]
    for r, p in zip(readings, periods or []):
        r["periods"] = p
    return {"readings": readings}
