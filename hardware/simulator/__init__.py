"""A meter simulator that speaks the real protocols over TCP with serial timing and faults.

``Simulator`` runs virtual gateways on 127.0.0.1 (``hardware.simulator.bus``); each gateway
has one RS485 bus of virtual meters (``hardware.simulator.meters``) that consume energy or
water from a load profile (``hardware.simulator.load``). It is the demo's hardware and the
tests'. It imports nothing from the database layer except in ``from_db``.
"""
from hardware.simulator.bus import SimGateway, Simulator, wire_time  # noqa: F401
from hardware.simulator.meters import make_meter  # noqa: F401
