"""Managers (site staff) and their roles, each role scoped to one site or to all (site_id NULL)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, BigId, UTCDateTime, utcnow

ROLES = ("admin", "operator", "viewer")


class Manager(Base):
    __tablename__ = "managers"
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(120), default="")
    password_hash: Mapped[str] = mapped_column(String(300), default="")
    wechat_openid: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    roles: Mapped[list[ManagerRole]] = relationship(back_populates="manager")


class ManagerRole(Base):
    __tablename__ = "manager_roles"
    __table_args__ = (UniqueConstraint("manager_id", "site_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    manager_id: Mapped[int] = mapped_column(ForeignKey("managers.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), nullable=True)
    role: Mapped[str] = mapped_column(String(10), default="operator")

    manager: Mapped[Manager] = relationship(back_populates="roles")
