"""The money verbs every front uses: recharge, credited payment, refund, adjustment, reversal,
consumption, opening balance, settlement, and meter credit for prepaid meters.

The contract they share:

- One function per operation, used by every front (admin page, chat command, CLI, batch job).
- Each posts one balanced entry through ``journal.post`` inside the caller's transaction and
  commits nothing; the caller commits. Each writes the audit log in that same transaction (the
  verbs a person starts) and announces ``balance_changed`` after commit, only when it moved money.
- Each takes the ``key`` of its cause (a form token, a chat confirmation code, a provider
  transaction id, a batch item id): calling twice with one key moves money once and returns
  ``PostResult(created=False)`` the second time. Without a key a fresh one is made, so only call
  keyless from a cause that cannot repeat.
- None of them talks to a meter or a payment provider, so none has an unknown outcome: the entry is
  in the transaction, or an exception says why not and nothing was written.
- Raised: ValidationError (amount not positive integer fen, above ``METERPAY_MAX_AMOUNT``, bad
  target or reason), NotFound (no such account), AccountClosed (the account is closed, where it
  must be open), InsufficientFunds (a refund larger than the balance).
"""
from __future__ import annotations

from sqlalchemy.orm import Session

from core import audit, signals
from core.db import get_existing
from core.errors import ValidationError
from core.ledger import journal as ledger
from core.ledger.guards import check_amount, get_account
from core.ledger.journal import Leg, PostResult
from core.ledger.money import format_fen

REFUND_TARGETS = ("cash:desk", "clearing:wechat", "clearing:alipay", "clearing:bank")


def _announce(session: Session, account_id: int, kind: str, delta_fen: int, result: PostResult) -> None:
    if result.created:
        signals.emit(session, "balance_changed", account_id=account_id, entry_kind=kind, delta_fen=delta_fen,
                     entry_id=result.entry_id)


def desk_recharge(session: Session, account_id: int, amount_fen: int, *, key: str | None = None,
                  actor: str = "system", front: str = "system", method: str = "cash",
                  memo: str = "") -> PostResult:
    """Cash (or card at the desk, ``method``) into the tenant's wallet: ``cash:<method>`` -> wallet.

    Returns the PostResult (``created=False`` for a repeated ``key``). Raises as the module says."""
    account = get_account(session, account_id)
    check_amount(amount_fen)
    wallet = ledger.wallet_of(session, account.id)
    counter = ledger.system_account(session, f"cash:{'desk' if method == 'cash' else method}")
    result = ledger.post(session, key=key or ledger.new_key("desk-recharge"), kind="recharge",
                         legs=[Leg(wallet.id, amount_fen), Leg(counter.id, -amount_fen)],
                         account_id=account.id, memo=memo or f"desk recharge ({method})", actor=actor,
                         front=front, meta={"method": method})
    if result.created:
        audit.record(session, actor=actor, front=front, action="recharge", site_id=account.site_id,
                     account_id=account.id, amount=format_fen(amount_fen), entry_id=result.entry_id)
    _announce(session, account.id, "recharge", amount_fen, result)
    return result


def credit_payment(session: Session, account_id: int, amount_fen: int, *, channel: str, provider_txn_id: str,
                   order_no: str, actor: str = "system", front: str = "system") -> PostResult:
    """A provider's CONFIRMED payment into the wallet: ``clearing:<channel>`` -> wallet, key
    ``pay:<channel>:<provider txn id>``, so a callback and a query reporting one payment credit it
    once. Call it only for an outcome the provider confirmed (``core.payments.orders.settle`` does);
    a pending or unknown payment is never credited."""
    account = get_account(session, account_id, must_be_open=False)
    if amount_fen <= 0:
        raise ValidationError("payment amount must be positive")
    wallet = ledger.wallet_of(session, account.id)
    clearing = ledger.system_account(session, f"clearing:{channel}")
    result = ledger.post(session, key=f"pay:{channel}:{provider_txn_id}", kind="recharge",
                         legs=[Leg(wallet.id, amount_fen), Leg(clearing.id, -amount_fen)],
                         account_id=account.id, memo=f"{channel} payment {order_no}", actor=actor,
                         front=front, meta={"order_no": order_no, "channel": channel,
                                            "provider_txn_id": provider_txn_id})
    if result.created:
        audit.record(session, actor=actor, front=front, action="payment", site_id=account.site_id,
                     account_id=account.id, amount=format_fen(amount_fen), order_no=order_no,
                     channel=channel, entry_id=result.entry_id)
    _announce(session, account.id, "recharge", amount_fen, result)
    return result


def refund(session: Session, account_id: int, amount_fen: int, *, key: str | None = None,
           actor: str = "system", front: str = "system", to: str = "cash:desk", memo: str = "",
           allow_closed: bool = False) -> PostResult:
    """Money out of the wallet back to the tenant: wallet -> ``to`` (one of REFUND_TARGETS); never
    more than the balance (InsufficientFunds, nothing written). For an online refund this is the
    debit made when the refund is requested; the provider's outcome is tracked by
    ``core.payments.orders``, which reverses the debit only on a definite refusal."""
    if to not in REFUND_TARGETS:
        raise ValidationError(f"refund target must be one of {', '.join(REFUND_TARGETS)}", field="to")
    account = get_account(session, account_id, must_be_open=not allow_closed)
    check_amount(amount_fen)
    wallet = ledger.wallet_of(session, account.id)
    counter = ledger.system_account(session, to)
    result = ledger.post(session, key=key or ledger.new_key("refund"), kind="refund",
                         legs=[Leg(wallet.id, -amount_fen), Leg(counter.id, amount_fen)],
                         account_id=account.id, memo=memo or "refund", actor=actor, front=front,
                         min_balance_fen={wallet.id: 0}, meta={"to": to})
    if result.created:
        audit.record(session, actor=actor, front=front, action="refund", site_id=account.site_id,
                     account_id=account.id, amount=format_fen(amount_fen), to=to, entry_id=result.entry_id)
    _announce(session, account.id, "refund", -amount_fen, result)
    return result


def adjust(session: Session, account_id: int, amount_fen: int, *, reason: str, key: str | None = None,
           actor: str = "system", front: str = "system") -> PostResult:
    """A manager's correction, up (positive) or down (negative), against ``equity:adjustments``,
    with a reason (required); may take the wallet below zero."""
    account = get_account(session, account_id)
    if not reason or not reason.strip():
        raise ValidationError("an adjustment needs a reason", field="reason")
    if not isinstance(amount_fen, int) or amount_fen == 0:
        raise ValidationError("amount: must be a non-zero integer in fen", field="amount")
    check_amount(abs(amount_fen))
    wallet = ledger.wallet_of(session, account.id)
    counter = ledger.system_account(session, "equity:adjustments")
    result = ledger.post(session, key=key or ledger.new_key("adjust"), kind="adjustment",
                         legs=[Leg(wallet.id, amount_fen), Leg(counter.id, -amount_fen)],
                         account_id=account.id, memo=reason.strip(), actor=actor, front=front)
    if result.created:
        audit.record(session, actor=actor, front=front, action="adjustment", site_id=account.site_id,
                     account_id=account.id, amount=format_fen(amount_fen), reason=reason.strip(),
                     entry_id=result.entry_id)
    _announce(session, account.id, "adjustment", amount_fen, result)
    return result


def reverse_entry(session: Session, entry_id: int, *, actor: str = "system", front: str = "system",
                  memo: str = "") -> PostResult:
    """Undo an entry by posting its mirror image under key ``reversal:<entry id>`` (nothing is edited
    or deleted); a second reversal of the same entry returns the first (``created=False``)."""
    result = ledger.reverse(session, entry_id, actor=actor, front=front, memo=memo)
    from core.models import JournalEntry
    entry = get_existing(session, JournalEntry, result.entry_id)
    if result.created:
        account_id = entry.account_id
        site_id = get_account(session, account_id, must_be_open=False).site_id if account_id else None
        audit.record(session, actor=actor, front=front, action="reversal", site_id=site_id,
                     account_id=account_id, reversed_entry=entry_id, entry_id=result.entry_id)
        if account_id:
            wallet = ledger.wallet_of(session, account_id)
            delta = sum(int(p.amount_fen) for p in entry.postings if p.ledger_account_id == wallet.id)
            _announce(session, account_id, "reversal", delta, result)
    return result


METER_CREDIT = "clearing:meter-credit"


def meter_credit(session: Session, account_id: int, amount_fen: int, *, command_id: int, meter_id: int,
                 actor: str = "meter-side", front: str = "job") -> PostResult:
    """Wallet money a prepaid meter has confirmed it took (表端计费): wallet -> ``clearing:meter-credit``.

    Called when a recharge command keyed ``meter-recharge:<entry>`` is confirmed by the meter
    (its purchase count advanced), in the same transaction. Key ``meter-credit:<command id>``: one
    command moves money once, whoever calls. No floor: the money is on the meter, so the wallet
    follows even if it was spent meanwhile. Announces ``balance_changed`` with entry kind
    ``meter_credit`` (never pushed to the meter again). Raises ValidationError for a non-positive
    amount or an account without a wallet.
    """
    if not isinstance(amount_fen, int) or isinstance(amount_fen, bool) or amount_fen <= 0:
        raise ValidationError("meter credit amount must be positive integer fen")
    account = get_account(session, account_id, must_be_open=False)
    wallet = ledger.wallet_of(session, account.id)
    clearing = ledger.system_account(session, METER_CREDIT)
    result = ledger.post(session, key=f"meter-credit:{command_id}", kind="meter_credit",
                         legs=[Leg(wallet.id, -amount_fen), Leg(clearing.id, amount_fen)],
                         account_id=account.id, memo=f"written to meter (command {command_id})", actor=actor,
                         front=front, meta={"command_id": command_id, "meter_id": meter_id})
    if result.created:
        audit.record(session, actor=actor, front=front, action="meter_credit", site_id=account.site_id,
                     account_id=account.id, meter_id=meter_id, amount=format_fen(amount_fen),
                     command_id=command_id, entry_id=result.entry_id)
    _announce(session, account.id, "meter_credit", -amount_fen, result)
    return result


def consume(session: Session, account_id: int, amount_fen: int, *, key: str, kind: str = "electricity",
            memo: str = "", meta: dict | None = None, actor: str = "system", front: str = "job") -> PostResult:
    """Deduct priced usage (or a custom charge) from the wallet into ``revenue:<kind>``, under the
    caller's ``key`` (its cause: ``usage:<meter>:<reading>``, ``charge:...``). May take the wallet below
    zero (arrears): alarms and supply control act on the balance afterwards."""
    if not isinstance(amount_fen, int) or amount_fen <= 0:
        raise ValidationError("consumption amount must be positive integer fen")
    wallet = ledger.wallet_of(session, account_id)
    revenue = ledger.system_account(session, f"revenue:{kind}")
    result = ledger.post(session, key=key, kind="consumption",
                         legs=[Leg(wallet.id, -amount_fen), Leg(revenue.id, amount_fen)],
                         account_id=account_id, memo=memo or f"{kind} usage", actor=actor, front=front,
                         meta=meta)
    _announce(session, account_id, "consumption", -amount_fen, result)
    return result


def opening_balance(session: Session, account_id: int, amount_fen: int, *, actor: str = "system",
                    front: str = "system") -> PostResult:
    """Credit an opening balance brought from elsewhere (equity:opening-balances -> wallet).

    Key ``opening:<account id>``: an account gets one opening balance, however often this is called.
    Does not announce ``balance_changed`` (the caller announces the opening with the account).
    Raises ValidationError for a non-positive amount.
    """
    check_amount(amount_fen)
    wallet = ledger.wallet_of(session, account_id)
    equity = ledger.system_account(session, "equity:opening-balances")
    return ledger.post(session, key=f"opening:{account_id}", kind="opening",
                       legs=[Leg(wallet.id, amount_fen), Leg(equity.id, -amount_fen)], account_id=account_id,
                       memo="opening balance", actor=actor, front=front)


def settle(session: Session, account_id: int, *, settlement: str, actor: str = "system",
           front: str = "system") -> tuple[int, PostResult | None]:
    """Bring a closing account's wallet to zero; returns (the balance settled, the entry or None).

    ``settlement="refund"`` pays a credit out of (or collects arrears into) ``cash:desk``;
    ``"writeoff"`` books a credit to ``equity:forfeited`` and arrears to ``equity:bad-debt``.
    The wallet is locked first, so the balance settled is the balance at this moment. Key
    ``settlement:<account id>``. Does not announce (the caller announces with the closing).
    """
    wallet = ledger.wallet_of(session, account_id)
    ledger.lock_wallets(session, [wallet.id])
    session.refresh(wallet)
    balance = wallet.balance_fen
    if not balance:
        return 0, None
    counter_code = "cash:desk" if settlement == "refund" else (
        "equity:forfeited" if balance > 0 else "equity:bad-debt")
    counter = ledger.system_account(session, counter_code)
    result = ledger.post(session, key=f"settlement:{account_id}", kind="settlement",
                         legs=[Leg(wallet.id, -balance), Leg(counter.id, balance)], account_id=account_id,
                         memo=f"settlement on closing ({settlement})", actor=actor, front=front,
                         meta={"settlement": settlement})
    return balance, result
