"""Write the audit log. Called inside the same transaction as the action it records."""
from __future__ import annotations

from sqlalchemy.orm import Session

from core.models import AuditLog

FRONTS = ("admin", "bot", "miniapp", "cli", "job", "system", "api")


def record(session: Session, *, actor: str, front: str, action: str, site_id: int | None = None,
           account_id: int | None = None, meter_id: int | None = None, **detail) -> AuditLog:
    row = AuditLog(**values(actor=actor, front=front, action=action, site_id=site_id, account_id=account_id,
                            meter_id=meter_id, **detail))
    session.add(row)
    return row


def values(*, actor: str, front: str, action: str, site_id: int | None = None, account_id: int | None = None,
           meter_id: int | None = None, **detail) -> dict:
    """The columns of the row ``record`` adds, for callers that insert many audit rows in one statement."""
    return {"actor": actor, "front": front, "action": action, "site_id": site_id, "account_id": account_id,
            "meter_id": meter_id, "detail": _jsonable(detail)}


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)
