"""Which rooms a batch task acts on, frozen into items when the task is created.

A selection is data (kept on the task as asked): ``all``, ``buildings`` (names as imported),
``floors`` (``[building, floor]`` pairs), ``rooms`` (numbers, from a list or an uploaded file) and
``status`` (a room monitor fee status such as ``arrears``). Buildings and floors add up; a room
list and a status narrow what they give (or the whole site when neither is given).
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.errors import ValidationError
from core.ledger.money import parse_yuan
from core.models import Account, Building, Floor, Meter, Room, Site

ROOM_HEADERS = ("room", "房间", "房号", "房间号")
AMOUNT_HEADERS = ("amount", "金额", "充值金额")
STATUSES = ("normal", "alarm1", "alarm2", "alarm3", "arrears", "keep_power", "unread", "offline")


@dataclass
class RoomList:
    """Rooms read from a file, in file order, and amounts (fen) where the file has an amount column."""
    rooms: list[str] = field(default_factory=list)
    amounts: dict[str, int] = field(default_factory=dict)


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text or ""))


def parse_floor(text: str) -> tuple[str, str]:
    """``A:3`` -> ("A", "3"): a building and floor name as imported."""
    building, sep, floor = (text or "").partition(":")
    if not sep or not building.strip() or not floor.strip():
        raise ValidationError(f"floor: give BUILDING:FLOOR like A:3, not {text!r}", field="floor")
    return building.strip(), floor.strip()


def parse_rooms_file(filename: str, data: bytes) -> RoomList:
    """A .csv or .xlsx with a ``room`` column (and optionally ``amount`` in yuan), or a .txt with one
    room per line. Raises ValidationError for another kind of file, a missing column or a bad amount."""
    name = (filename or "").lower()
    if name.endswith(".txt"):
        text = _decode(data)
        return RoomList(rooms=[line.strip() for line in text.splitlines() if line.strip()])
    if name.endswith(".csv"):
        rows = list(csv.reader(io.StringIO(_decode(data))))
    elif name.endswith(".xlsx"):
        from openpyxl import load_workbook
        try:
            sheet = load_workbook(io.BytesIO(data), read_only=True, data_only=True).worksheets[0]
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a file that is not a workbook
            raise ValidationError(f"rooms: not a readable .xlsx ({type(exc).__name__})", field="rooms") from None
        rows = [["" if v is None else str(v) for v in row] for row in sheet.iter_rows(values_only=True)]
    else:
        raise ValidationError("rooms: a .csv or .xlsx with a room column, or a .txt with one room per line",
                              field="rooms")
    rows = [r for r in rows if any(str(c).strip() for c in r)]
    if not rows:
        return RoomList()
    header = [str(c).strip().lower() for c in rows[0]]
    col = next((header.index(h) for h in ROOM_HEADERS if h in header), None)
    if col is None:
        raise ValidationError("rooms: the file needs a 'room' column", field="rooms")
    amount_col = next((header.index(h) for h in AMOUNT_HEADERS if h in header), None)
    out = RoomList()
    for n, row in enumerate(rows[1:], start=2):
        room = str(row[col]).strip() if col < len(row) else ""
        if room.endswith(".0") and room[:-2].isdigit():  # a number cell read back from a spreadsheet
            room = room[:-2]
        if not room:
            continue
        out.rooms.append(room)
        if amount_col is not None and amount_col < len(row) and str(row[amount_col]).strip():
            out.amounts[room] = parse_yuan(str(row[amount_col]).strip(), field=f"amount (line {n})")
    return out


def _decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ValidationError("rooms: the file is neither UTF-8 nor GB18030 text", field="rooms")


@dataclass(frozen=True)
class Target:
    """One room of the selection with its open account and active meters."""
    room_id: int
    room: str
    building: str
    floor: str
    account: Account | None
    meters: tuple[Meter, ...]


def resolve(session: Session, site: Site, selection: dict) -> list[Target]:
    """The rooms ``selection`` names at this moment, naturally ordered (building, floor, number).
    Raises ValidationError for an unknown building, floor or room (naming them) or an empty selection."""
    q = (select(Room, Floor.name, Building.name).join(Floor, Room.floor_id == Floor.id)
         .join(Building, Floor.building_id == Building.id).where(Room.site_id == site.id))
    rows = session.execute(q).all()
    buildings = [str(b) for b in selection.get("buildings") or []]
    floors = [(str(b), str(f)) for b, f in selection.get("floors") or []]
    rooms = [str(r) for r in selection.get("rooms") or []]
    known_b = {b for _r, _f, b in rows} | set(session.scalars(select(Building.name).where(Building.site_id == site.id)))
    known_f = {(b, f) for _r, f, b in rows}
    unknown = [b for b in buildings if b not in known_b] + [f"{b}:{f}" for b, f in floors if (b, f) not in known_f]
    if unknown:
        raise ValidationError(f"not at {site.name}: {', '.join(unknown[:10])}", field="selection")
    picked = rows
    if buildings or floors:
        picked = [r for r in rows if r[2] in buildings or (r[2], r[1]) in floors]
    elif not selection.get("all") and not rooms and not selection.get("status"):
        raise ValidationError("choose the rooms: all, buildings, floors, a room list or a status", field="selection")
    if rooms:
        by_number = {r[0].number: r for r in picked}
        missing = [n for n in dict.fromkeys(rooms) if n not in by_number]
        if missing:
            raise ValidationError(f"no such room at {site.name}: {', '.join(missing[:10])}"
                                  + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""), field="rooms")
        picked = [by_number[n] for n in dict.fromkeys(rooms)]
    picked = sorted(picked, key=lambda r: (_natural(r[2]), _natural(r[1]), _natural(r[0].number)))
    room_ids = [r[0].id for r in picked]
    accounts: dict[int, Account] = {}
    meters: dict[int, list[Meter]] = {}
    for k in range(0, len(room_ids), 5000):
        part = room_ids[k:k + 5000]
        for acct in session.scalars(select(Account).where(Account.room_id.in_(part), Account.status == "open")
                                    .order_by(Account.id)):
            accounts[acct.room_id] = acct  # the newest open account of a room
        for m in session.scalars(select(Meter).where(Meter.room_id.in_(part), Meter.status == "active")
                                 .order_by(Meter.id)):
            meters.setdefault(m.room_id or 0, []).append(m)
    targets = [Target(room.id, room.number, b, f, accounts.get(room.id), tuple(meters.get(room.id, ())))
               for room, f, b in picked]
    status = selection.get("status")
    if status:
        targets = _by_status(session, site, targets, str(status))
    return targets


def _by_status(session: Session, site: Site, targets: list[Target], status: str) -> list[Target]:
    """Keep the rooms the room monitor shows with ``status`` (fee status, or ``offline``)."""
    from core.alarms.shown import shown_balances, shown_fee_status
    from core.alarms.status import alarm_levels
    if status not in STATUSES:
        raise ValidationError(f"status: one of {', '.join(STATUSES)}", field="status")
    if status == "offline":
        return [t for t in targets if any(not m.online for m in t.meters)]
    shown = shown_balances(session, [t.account.id for t in targets if t.account is not None])
    out = []
    for t in targets:
        if t.account is None or t.account.id not in shown:
            continue
        levels = alarm_levels(t.account.alarm_levels, site.settings)
        if shown_fee_status(shown[t.account.id], levels, keep_power=t.account.keep_power) == status:
            out.append(t)
    return out
