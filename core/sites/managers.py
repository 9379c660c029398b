"""Managers and what they may see: each role is scoped to one site, or to all sites."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from core.errors import Conflict, ValidationError
from core.models import Manager, ManagerRole
from core.models.manager import ROLES
from core.models.site import site_named


def create_manager(session: Session, username: str, password: str, *, sites: list[str] | None = None,
                   role: str = "operator", display_name: str = "", all_sites: bool = False) -> Manager:
    username = (username or "").strip()
    if not username:
        raise ValidationError("username must not be empty", field="username")
    if len(password or "") < 8:
        raise ValidationError("password: at least 8 characters", field="password")
    if role not in ROLES:
        raise ValidationError(f"role: one of {', '.join(ROLES)}", field="role")
    if session.scalar(select(Manager).where(Manager.username == username)) is not None:
        raise Conflict(f"manager {username!r} exists already", field="username")
    manager = Manager(username=username, display_name=display_name or username,
                      password_hash=generate_password_hash(password))
    session.add(manager)
    session.flush()
    if all_sites:
        session.add(ManagerRole(manager_id=manager.id, site_id=None, role=role))
    for name in sites or []:
        site = site_named(session, name, field="sites")
        session.add(ManagerRole(manager_id=manager.id, site_id=site.id, role=role))
    session.flush()
    return manager


def verify_password(manager: Manager, password: str) -> bool:
    return bool(manager.password_hash) and check_password_hash(manager.password_hash, password or "")


def site_ids_for(session: Session, manager_id: int) -> set[int] | None:
    """The site ids a manager may see; None means every site."""
    roles = session.scalars(select(ManagerRole).where(ManagerRole.manager_id == manager_id)).all()
    if any(r.site_id is None for r in roles):
        return None
    return {r.site_id for r in roles if r.site_id is not None}


def can_access_site(session: Session, manager_id: int, site_id: int) -> bool:
    ids = site_ids_for(session, manager_id)
    return ids is None or site_id in ids


def role_at(session: Session, manager_id: int, site_id: int) -> str | None:
    roles = session.scalars(select(ManagerRole).where(ManagerRole.manager_id == manager_id)).all()
    for r in roles:
        if r.site_id == site_id:
            return r.role
    for r in roles:
        if r.site_id is None:
            return r.role
    return None
