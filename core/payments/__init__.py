"""Online payments: orders, provider callbacks, refunds and daily reconciliation (``orders``),
and the base every payment provider implements (``provider``).
"""
