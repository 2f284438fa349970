"""The PIM instruction set: channel commands and module instructions, bit-exact.

This module is the single definition shared by the scheduler (which emits it), the golden model
(which executes it), the RTL (which derives its ``data.Struct`` layouts from :meth:`Format.fields`)
and the testbenches (which decode what the RTL issues).

Two levels, as in the paper (Table III) and the AiM ISR:

* a **module instruction** (:class:`Instruction`) is what the HUB's instruction sequencer receives:
  an opcode, a channel mask, an op-size (repetitions) and operand fields;
* a **channel command** (:class:`Command`) is one DRAM/PIM command for one channel controller,
  produced by unrolling an instruction ``op_size`` times and multicasting it by ``ch_mask``.

Opcodes (:class:`Opcode`) and what each operand means:

========  =====================================================  ===========================
opcode    channel semantics                                      fields used (advance / op)
========  =====================================================  ===========================
ACT       open ``row`` in every bank of the channel (ACT16)      row
PRE       close the open row in every bank (PREA)                --
REF       all-bank refresh; every bank must be closed            --
WR_INP    GPR entry ``gpr`` -> GBuf entry ``gbuf`` (WRGB)         gpr+, gbuf+
WR_BIAS   GPR entry ``gpr`` -> OBuf entry ``obuf`` of all banks   obuf+ (one bias vector
          (bank b takes element b; WRMAC16)                      initialises op_size entries)
MAC       every bank: OBuf[obuf] += dot(row[col], GBuf[gbuf])    col+, gbuf+ (row, obuf fixed)
          (bf16 x bf16, fp32 accumulation; MAC16)
RD_OUT    OBuf entry ``obuf`` of all banks -> GPR entry ``gpr``   gpr+, obuf+
          as bf16 (bank b gives element b; RDMAC16)
========  =====================================================  ===========================

DPA instructions (module level only; :mod:`pimphony.scheduler.dpa` defines their expansion):

========  ==========================================================================================
DYN_LOOP  repeat the next ``gpr`` instructions once per row of the current block that holds tokens
          below the request's current length (the loop bound comes from the config buffer at run
          time); ``gbuf`` = kind (0: K rows, QK^T; 1: V rows, SV); ``row`` = tokens per row / 16;
          ``ch_mask`` = the pair's channels
DYN_MODI  modify the next instruction every iteration: ``gbuf`` = what (0: row <- physical row of the
          iteration's virtual row, through VA2PA; 1: gpr += iteration x ``row``; 2: guard: the
          instruction touches K slot / V tile column ``row`` - 1 (0: the whole row), from which the
          dispatcher derives its channel mask and op-size at the current length)
========  ==========================================================================================

Op-size unroll: repetition ``i`` of an instruction adds ``i`` to each "advance" field. Multicast:
every channel in ``ch_mask`` receives the same commands, except that an ``RD_OUT`` to several
channels *gathers*: the channel of rank ``k`` among the set bits writes GPR entries
``gpr + k * op_size + i``.

Bit layout: fields are packed LSB-first in the order of :meth:`Format.fields`, the same convention as
Amaranth's ``data.Struct``, so ``encode`` here and the RTL's ``Const``/``as_value`` agree bit for bit.
Widths come from the module organisation (:class:`~pimphony.model.config.ModuleOrg`).
"""

from __future__ import annotations

import enum
import functools
import itertools
import operator
from dataclasses import dataclass, fields

import numpy as np

from .config import ModuleOrg, index_bits

OPCODE_BITS = 4
"""Opcode width: 9 opcodes are defined (7 channel commands, 2 DPA instructions)."""

class Opcode(enum.IntEnum):
    """Command and instruction opcodes (4 bits; see the module docstring)."""

    ACT = 0
    PRE = 1
    REF = 2
    WR_INP = 3
    WR_BIAS = 4
    MAC = 5
    RD_OUT = 6
    DYN_LOOP = 7
    DYN_MODI = 8


DPA_OPCODES = frozenset({Opcode.DYN_LOOP, Opcode.DYN_MODI})
"""DYN_LOOP and DYN_MODI: module instructions only, never sent to a channel."""

CHANNEL_OPCODES = min(DPA_OPCODES)
"""Channel commands are opcodes 0 .. CHANNEL_OPCODES - 1 (tables indexed by opcode have this size)."""
assert all(op < CHANNEL_OPCODES for op in Opcode if op not in DPA_OPCODES)

ADVANCING: dict[Opcode, tuple[str, ...]] = {
    Opcode.ACT: (),
    Opcode.PRE: (),
    Opcode.REF: (),
    Opcode.WR_INP: ("gpr", "gbuf"),
    Opcode.WR_BIAS: ("obuf",),
    Opcode.MAC: ("col", "gbuf"),
    Opcode.RD_OUT: ("gpr", "obuf"),
    Opcode.DYN_LOOP: (),
    Opcode.DYN_MODI: (),
}
"""Fields that advance by one per op-size repetition; opcodes with none allow only op_size 1."""

IO_OPCODES = frozenset({Opcode.WR_INP, Opcode.WR_BIAS, Opcode.RD_OUT})
"""Commands that move data over the channel's I/O path (the DCS I/O queue)."""


class IsaError(ValueError):
    """A field does not fit its width, or an instruction is malformed."""


@dataclass(frozen=True)
class Command:
    """One channel command; unused fields are 0."""

    op: Opcode
    row: int = 0
    col: int = 0
    gbuf: int = 0
    obuf: int = 0
    gpr: int = 0

    def __str__(self) -> str:
        used = {"ACT": ("row",), "PRE": (), "REF": (), "WR_INP": ("gpr", "gbuf"), "WR_BIAS": ("gpr", "obuf"),
                "MAC": ("row", "col", "gbuf", "obuf"), "RD_OUT": ("obuf", "gpr")}[self.op.name]
        return f"{self.op.name}(" + ", ".join(f"{k}={getattr(self, k)}" for k in used) + ")"


@dataclass(frozen=True)
class Instruction:
    """One module instruction: a command pattern repeated ``op_size`` times on ``ch_mask``."""

    op: Opcode
    ch_mask: int
    op_size: int = 1
    row: int = 0
    col: int = 0
    gbuf: int = 0
    obuf: int = 0
    gpr: int = 0

    def channels(self) -> list[int]:
        """Channel indices in the mask, in rank order."""
        return self.channel_array.tolist()

    @property
    def channel_array(self) -> np.ndarray:
        """Channel indices in the mask, in rank order, as a read-only int64 array (shared per mask)."""
        return mask_channels(self.ch_mask)


FIELDS = tuple(f.name for f in fields(Instruction))
"""Columns of an encoded instruction list (:func:`encode`), int64 each: the fields of :class:`Instruction`
in their order (op, ch_mask, op_size, row, col, gbuf, obuf, gpr)."""

_fields = operator.attrgetter(*FIELDS)


def encode(instructions: list[Instruction]) -> np.ndarray:
    """Instructions as an ``(n, 8)`` int64 array, columns :data:`FIELDS`."""
    flat = itertools.chain.from_iterable(map(_fields, instructions))
    return np.fromiter(flat, dtype=np.int64, count=len(FIELDS) * len(instructions)).reshape(-1, len(FIELDS))


def encoded(op: int, ch_mask: int, op_size: int = 1, row: int = 0, col: int = 0, gbuf: int = 0, obuf: int = 0,
            gpr: int = 0) -> tuple[int, ...]:
    """One row of :func:`encode` from the fields of :class:`Instruction` (their order and defaults), without
    building the instruction: how the lowering emits hundreds of thousands of them."""
    return op, ch_mask, op_size, row, col, gbuf, obuf, gpr


def encode_command(channel: int, cmd: Command) -> tuple[int, ...]:
    """One row of :func:`encode` for a channel command: the instruction that sends ``cmd`` to ``channel``
    alone, once."""
    return encoded(int(cmd.op), 1 << channel, 1, cmd.row, cmd.col, cmd.gbuf, cmd.obuf, cmd.gpr)


def decode(row) -> Instruction:
    """One row of :func:`encode` as the instruction it encodes."""
    values = dict(zip(FIELDS, (int(x) for x in row), strict=True))
    return Instruction(**values | {"op": Opcode(values["op"])})


def decode_all(enc: np.ndarray) -> list[Instruction]:
    """The instructions :func:`encode` encoded as ``enc``."""
    return [decode(row) for row in enc.tolist()]


def channel_mask(channels) -> int:
    """The mask of a set of channel indices (the inverse of :func:`mask_channels`)."""
    return sum(1 << int(c) for c in set(channels))


@functools.lru_cache(maxsize=4096)
def mask_channels(mask: int) -> np.ndarray:
    """Set bits of a channel mask, lowest first; cached, since a program uses a handful of masks."""
    out = np.array([c for c in range(mask.bit_length()) if mask >> c & 1], dtype=np.int64)
    out.flags.writeable = False
    return out


COMMAND_DTYPE = np.dtype([("op", np.uint8), ("row", np.int32), ("col", np.int32), ("gbuf", np.int32),
                          ("obuf", np.int32), ("gpr", np.int32)])
"""A command stream as a numpy structured array (one record per command, program order)."""


@dataclass(frozen=True)
class Format:
    """Field widths of commands and instructions for one module organisation."""

    channels: int
    row_bits: int
    col_bits: int
    gbuf_bits: int
    obuf_bits: int
    gpr_bits: int
    op_size_bits: int

    @classmethod
    def for_org(cls, org: ModuleOrg) -> Format:
        obuf = max(org.obuf_entries, org.outreg_entries)
        return cls(
            channels=org.channels,
            row_bits=index_bits(org.rows),
            col_bits=index_bits(org.bursts_per_row),
            gbuf_bits=index_bits(org.gbuf_entries),
            obuf_bits=index_bits(obuf),
            gpr_bits=index_bits(org.gpr_entries),
            op_size_bits=index_bits(max(org.gbuf_entries, org.bursts_per_row, obuf)),
        )

    def command_fields(self) -> list[tuple[str, int]]:
        """(name, width) of a channel command, LSB first."""
        return [("op", OPCODE_BITS), ("row", self.row_bits), ("col", self.col_bits), ("gbuf", self.gbuf_bits),
                ("obuf", self.obuf_bits), ("gpr", self.gpr_bits)]

    def instruction_fields(self) -> list[tuple[str, int]]:
        """(name, width) of a module instruction, LSB first. ``op_size`` is stored minus one."""
        return [("op", OPCODE_BITS), ("ch_mask", self.channels), ("op_size", self.op_size_bits),
                *self.command_fields()[1:]]

    @property
    def command_bits(self) -> int:
        return sum(w for _, w in self.command_fields())

    @property
    def instruction_bits(self) -> int:
        return sum(w for _, w in self.instruction_fields())

    @property
    def max_op_size(self) -> int:
        return 1 << self.op_size_bits

    # -- encode / decode ---------------------------------------------------------------------------

    @staticmethod
    def pack_fields(layout: list[tuple[str, int]], values: dict[str, int], what: str) -> int:
        """Pack ``values`` LSB-first by ``layout``, checking only that each fits its width (so that
        testbenches can build words the ISA rejects)."""
        word, shift = 0, 0
        for name, width in layout:
            value = int(values[name])
            if not 0 <= value < (1 << width):
                raise IsaError(f"{what}: field {name}={value} does not fit in {width} bits (0..{(1 << width) - 1})")
            word |= value << shift
            shift += width
        return word

    @staticmethod
    def _unpack(layout: list[tuple[str, int]], word: int, what: str) -> dict[str, int]:
        total = sum(w for _, w in layout)
        if isinstance(word, bool) or not isinstance(word, int | np.integer):
            raise IsaError(f"{what}: a word must be an integer; got {type(word).__name__} {word!r}")
        word = int(word)
        if word < 0:
            raise IsaError(f"{what}: word {word} is negative")
        if word >= 1 << total:
            raise IsaError(f"{what}: word {word:#x} is wider than {total} bits")
        out, shift = {}, 0
        for name, width in layout:
            out[name] = (word >> shift) & ((1 << width) - 1)
            shift += width
        return out

    def encode_command(self, cmd: Command) -> int:
        values = {f.name: getattr(cmd, f.name) for f in fields(cmd)}
        return self.pack_fields(self.command_fields(), values, f"command {cmd}")

    def decode_command(self, word: int) -> Command:
        raw = self._unpack(self.command_fields(), word, "command")
        op = _opcode(raw, word, "command")
        if op >= CHANNEL_OPCODES:
            raise IsaError(f"command {word:#x}: {op.name} is not a channel command")
        return Command(op=op, **raw)

    def encode_instruction(self, ins: Instruction) -> int:
        check_instruction(ins, self)
        values = {f.name: getattr(ins, f.name) for f in fields(ins)}
        values["op_size"] = ins.op_size - 1
        return self.pack_fields(self.instruction_fields(), values, f"instruction {ins}")

    def decode_instruction(self, word: int) -> Instruction:
        raw = self._unpack(self.instruction_fields(), word, "instruction")
        op = _opcode(raw, word, "instruction")
        raw["op_size"] += 1
        ins = Instruction(op=op, **raw)
        check_instruction(ins, self)
        return ins


def _opcode(raw: dict[str, int], word: int, what: str) -> Opcode:
    """Pop and check the opcode field of a decoded word."""
    value = raw.pop("op")
    try:
        return Opcode(value)
    except ValueError:
        raise IsaError(f"{what} {word:#x}: undefined opcode {value}") from None


def check_instruction(ins: Instruction, fmt: Format) -> None:
    """Raise :class:`IsaError` unless ``ins`` is well formed for ``fmt``."""
    if ins.ch_mask <= 0 or ins.ch_mask >= (1 << fmt.channels):
        raise IsaError(f"instruction {ins}: ch_mask {ins.ch_mask:#x} must select 1..{fmt.channels} channels")
    if not 1 <= ins.op_size <= fmt.max_op_size:
        raise IsaError(f"instruction {ins}: op_size {ins.op_size} outside 1..{fmt.max_op_size}")
    if ins.op_size > 1 and not ADVANCING[ins.op]:
        raise IsaError(f"instruction {ins}: {ins.op.name} takes op_size 1")


LOOP_ROW_UNIT = 16
"""A DYN_LOOP's ``row`` field counts tokens per row in units of this many tokens."""


class Modi(enum.IntEnum):
    """What a DYN_MODI changes (its ``gbuf`` field)."""

    ROW = 0
    GPR = 1
    GUARD = 2


def dyn_loop(kind: int, row_tokens: int, body: int, ch_mask: int) -> Instruction:
    """DYN_LOOP over K (kind 0) or V (kind 1) rows of ``row_tokens`` tokens; the body is the next
    ``body`` instructions."""
    if row_tokens % LOOP_ROW_UNIT:
        raise IsaError(f"DYN_LOOP rows of {row_tokens} tokens: not a multiple of {LOOP_ROW_UNIT}")
    return Instruction(Opcode.DYN_LOOP, ch_mask, gbuf=kind, row=row_tokens // LOOP_ROW_UNIT, gpr=body)


def dyn_modi(what: Modi, value: int = 0) -> Instruction:
    """DYN_MODI of the next instruction: row via VA2PA, gpr stride ``value``, or guard ``value``."""
    return Instruction(Opcode.DYN_MODI, 1, gbuf=int(what), row=value)


def unroll(ins: Instruction) -> dict[int, np.ndarray]:
    """The instruction sequencer: channel -> commands (:data:`COMMAND_DTYPE`), in issue order.

    Op-size repetitions advance the fields listed in :data:`ADVANCING`; an ``RD_OUT`` to several
    channels gathers into consecutive GPR blocks in channel rank order.
    """
    n = ins.op_size
    base = np.zeros(n, dtype=COMMAND_DTYPE)
    base["op"] = int(ins.op)
    step = np.arange(n, dtype=np.int32)
    for name in ("row", "col", "gbuf", "obuf", "gpr"):
        base[name] = getattr(ins, name) + (step if name in ADVANCING[ins.op] else 0)
    if ins.op in DPA_OPCODES:
        raise IsaError(f"{ins.op.name} is a DPA instruction: the dispatcher expands it, no channel receives it")
    out = {}
    for rank, ch in enumerate(ins.channels()):
        cmds = base.copy()
        if ins.op == Opcode.RD_OUT:
            cmds["gpr"] += rank * n
        out[ch] = cmds
    return out


def channel_stream(instructions: list[Instruction], channel: int) -> np.ndarray:
    """The commands ``channel`` receives from ``instructions``, in order: :func:`unroll` for one channel,
    vectorised over the whole list (the cycle model's fast path; a test holds the two equal)."""
    chosen = [(i, rank) for i in instructions for rank, ch in enumerate(i.channels()) if ch == channel]
    if not chosen:
        return np.zeros(0, dtype=COMMAND_DTYPE)
    if any(i.op in DPA_OPCODES for i, _ in chosen):
        raise IsaError("a DPA instruction reached the sequencer: the dispatcher expands it, no channel receives it")
    size = np.array([i.op_size for i, _ in chosen], dtype=np.int64)
    start = np.cumsum(size) - size
    step = np.arange(int(size.sum()), dtype=np.int64) - np.repeat(start, size)
    out = np.zeros(len(step), dtype=COMMAND_DTYPE)
    out["op"] = np.repeat([int(i.op) for i, _ in chosen], size)
    for name in ("row", "col", "gbuf", "obuf", "gpr"):
        base = np.repeat([getattr(i, name) for i, _ in chosen], size)
        moves = np.repeat([name in ADVANCING[i.op] for i, _ in chosen], size)
        out[name] = base + np.where(moves, step, 0)
    gather = np.repeat([rank * i.op_size if i.op == Opcode.RD_OUT else 0 for i, rank in chosen], size)
    out["gpr"] += gather
    return out


def to_commands(stream: np.ndarray) -> list[Command]:
    """A :data:`COMMAND_DTYPE` array as :class:`Command` objects."""
    return [Command(op=Opcode(int(r["op"])), row=int(r["row"]), col=int(r["col"]), gbuf=int(r["gbuf"]),
                    obuf=int(r["obuf"]), gpr=int(r["gpr"])) for r in stream]


def from_commands(cmds: list[Command]) -> np.ndarray:
    """:class:`Command` objects as a :data:`COMMAND_DTYPE` array."""
    out = np.zeros(len(cmds), dtype=COMMAND_DTYPE)
    for i, c in enumerate(cmds):
        out[i] = (int(c.op), c.row, c.col, c.gbuf, c.obuf, c.gpr)
    return out


__all__ = [
    "ADVANCING",
    "CHANNEL_OPCODES",
    "COMMAND_DTYPE",
    "DPA_OPCODES",
    "IO_OPCODES",
    "LOOP_ROW_UNIT",
    "OPCODE_BITS",
    "Command",
    "Format",
    "Instruction",
    "IsaError",
    "Modi",
    "Opcode",
    "channel_mask",
    "check_instruction",
    "dyn_loop",
    "dyn_modi",
    "from_commands",
    "mask_channels",
    "to_commands",
    "unroll",
]
