"""Postpaid bills (issue 12, section 3): generation from billed usage and month-end items, confirm,
payment (desk, wallet, online), credit notes, arrears notices, export.

- ``generate``: ``generate_for_period`` -- set-based, one draft bill per account and period;
- ``service``: finding, listing, confirming, desk and wallet payment, credit notes, new bills,
  the online order of a bill;
- ``arrears``: overdue bills and the 欠费通知 schedule (a periodic job);
- ``export``: the .xlsx of bills and of arrears.

Money moves only through ``core.ledger.receivables``. docs/bills.md says what each does.
"""
