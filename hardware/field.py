"""Talking to one meter directly, without a database: the installer's bench tools.

``meterpay meter ...`` calls these. Each holds the gateway's bus lock, opens one link, does its
exchanges, and confirms a command by reading the meter back, like the executor does.
"""
from __future__ import annotations

from core.ledger.money import format_fen
from hardware import aio, profiles
from hardware.buslock import bus_lock
from hardware.errors import CommError, MeterRefused
from hardware.transports import open_link
from hardware.values import MeterValues

DEFAULT_PROFILE = {"modbus-rtu": "acrel-ddsy1352", "modbus-tcp": "acrel-ddsy1352", "dlt645": "dlt645-2007",
                   "cjt188": "cjt188-water"}


def _profile(protocol: str, name: str | None):
    profile = profiles.get(name or DEFAULT_PROFILE.get(protocol, ""))
    profile.check_protocol(protocol)
    return profile


def read(url: str, protocol: str, address: str, profile: str | None = None,
         timeout: float | None = None) -> MeterValues:
    prof = _profile(protocol, profile)

    async def go():
        async with bus_lock(url):
            async with open_link(url, protocol, timeout) as link:
                return await prof.read(link, address)
    return aio.run(go())


def command(url: str, protocol: str, address: str, kind: str, params: dict | None = None,
            profile: str | None = None, timeout: float | None = None) -> dict:
    """Send a command and read it back: {"command", "confirmed", "detail", "values"}."""
    prof = _profile(protocol, profile)
    prof.supports(kind)
    params = params or {}

    async def go():
        async with bus_lock(url):
            async with open_link(url, protocol, timeout) as link:
                send_error = None
                try:
                    await prof.send(link, address, kind, params)
                except CommError as exc:
                    send_error = exc
                try:
                    ok, values, seen = await prof.verify(link, address, kind, params)
                except CommError:
                    raise send_error or CommError("no reply to the read-back") from None
                return {"command": kind, "confirmed": ok, "detail": seen, "values": values.to_json()}
    return aio.run(go())


def recharge(url: str, protocol: str, address: str, amount_fen: int, purchase_count: int | None = None,
             profile: str | None = None, timeout: float | None = None) -> dict:
    """Meter-side recharge with the meter's next purchase count (or the one given).

    Given ``purchase_count`` N, a meter whose count is already N or more is reported as already
    applied and nothing is sent: run the same line twice and the money goes on once.
    """
    prof = _profile(protocol, profile)
    prof.supports("recharge")
    if amount_fen <= 0:
        raise ValueError("amount must be more than 0")

    async def go():
        async with bus_lock(url):
            async with open_link(url, protocol, timeout) as link:
                count, remaining = await prof.read_purchase(link, address)
                target = purchase_count if purchase_count is not None else count + 1
                if count >= target:
                    return {"command": "recharge", "confirmed": True, "already_applied": True,
                            "purchase_count": count, "remaining_amount": format_fen(remaining)}
                if target != count + 1:
                    raise ValueError(f"the meter's purchase count is {count}; the next purchase must be {count + 1}")
                refused = None
                try:
                    await prof.send_recharge(link, address, amount_fen, target)
                except CommError:
                    pass
                except MeterRefused as exc:
                    refused = exc
                after, remaining = await prof.read_purchase(link, address)
                if after < target:
                    if refused:
                        raise refused
                    raise CommError(f"recharge not confirmed: purchase count still {after}")
                return {"command": "recharge", "confirmed": True, "already_applied": False,
                        "purchase_count": after, "remaining_amount": format_fen(remaining)}
    return aio.run(go())


def sync_clock(url: str, protocol: str, address: str, broadcast: bool = False, profile: str | None = None,
               timeout: float | None = None) -> dict:
    return command(url, protocol, address, "sync_clock", {"broadcast": broadcast}, profile, timeout)
