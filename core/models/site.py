"""Where things are: site -> building -> floor -> room."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, ForeignKey, Numeric, String, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship

from core.db import Base, BigId, UTCDateTime, utcnow
from core.errors import NotFound, ValidationError


class Site(Base):
    """A property run by one operator: a mall, a tower, a dorm campus."""

    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    # Site-wide settings as data: poll interval, alarm levels, friendly hours, emergency credit.
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    buildings: Mapped[list[Building]] = relationship(back_populates="site", order_by="Building.name")


class Building(Base):
    __tablename__ = "buildings"
    __table_args__ = (UniqueConstraint("site_id", "name"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))

    site: Mapped[Site] = relationship(back_populates="buildings")
    floors: Mapped[list[Floor]] = relationship(back_populates="building", order_by="Floor.name")


class Floor(Base):
    __tablename__ = "floors"
    __table_args__ = (UniqueConstraint("building_id", "name"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    building_id: Mapped[int] = mapped_column(ForeignKey("buildings.id"), index=True)
    name: Mapped[str] = mapped_column(String(60))

    building: Mapped[Building] = relationship(back_populates="floors")
    rooms: Mapped[list[Room]] = relationship(back_populates="floor", order_by="Room.number")


class Room(Base):
    """A rentable unit: a shop, an office, a flat, a dorm room. ``number`` is unique per site."""

    __tablename__ = "rooms"
    __table_args__ = (UniqueConstraint("site_id", "number"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    floor_id: Mapped[int] = mapped_column(ForeignKey("floors.id"), index=True)
    number: Mapped[str] = mapped_column(String(60))
    area_m2: Mapped[Decimal | None] = mapped_column(Numeric(10, 2), nullable=True)

    floor: Mapped[Floor] = relationship(back_populates="rooms")


# --- a site by what a person typed ------------------------------------------------------------
# Every front and service that takes ``--site NAME`` (reports, bills, month end, batch tasks,
# tariffs, imports, manager roles) finds the site here, so a blank or unknown name errs one way.

def find_site(session: Session, name: str | None) -> Site | None:
    """The site named ``name`` (surrounding spaces ignored), or None."""
    name = str(name or "").strip()
    return session.scalar(select(Site).where(Site.name == name)) if name else None


def site_named(session: Session, name: str | None, *, field: str = "site") -> Site:
    """The site named ``name``. Raises ValidationError for a blank name, NotFound for an unknown one."""
    if not name or not str(name).strip():
        raise ValidationError(f"--{field}: give the site's name", field=field)
    site = find_site(session, name)
    if site is None:
        raise NotFound(f"no site named {str(name).strip()!r}", field=field)
    return site
