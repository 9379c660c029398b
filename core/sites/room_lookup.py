"""Find a room from what a manager typed ("301", "A301"), only among the sites they may see.

An exact number wins; else a number ending with what was typed ("301" → "A301") when it is the
only one; several matches are a clear question, never a guess. Rooms of other sites are not
found at all (a manager of site A cannot reach site B's rooms by any spelling).
"""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, ValidationError
from core.models import Account, Room, Site
from core.sites.managers import site_ids_for


def find_room(session: Session, manager_id: int, text: str) -> Room:
    typed = (text or "").strip().upper()
    if not typed or len(typed) > 60:
        raise ValidationError("give a room number, for example 301 or A301", field="room")
    sites = site_ids_for(session, manager_id)
    base = select(Room)
    if sites is not None:
        if not sites:
            raise NotFound("you manage no site yet", field="room")
        base = base.where(Room.site_id.in_(sites))
    exact = session.scalars(base.where(func.upper(Room.number) == typed)).all()
    if len(exact) == 1:
        return exact[0]
    pattern = "%" + typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    matches = exact or session.scalars(base.where(func.upper(Room.number).like(pattern, escape="\\"))
                                       .order_by(Room.number).limit(11)).all()
    if not matches:
        raise NotFound(f"no room {text.strip()} in your sites", field="room")
    if len(matches) > 1:
        names = [_label(session, r) for r in matches[:10]]
        raise Conflict(f"room {text.strip()} is ambiguous: {', '.join(names)}; type the full number",
                       field="room", candidates=names)
    return matches[0]


def find_room_by_number(session: Session, number: str, site_name: str | None = None) -> tuple[Room, str]:
    """A room by its exact number (for commands run by the operator); returns (room, site name).

    Several sites with that number and no ``site_name``: a clear error asking for one.
    """
    stmt = select(Room, Site.name).join(Site, Site.id == Room.site_id).where(Room.number == number)
    if site_name:
        stmt = stmt.where(Site.name == site_name)
    rows = session.execute(stmt).all()
    if not rows:
        raise NotFound(f"no room {number}" + (f" at site {site_name}" if site_name else ""), field="room")
    if len(rows) > 1:
        raise ValidationError(f"room {number} exists at several sites ({', '.join(r[1] for r in rows)}); "
                              "give --site", field="room")
    return rows[0][0], rows[0][1]


def open_account_at(session: Session, room: Room) -> Account:
    account = session.scalar(select(Account).where(Account.room_id == room.id, Account.status == "open"))
    if account is None:
        raise NotFound(f"room {room.number} has no open account", field="room")
    return account


def _label(session: Session, room: Room) -> str:
    site = session.get(Site, room.site_id)
    return f"{room.number}（{site.name}）" if site else room.number
