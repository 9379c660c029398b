"""Checks shared by services: amounts within limits, accounts that exist and are open."""
from __future__ import annotations

from sqlalchemy.orm import Session

from core.config import get_settings
from core.errors import AccountClosed, NotFound, ValidationError
from core.ledger.money import format_fen
from core.models import Account


def check_amount(amount_fen: int, *, field: str = "amount") -> int:
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool):
        raise ValidationError(f"{field}: must be integer fen", field=field)
    if amount_fen <= 0:
        raise ValidationError(f"{field}: must be positive (got {format_fen(amount_fen)})", field=field)
    cap = get_settings().max_amount_fen
    if amount_fen > cap:
        raise ValidationError(f"{field}: {format_fen(amount_fen)} is above the limit of {format_fen(cap)} yuan "
                              "(METERPAY_MAX_AMOUNT)", field=field)
    return amount_fen


def get_account(session: Session, account_id: int, *, must_be_open: bool = True) -> Account:
    account = session.get(Account, account_id) if isinstance(account_id, int) else None
    if account is None:
        raise NotFound(f"no account {account_id}")
    if must_be_open and account.status != "open":
        raise AccountClosed(f"account {account_id} is closed")
    return account
