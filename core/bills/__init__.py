"""Postpaid bills (issue 12, part B). PLACEHOLDER from the ``monthend`` branch: the ``bills`` branch
brings the real package; only ``generate.generate_for_period``'s signature is relied on here."""
