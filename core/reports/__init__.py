"""Finance and reports (issue 15), read from the ledger, billed usage and readings only.

- ``rollups``: the sums reports read (ledger_days, usage_days, usage_months, reading_days), kept in
  the same transaction as the rows they summarise. It sits *below* the ledger and billing: they call
  it where they write, and it imports only the foundation (models, db, bulk_sql) -- nothing of
  ``core.reports`` is imported here, so ``core.ledger`` importing ``core.reports.rollups`` makes no cycle.
- ``derive``: the same sums computed from the raw rows (``ledger check``, ``meterpay report rebuild``).
- ``check``: the rollup checks ``meterpay ledger check`` runs.
- ``finance``: order overview (订单总览) and income overview (收入概况).
- ``energy``: energy by shop with TOU split (用电综合报表), year-on-year (能耗同比), per meter by day,
  month and year (能耗日月年报表).
- ``export``: every report as .xlsx (openpyxl).
- ``tenant``: a tenant's spending per utility (the mini-program's usage view).
"""
