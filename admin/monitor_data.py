"""What the room monitor shows, for every room of a site, in three flat queries.

Rooms with their floor and building; the site's meters in service; the site's open accounts with
tenant and wallet. They are folded into one cell per room here (a room may have several meters).
Fee status comes from core.alarms.status, the same rules the bot and the alarms use. A
prepaid-meter account's balance is its meter's remaining amount with the time it was read
(core.alarms.shown), as everywhere else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.alarms.shown import shown_balances, shown_fee_status
from core.alarms.status import alarm_levels, fee_status
from core.models import Account, Building, Floor, LedgerAccount, Meter, Room, Site, Tenant

# What a cell can be filtered by (besides building, floor and the search box).
STATUS_FILTERS = ("online", "offline", "arrears", "alarm", "normal", "keep_power", "postpaid", "cut", "mismatch",
                  "vacant", "no_meter")


@dataclass
class Cell:
    room_id: int
    number: str
    building: str
    floor: str
    account_id: int | None = None
    tenant: str = ""
    balance_fen: int | None = None
    read_at: datetime | None = None  # prepaid-meter: when the meter reported balance_fen
    read_label: str = ""         # read_at in the site's time: "14:05" today, else "11-27 14:05"
    fee: str = "vacant"          # normal | alarm1..3 | arrears | keep_power | postpaid | vacant | unread
    online: str = "none"         # online | offline | partial | none (no meter)
    supply: str = "unknown"      # on | off | mixed | unknown  (relay or valve, all meters together)
    meters: list[tuple[str, bool, str]] = field(default_factory=list)  # (kind, online, state)
    # A meter's relay/valve disagrees with the supply it should have (core.supply.enforce).
    mismatch: bool = False

    @property
    def statuses(self) -> set[str]:
        s = {self.fee}
        if self.fee.startswith("alarm"):
            s.add("alarm")
        if self.online in ("online", "partial"):
            s.add("online")
        if self.online in ("offline", "partial"):
            s.add("offline")
        if self.online == "none":
            s.add("no_meter")
        if self.supply in ("off", "mixed"):
            s.add("cut")
        if self.mismatch:
            s.add("mismatch")
        return s

    def compact(self) -> list:
        """The cell as the live refresh sends it: [fee, online, supply, balance_fen], and when the
        balance is a prepaid meter's remaining amount a fifth item, its read time ("14:05", or
        null when never read); when a meter's relay/valve disagrees with the desired supply, the
        fifth item (null when there is no read time) and a sixth, 1."""
        cell = [self.fee, self.online, self.supply, self.balance_fen]
        if self.fee == "unread" or self.read_at is not None or self.mismatch:
            cell.append(self.read_label or None)
        if self.mismatch:
            cell.append(1)
        return cell


@dataclass
class Summary:
    rooms: int = 0
    online: int = 0
    offline: int = 0
    arrears: int = 0
    alarm: int = 0
    cut: int = 0
    mismatch: int = 0
    vacant: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


_DIGITS = re.compile(r"(\d+)")


@lru_cache(maxsize=65536)
def natural_key(text: str) -> tuple:
    """"A2" before "A10": digits compare as numbers (text and numbers alternate, so types line up)."""
    return tuple(int(p) if i % 2 else p for i, p in enumerate(_DIGITS.split(text or "")))


def _supply_state(kind: str, relay: str, valve: str) -> str:
    if kind == "water":
        return {"open": "on", "closed": "off"}.get(valve, "unknown")
    return relay if relay in ("on", "off") else "unknown"


def site_cells(session: Session, site: Site) -> list[Cell]:
    """Every room of ``site`` as a monitor cell, sorted by building, floor and room number.

    Three flat queries, whatever the number of rooms (no query per room): the rooms with their
    floor and building, the site's meters in service, and its open accounts with tenant and
    wallet. Each filters on an indexed site column by itself, so the plan stays a scan of that
    site's rows on any database, even before its statistics are gathered after a bulk import.
    """
    rooms = (
        select(Room.id, Room.number, Building.name, Floor.name)
        .join(Floor, Floor.id == Room.floor_id)
        .join(Building, Building.id == Floor.building_id)
        .where(Room.site_id == site.id)
    )
    meters = (select(Meter.room_id, Meter.kind, Meter.online, Meter.relay_state, Meter.valve_state,
                     Meter.mismatch_since)
              .where(Meter.site_id == site.id, Meter.status == "active", Meter.room_id.is_not(None)))
    accounts = (
        select(Account.room_id, Account.id, Account.keep_power, Account.alarm_levels, Account.billing_mode,
               Tenant.name, LedgerAccount.balance_fen)
        .join(Tenant, Tenant.id == Account.tenant_id)
        .outerjoin(LedgerAccount, LedgerAccount.account_id == Account.id)
        .where(Account.site_id == site.id, Account.status == "open")
    )
    cells: dict[int, Cell] = {room_id: Cell(room_id, number, building, floor)
                              for room_id, number, building, floor in session.execute(rooms)}
    for room_id, kind, online, relay, valve, mismatch_since in session.execute(meters):
        cell = cells.get(room_id)
        if cell is not None:
            cell.meters.append((kind, bool(online), _supply_state(kind, relay, valve)))
            cell.mismatch = cell.mismatch or mismatch_since is not None
    site_levels = alarm_levels(None, site.settings)
    rows = session.execute(accounts).all()
    meter_side = shown_balances(session, [r[1] for r in rows if r[4] == "prepaid-meter"])
    zone = ZoneInfo(site.timezone or "Asia/Shanghai")
    today = datetime.now(zone).date()
    for room_id, account_id, keep_power, levels, mode, tenant, balance in rows:
        cell = cells.get(room_id)
        if cell is None:
            continue
        cell.account_id = account_id
        cell.tenant = tenant or ""
        cell.balance_fen = int(balance or 0)
        lv = alarm_levels(levels, site.settings) if levels else site_levels
        if mode == "prepaid-meter":  # the meter holds the money: its remaining amount, as read
            shown = meter_side[account_id]
            cell.balance_fen, cell.read_at = shown.fen, shown.read_at
            if shown.read_at is not None:
                local = shown.read_at.astimezone(zone)
                cell.read_label = local.strftime("%H:%M" if local.date() == today else "%m-%d %H:%M")
            cell.fee = shown_fee_status(shown, lv, keep_power=bool(keep_power))
            continue
        # Postpaid accounts are billed after use: prepaid alarm levels say nothing about them.
        cell.fee = "postpaid" if mode == "postpaid" else fee_status(cell.balance_fen, lv, keep_power=bool(keep_power))
    for cell in cells.values():
        if cell.meters:
            up = [m[1] for m in cell.meters]
            cell.online = "online" if all(up) else "offline" if not any(up) else "partial"
            states = {m[2] for m in cell.meters}
            cell.supply = states.pop() if len(states) == 1 else ("mixed" if "off" in states else "unknown")
    return sorted(cells.values(), key=lambda c: (natural_key(c.building), natural_key(c.floor),
                                                 natural_key(c.number)))


def summarize(cells: list[Cell]) -> Summary:
    s = Summary(rooms=len(cells))
    for c in cells:
        st = c.statuses
        s.online += "online" in st
        s.offline += "offline" in st
        s.arrears += c.fee == "arrears"
        s.alarm += "alarm" in st
        s.cut += "cut" in st
        s.mismatch += c.mismatch
        s.vacant += c.fee == "vacant"
    return s


def filter_cells(cells: list[Cell], *, building: str = "", floor: str = "", status: str = "",
                 q: str = "") -> list[Cell]:
    q = (q or "").strip().lower()
    out = []
    for c in cells:
        if building and c.building != building:
            continue
        if floor and c.floor != floor:
            continue
        if status and status not in c.statuses:
            continue
        if q and q not in c.number.lower() and q not in c.tenant.lower():
            continue
        out.append(c)
    return out


def group(cells: list[Cell]) -> list[tuple[str, list[tuple[str, list[Cell]]]]]:
    """[(building, [(floor, [cells])])] keeping the sorted order."""
    out: list[tuple[str, list[tuple[str, list[Cell]]]]] = []
    for c in cells:
        if not out or out[-1][0] != c.building:
            out.append((c.building, []))
        floors = out[-1][1]
        if not floors or floors[-1][0] != c.floor:
            floors.append((c.floor, []))
        floors[-1][1].append(c)
    return out
