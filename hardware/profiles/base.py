"""What every profile can do, whatever its protocol.

``read`` decodes a full set of values; ``send`` issues a command without judging its effect;
``verify`` reads the meter back and says whether the command took. Recharge is split into
``read_purchase`` and ``send_recharge`` so the executor can make it exactly-once by the
meter's purchase count.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hardware import settings
from hardware.errors import CommError, Unsupported
from hardware.values import MeterValues

SUPPLY_CHECKS = {"relay_off": ("relay", "off"), "relay_on": ("relay", "on"),
                 "valve_close": ("valve", "closed"), "valve_open": ("valve", "open")}


async def retrying(call, tries: int | None = None):
    """Run an idempotent exchange, retrying comm errors (not refusals) a few times."""
    tries = settings.exchange_retries() + 1 if tries is None else tries
    for attempt in range(tries):
        try:
            return await call()
        except CommError:
            if attempt == tries - 1:
                raise
            await asyncio.sleep(0)


@dataclass(frozen=True)
class Profile:
    name: str
    kind: str                      # electricity | water
    protocols: tuple[str, ...]     # transports it can be reached by
    commands: frozenset[str]       # command kinds it supports
    note: str = ""                 # what is verified and what is not

    def supports(self, kind: str) -> None:
        if kind == "recharge" and kind not in self.commands:
            raise Unsupported(f"profile {self.name} has no meter-side balance (recharge is platform-side)")
        if kind not in self.commands:
            raise Unsupported(f"profile {self.name} cannot {kind.replace('_', ' ')}")

    def check_protocol(self, protocol: str) -> None:
        if protocol not in self.protocols:
            raise ValueError(f"profile {self.name} speaks {' or '.join(self.protocols)}, not {protocol}")

    async def read(self, link, address: str) -> MeterValues:
        raise NotImplementedError

    async def send(self, link, address: str, kind: str, params: dict) -> None:
        raise NotImplementedError

    async def verify(self, link, address: str, kind: str, params: dict) -> tuple[bool, MeterValues, str]:
        """Read back; (took effect?, values read, what we saw)."""
        values = await self.read(link, address)
        if kind in SUPPLY_CHECKS:
            key, want = SUPPLY_CHECKS[kind]
            seen = getattr(values, key)
            return seen == want, values, f"{key} is {seen}"
        return await self.verify_extra(link, address, kind, params, values)

    async def verify_extra(self, link, address, kind, params, values) -> tuple[bool, MeterValues, str]:
        raise Unsupported(f"profile {self.name} cannot confirm {kind}")

    async def read_purchase(self, link, address: str) -> tuple[int, int]:
        """(purchase count, remaining fen) for meter-side prepaid meters."""
        raise Unsupported(f"profile {self.name} has no meter-side balance (recharge is platform-side)")

    async def send_recharge(self, link, address: str, amount_fen: int, purchase_count: int) -> None:
        raise Unsupported(f"profile {self.name} has no meter-side balance (recharge is platform-side)")

    async def broadcast_clock(self, link, now) -> None:
        raise Unsupported(f"profile {self.name} has no broadcast clock sync")
