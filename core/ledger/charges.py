"""One-off custom charges (rent, property fee, service fee) taken from the wallet.

A minimal version for batch tasks; the month-end branch keeps the full one with the same signature.
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from core import audit, signals
from core.errors import ValidationError
from core.ledger import journal as ledger
from core.ledger.guards import check_amount, get_account
from core.ledger.journal import Leg, PostResult
from core.ledger.money import format_fen


def post_charge(session: Session, *, account_id: int, code: str, name: str, amount_fen: int, key: str,
                memo: str = "", meta: dict | None = None, actor: str = "system", front: str = "system") -> PostResult:
    """Charge ``amount_fen`` to an open account: wallet -> ``revenue:charge:<code>``, under ``key``.

    May take the wallet below zero (arrears; supply control acts on the balance afterwards). The
    same ``key`` again moves nothing and returns ``PostResult(created=False)``. Talks to no
    provider or meter, so there is no unknown outcome. Raises ValidationError (bad code or amount),
    NotFound (no such account), AccountClosed (closed account)."""
    code = (code or "").strip()
    if not code or ":" in code or len(code) > 40:
        raise ValidationError("charge code: 1-40 characters, no ':'", field="code")
    account = get_account(session, account_id)
    check_amount(amount_fen)
    wallet = ledger.wallet_of(session, account.id)
    revenue = ledger.system_account(session, f"revenue:charge:{code}")
    result = ledger.post(session, key=key, kind="charge",
                         legs=[Leg(wallet.id, -amount_fen), Leg(revenue.id, amount_fen)], account_id=account.id,
                         memo=memo or name or code, actor=actor, front=front,
                         meta={"code": code, "name": name, **(meta or {})})
    if result.created:
        audit.record(session, actor=actor, front=front, action="charge", site_id=account.site_id,
                     account_id=account.id, amount=format_fen(amount_fen), code=code, entry_id=result.entry_id)
        signals.emit(session, "balance_changed", account_id=account.id, entry_kind="charge", delta_fen=-amount_fen,
                     entry_id=result.entry_id)
    return result
