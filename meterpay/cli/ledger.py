"""``meterpay ledger check``: verify every entry balances and every cached balance is exact, and the
payments invariants (no refund reversed while its outcome is unknown; every failed refund reversed)."""
from __future__ import annotations

import sys

import click

from meterpay.cli.base import cli, friendly_errors, print_json


@cli.group()
def ledger() -> None:
    """The double-entry ledger."""


@ledger.command()
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@friendly_errors
def check(as_json: bool) -> None:
    """Exit 0 when the ledger is sound; otherwise name each offender and exit 1."""
    from sqlalchemy import func, select

    from core.db import session_scope
    from core.ledger.check import validate
    from core.models import JournalEntry, LedgerAccount
    from core.payments import checks as payment_checks
    from core.reports.check import validate as validate_rollups
    with session_scope() as session:
        # issue 15: the report rollups equal the sums
        problems = validate(session) + payment_checks.validate(session) + validate_rollups(session)
        entries = session.scalar(select(func.count()).select_from(JournalEntry))
        wallets = session.scalar(select(func.count()).select_from(LedgerAccount).where(LedgerAccount.kind == "wallet"))
    if as_json:
        print_json({"ok": not problems, "entries": entries, "wallets": wallets,
                    "problems": [{"check": p.check, "subject": p.subject, "message": p.message} for p in problems]})
    else:
        for p in problems:
            click.echo(str(p))
        click.echo(f"{entries} entries, {wallets} wallets checked: "
                   + ("ok" if not problems else f"{len(problems)} problem(s)"))
    sys.exit(1 if problems else 0)
