"""Modbus meters described as data: register blocks, typed/scaled fields, relay and valve maps."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from hardware.errors import BadFrame
from hardware.profiles.base import Profile, retrying
from hardware.values import MeterValues


@dataclass(frozen=True)
class Reg:
    addr: int
    type: str = "u16"          # u16 | i16 | u32 | i32 (u32/i32: high word first)
    scale: str = "1"           # multiply the raw integer by this (a decimal string)

    @property
    def words(self) -> int:
        return 2 if self.type in ("u32", "i32") else 1

    def decode(self, regs: dict[int, int]) -> Decimal:
        try:
            raw = regs[self.addr] if self.words == 1 else (regs[self.addr] << 16) | regs[self.addr + 1]
        except KeyError:
            raise BadFrame(f"register {self.addr:#06x} was not read") from None
        bits = 16 * self.words
        if self.type.startswith("i") and raw >= 1 << (bits - 1):
            raw -= 1 << bits
        return Decimal(raw) * Decimal(self.scale)


@dataclass(frozen=True)
class Switch:
    """A relay or valve: where its state is read and what to write to switch it (FC 10H)."""

    state_reg: int
    states: dict[int, str]             # raw state value -> "on"/"off" or "open"/"closed"/"abnormal"
    write_reg: int
    writes: dict[str, tuple[int, ...]]  # command kind -> register values to write
    state_index: int = 0               # which word of the state block holds the state
    state_words: int = 1


@dataclass(frozen=True)
class ModbusProfile(Profile):
    blocks: tuple[tuple[int, int], ...] = ()     # (start, count) read with FC 03H each poll
    fields: dict[str, Reg] = field(default_factory=dict)    # MeterValues field -> register
    periods: dict[str, Reg] = field(default_factory=dict)   # sharp/peak/flat/valley -> register
    relay: Switch | None = None
    valve: Switch | None = None

    def requests(self) -> list[tuple[int, int]]:
        """Every (start, count) one read sends, in order (the poll benchmark's bound uses it)."""
        out = list(self.blocks)
        for sw in (self.relay, self.valve):
            if sw is not None and not any(s <= sw.state_reg < s + c for s, c in self.blocks):
                out.append((sw.state_reg, sw.state_words))
        return out

    async def read(self, link, address: str) -> MeterValues:
        unit = unit_id(address)
        regs: dict[int, int] = {}
        for start, count in self.requests():
            values = await retrying(lambda start=start, count=count: link.read(unit, start, count))
            regs.update({start + i: v for i, v in enumerate(values)})
        out = {name: reg.decode(regs) for name, reg in self.fields.items()}
        if self.periods:
            out["periods"] = {name: reg.decode(regs) for name, reg in self.periods.items()}
        if self.relay is not None:
            out["relay"] = _switch_state(self.relay, regs)
        if self.valve is not None:
            out["valve"] = _switch_state(self.valve, regs)
        return MeterValues(**out)

    async def send(self, link, address: str, kind: str, params: dict) -> None:
        self.supports(kind)
        unit = unit_id(address)
        for sw in (self.relay, self.valve):
            if sw is not None and kind in sw.writes:
                await link.write(unit, sw.write_reg, list(sw.writes[kind]))
                return
        self.supports("")  # a kind in commands without a write map is a profile bug: say unsupported


def _switch_state(sw: Switch, regs: dict[int, int]) -> str:
    raw = regs.get(sw.state_reg + sw.state_index)
    if raw is None:
        raise BadFrame(f"state register {sw.state_reg:#06x} was not read")
    return sw.states.get(raw, "abnormal" if "open" in sw.states.values() else "unknown")


def unit_id(address: str) -> int:
    try:
        unit = int(str(address).strip())
    except ValueError:
        raise ValueError(f"Modbus address must be a unit id 1-247, got {address!r}") from None
    if not 1 <= unit <= 247:
        raise ValueError(f"Modbus address must be a unit id 1-247, got {address!r}")
    return unit
