"""Amaranth shapes derived from the single ISA definition in :mod:`pimphony.model.isa`.

Nothing here is typed twice: the enums take their members and widths from
:class:`~pimphony.model.isa.Opcode` / :data:`~pimphony.model.isa.OPCODE_BITS` and
:class:`~pimphony.model.kvcache.Status` / :data:`~pimphony.model.dpa.STATUS_BITS`, and the command and
instruction layouts take their fields, order and widths from :class:`~pimphony.model.isa.Format`, so a
payload's bits equal its ``encode_*`` (tested).
"""

from __future__ import annotations

from amaranth import Const
from amaranth.lib import data, enum

from pimphony.model.dpa import STATUS_BITS
from pimphony.model.isa import OPCODE_BITS, Format, Opcode
from pimphony.model.kvcache import Status


def _make_enum(name: str, members: dict[str, int], width: int):
    namespace = enum.EnumType.__prepare__(name, (enum.Enum,), shape=width)
    for key, value in members.items():
        namespace[key] = value
    return enum.EnumType(name, (enum.Enum,), namespace, shape=width)


OpcodeShape = _make_enum("Opcode", {op.name: op.value for op in Opcode}, OPCODE_BITS)
"""The opcode as an Amaranth enum with an explicit 4-bit shape."""


def opcode_in(op, opcodes) -> object:
    """1 when ``op`` (an :data:`OpcodeShape` value) is one of ``opcodes``."""
    hit = Const(0, 1)
    for o in opcodes:
        hit = hit | (op == OpcodeShape[Opcode(o).name])
    return hit


def popcount(value) -> object:
    """The number of set bits of ``value``: a balanced adder tree (log2 of ``len(value)`` adders deep),
    wide enough for ``len(value)``."""
    terms = [value[i] for i in range(len(value))] or [Const(0, 1)]
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def _layout(fields: list[tuple[str, int]]) -> data.StructLayout:
    return data.StructLayout({name: OpcodeShape if name == "op" else width for name, width in fields})


def command_layout(fmt: Format) -> data.StructLayout:
    """A channel command: fields LSB-first exactly as :meth:`Format.command_fields`."""
    return _layout(fmt.command_fields())


def instruction_layout(fmt: Format) -> data.StructLayout:
    """A module instruction: fields LSB-first exactly as :meth:`Format.instruction_fields` (op-size minus one)."""
    return _layout(fmt.instruction_fields())


StatusShape = _make_enum("Status", {s.name: s.value for s in Status}, STATUS_BITS)
"""The DPA response status (:class:`~pimphony.model.kvcache.Status`) with an explicit 4-bit shape."""
