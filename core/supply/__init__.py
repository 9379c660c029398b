"""Supply control: manual trip/restore (``control``), automatic cut and restore on balance (``auto``),
friendly hours, meter-side recharge pushes (``meter_side``) and the command outbox (``commands``).
"""
