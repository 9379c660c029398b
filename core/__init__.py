"""meterpay's domain: models, ledger, tariffs, billing and the services every front calls.

Nothing in this package imports Flask, wechatpy or pymodbus (see tests/core/test_layering.py).
"""
