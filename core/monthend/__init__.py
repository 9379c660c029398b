"""Month-end money (issue 12): custom charge schemes (``schemes``), common-area apportionment
(``rules``), the largest-remainder split (``split``), periods and days present (``periods``) and the
month-end run that freezes and posts them, then asks ``core.bills`` for the bills (``run``).

See docs/monthend.md. Only ``core.ledger.charges`` posts what is computed here."""
