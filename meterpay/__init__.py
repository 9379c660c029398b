"""Wiring: the Flask app factory, the ``meterpay`` command line and the periodic job table.

This package may import every other one; nothing imports it but entry points and tests.
"""
