"""Amaranth shapes derived from the single ISA definition in :mod:`pimphony.model.isa`.

Nothing here is typed twice: the opcode enum takes its members and width from
:class:`~pimphony.model.isa.Opcode` and :data:`~pimphony.model.isa.OPCODE_BITS`, and the command
layout takes its fields, order and widths from :meth:`~pimphony.model.isa.Format.command_fields`, so a
payload's bits equal :meth:`~pimphony.model.isa.Format.encode_command` (tested).
"""

from __future__ import annotations

from amaranth.lib import data, enum

from pimphony.model.isa import OPCODE_BITS, Format, Opcode


def _make_enum(name: str, members: dict[str, int], width: int):
    namespace = enum.EnumType.__prepare__(name, (enum.Enum,), shape=width)
    for key, value in members.items():
        namespace[key] = value
    return enum.EnumType(name, (enum.Enum,), namespace, shape=width)


OpcodeShape = _make_enum("Opcode", {op.name: op.value for op in Opcode}, OPCODE_BITS)
"""The opcode as an Amaranth enum with an explicit 4-bit shape."""


def command_layout(fmt: Format) -> data.StructLayout:
    """A channel command: fields LSB-first exactly as :meth:`Format.command_fields`."""
    fields = {}
    for name, width in fmt.command_fields():
        fields[name] = OpcodeShape if name == "op" else width
    return data.StructLayout(fields)
