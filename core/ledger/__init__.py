"""The ledger: integer fen in balanced, idempotent journal entries.

Who may do what (``tests/core/test_layering.py`` enforces it):

- Only modules of this package post. ``journal.post``, ``journal.reverse``, ``journal.Leg`` and
  ``journal.lock_wallets`` are internals; ``bulk`` is the COPY path for many consumptions at once.
- Everyone else moves money through the public verbs of ``cashdesk`` (desk recharge, credited
  payment, refund, adjustment, reversal, consumption, opening balance, settlement) and
  ``bulk.post_consumptions`` (billing), and reads through the names exported here.
- ``money`` (parse and format yuan), ``check`` (``meterpay ledger check``) and ``balance_cache``
  are public modules.
"""
from __future__ import annotations

from core.ledger.journal import (
                                 SYSTEM_KINDS,
                                 PostResult,
                                 account_balance,
                                 balance_from_postings,
                                 create_wallet,
                                 find_entry,
                                 new_key,
                                 system_account,
                                 wallet_of,
)

__all__ = ["SYSTEM_KINDS", "PostResult", "account_balance", "balance_from_postings", "create_wallet", "find_entry",
           "new_key", "system_account", "wallet_of"]
