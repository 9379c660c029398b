"""Build sites, rooms and accounts in one line each: shared by the tests (``factory`` fixture) and the benchmarks."""
from __future__ import annotations

import itertools

from sqlalchemy.orm import Session

from core.models import Building, Floor, Room, Site
from core.sites.accounts import MeterSpec, OpenAccountRequest, open_account

_seq = itertools.count(1)


class Factory:
    def __init__(self, session: Session):
        self.session = session

    def site(self, name: str | None = None, **settings) -> Site:
        site = Site(name=name or f"Site {next(_seq)}", settings=settings)
        self.session.add(site)
        self.session.flush()
        return site

    def room(self, site: Site | None = None, number: str | None = None, building: str = "A",
             floor: str = "1", area_m2=None) -> Room:
        from sqlalchemy import select
        site = site or self.site()
        b = self.session.scalar(select(Building).where(Building.site_id == site.id, Building.name == building))
        if b is None:
            b = Building(site_id=site.id, name=building)
            self.session.add(b)
            self.session.flush()
        f = self.session.scalar(select(Floor).where(Floor.building_id == b.id, Floor.name == floor))
        if f is None:
            f = Floor(building_id=b.id, name=floor)
            self.session.add(f)
            self.session.flush()
        room = Room(site_id=site.id, floor_id=f.id, number=number or str(100 + next(_seq)), area_m2=area_m2)
        self.session.add(room)
        self.session.flush()
        return room

    def account(self, *, site: Site | None = None, room: Room | None = None, balance_fen: int = 0,
                billing_mode: str = "prepaid-platform", tariff: str | None = None, meters=None,
                tenant: str = "Tenant", phone: str = "13800000000", commit: bool = True, tariffs=None):
        room = room or self.room(site)
        n = next(_seq)
        meters = meters or (MeterSpec(serial=f"M{n:06d}", gateway=None, address=str(n % 247 + 1)),)
        acct = open_account(self.session, OpenAccountRequest(
            room_id=room.id, tenant_name=f"{tenant} {n}", tenant_phone=phone, meters=tuple(meters),
            tariff=tariff, tariffs=tariffs or {}, billing_mode=billing_mode, opening_balance_fen=balance_fen or None))
        if commit:
            self.session.commit()
        return acct


def one_room_account(session: Session, *, site: str, floor: str, room: str, tenant: str, serial: str,
                     balance_fen: int, phone: str = ""):
    """A site with one building (A), one floor and one room, and an open account there (not committed)."""
    f = Factory(session)
    room_row = f.room(f.site(site), number=room, floor=floor)
    return open_account(session, OpenAccountRequest(room_id=room_row.id, tenant_name=tenant, tenant_phone=phone,
                                                    meters=(MeterSpec(serial=serial),),
                                                    opening_balance_fen=balance_fen or None))
