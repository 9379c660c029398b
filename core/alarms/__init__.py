"""Alarms: balance alarm levels (``balance``, ``status``), device alarms (``device``) and the
notification outbox that delivers them (``notifications``).
"""
