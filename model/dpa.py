"""The DPA controller's host interface, as a golden model: one operation in, one response out.

:class:`DpaControllerModel` is what :class:`~pimphony.rtl.dpa.DpaController` must do, operation by
operation: it wraps the golden allocator (:class:`~pimphony.model.kvcache.DpaAllocator`: config
buffer, VA2PA table, free list) and the golden decoder
(:class:`~pimphony.model.hub.DpaDispatcher`), and adds the instruction buffer and its loader.

Operations (:class:`DpaOp`; fields of a request: ``request`` id, ``segment``, ``kv``, ``arg``, ``word``):

=========  ==========================================================================================
OPEN       admit ``request`` with a prompt of ``arg`` tokens; allocates its chunks
APPEND     grow ``request`` by ``arg`` tokens; allocates chunks at chunk boundaries only
CLOSE      end ``request``; every chunk it held goes back to the free list
TRANSLATE  VA2PA of token ``arg`` of (``request``, ``segment``, ``kv``): physical chunk and offset
RUN        expand the loaded program for (``request``, ``segment``) at its current length; the
           physical instructions leave on the instruction stream before the response
PROGRAM    start loading a program whose blocks hold ``arg`` tokens (discards the previous one)
LOAD       append the instruction ``word`` (encoded by :class:`~pimphony.model.isa.Format`)
=========  ==========================================================================================

Every operation gets one :class:`DpaResponse`: a :class:`~pimphony.model.kvcache.Status`, the
physical chunk and offset (TRANSLATE), and the number of free chunks after the operation. An
operation that fails changes no state.

A program is loaded as the words of a :class:`~pimphony.model.program.DpaProgram` in order: the
prologue, the K DYN_LOOP and its body, the V DYN_LOOP and its body. The loader folds every DYN_MODI
into the entry of the instruction it modifies, so the buffer holds only channel instructions (one
entry each, ``program_entries`` at most) and the decoder emits up to one per cycle. ``BAD_PROGRAM``
answers a word that breaks this structure: LOAD before PROGRAM; an opcode that does not exist or an
instruction the ISA rejects (no channel, op-size on a non-advancing opcode); a DYN_LOOP out of order
(K, then V), after a pending DYN_MODI, or whose rows are not a chunk's K (V) tokens over
``rows_per_chunk``; a V DYN_LOOP whose channels are not whole slices of ``head_dim / 16`` channels in a
power-of-two number; a second DYN_LOOP while the K body has no instruction or not its DYN_LOOP's count
of words; a DYN_MODI before the first loop or with an unknown target. RUN answers ``BAD_PROGRAM``
unless both loops are loaded, the V body has an instruction and its DYN_LOOP's count of words, and no
DYN_MODI is pending.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .config import ModuleOrg
from .hub import DpaDispatcher
from .isa import LOOP_ROW_UNIT, Format, Instruction, IsaError, Modi, Opcode
from .kvcache import MIB, ChunkLayout, DpaAllocator, Status
from .program import DpaProgram


class DpaOp(enum.IntEnum):
    """Management operations (the RTL's 4-bit ``op`` field; other values answer ``BAD_OP``)."""

    OPEN = 0
    APPEND = 1
    CLOSE = 2
    TRANSLATE = 3
    RUN = 4
    PROGRAM = 5
    LOAD = 6


OP_BITS = 4
STATUS_BITS = 4
ARG_BITS = 32
"""Widths of the management request's ``op`` and ``arg`` and of the response's ``status``."""
assert max(DpaOp) < 1 << OP_BITS and max(Status) < 1 << STATUS_BITS


@dataclass(frozen=True)
class DpaConfig:
    """Parameters of one module's DPA controller (golden model and RTL alike).

    Parameters
    ----------
    org, head_dim, chunk_bytes:
        The chunk geometry (:class:`~pimphony.model.kvcache.ChunkLayout`).
    max_requests:
        Entries of the config buffer.
    segments:
        Segments (layer x KV head) per request that this module holds.
    max_chunks_per_segment:
        Virtual chunks per segment in the VA2PA table; sets the longest request
        (``max_tokens``).
    chunks:
        Physical chunks in the pool (default: every chunk of the module).
    program_entries:
        Entries of the instruction buffer (channel instructions of one program).
    request_id_bits:
        Width of a request id.
    """

    org: ModuleOrg
    head_dim: int
    chunk_bytes: int = MIB
    max_requests: int = 16
    segments: int = 32
    max_chunks_per_segment: int = 32
    chunks: int | None = None
    program_entries: int = 256
    request_id_bits: int = 16
    layout: ChunkLayout = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "layout", ChunkLayout(self.org, self.head_dim, self.chunk_bytes))
        for name in ("max_requests", "segments", "max_chunks_per_segment", "program_entries", "request_id_bits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.chunks is not None and not 1 <= self.chunks <= self.layout.chunks:
            raise ValueError(f"chunks must be in 1..{self.layout.chunks} (the module's), got {self.chunks}")
        if self.max_tokens >= 1 << ARG_BITS:
            raise ValueError(f"the longest request ({self.max_tokens} tokens) does not fit {ARG_BITS} bits")

    @property
    def n_chunks(self) -> int:
        return self.layout.chunks if self.chunks is None else self.chunks

    @property
    def max_tokens(self) -> int:
        """Longest request: ``max_chunks_per_segment`` chunks of K and of V."""
        return self.max_chunks_per_segment * min(self.layout.k_tokens, self.layout.v_tokens)

    @property
    def slice_channels(self) -> int:
        """Channels of one V slice (``head_dim / 16``)."""
        return self.head_dim // self.org.burst_elements


@dataclass(frozen=True)
class DpaOperation:
    """One management operation (see the module docstring for what each field means per op)."""

    op: int
    request: int = 0
    segment: int = 0
    kv: int = 0
    arg: int = 0
    word: int = 0


@dataclass(frozen=True)
class DpaResponse:
    """The answer to one operation."""

    status: Status
    chunk: int = 0
    offset: int = 0
    free: int = 0


class DpaControllerModel:
    """Golden DPA controller (see the module docstring): ``step`` one operation at a time."""

    def __init__(self, config: DpaConfig):
        self.config = config
        self.fmt = Format.for_org(config.org)
        self.dispatcher = DpaDispatcher(config.org, config.head_dim)
        self.reset()

    def reset(self) -> None:
        """What the RTL's reset does: no requests, every chunk free (in order), no program."""
        c = self.config
        self.alloc = DpaAllocator(c.layout, c.segments, c.max_requests, chunks=c.n_chunks, max_tokens=c.max_tokens)
        self.block_tokens = 0
        self.loading = False
        self.sections: list[list[Instruction]] = [[], [], []]   # prologue, K loop + body, V loop + body
        self.entries = 0
        self.marks: list[int] = []                               # entries before each DYN_LOOP
        self.pending = False
        self.fetched: list[tuple[Instruction | None, bool]] = []
        """The last RUN's buffer entries in the decoder's fetch order, with their phase (``sv``);
        ``None`` where the guard dropped the instruction."""

    # -- operations ---------------------------------------------------------------------------------

    def step(self, operation: DpaOperation) -> tuple[DpaResponse, list[tuple[Instruction, bool]]]:
        """One operation: its response and (RUN) the instructions it emits, each with its SV flag."""
        op, request, segment, kv, arg, word = (operation.op, operation.request, operation.segment, operation.kv,
                                               operation.arg, operation.word)
        emitted: list[tuple[Instruction, bool]] = []
        chunk = offset = 0
        if op == DpaOp.OPEN:
            status = self.alloc.open(request, arg)
        elif op == DpaOp.APPEND:
            status = self.alloc.append(request, arg)
        elif op == DpaOp.CLOSE:
            status = self.alloc.close(request)
        elif op == DpaOp.TRANSLATE:
            status, chunk, offset = self.alloc.translate(request, segment, kv, arg)
            chunk, offset = max(chunk, 0), max(offset, 0)
        elif op == DpaOp.RUN:
            status = self._run(request, segment, emitted)
        elif op == DpaOp.PROGRAM:
            status = Status.BAD_LENGTH if arg < 1 else Status.OK
            if status == Status.OK:
                self.block_tokens, self.loading, self.entries, self.pending = arg, True, 0, False
                self.sections, self.marks = [[], [], []], []
        elif op == DpaOp.LOAD:
            status = self._load(word)
        else:
            status = Status.BAD_OP
        return DpaResponse(status, chunk, offset, len(self.alloc.free)), emitted

    def _load(self, word: int) -> Status:
        try:
            ins = self.fmt.decode_instruction(word)
        except IsaError:
            return Status.BAD_PROGRAM
        loops = len(self.marks)
        c = self.config
        if not self.loading:
            return Status.BAD_PROGRAM
        if ins.op == Opcode.DYN_LOOP:
            chunk_tokens = c.layout.k_tokens if ins.gbuf == 0 else c.layout.v_tokens
            rows_ok = ins.row * LOOP_ROW_UNIT * c.layout.rows_per_chunk == chunk_tokens
            if ins.gbuf != loops or loops == 2 or self.pending or not rows_ok:
                return Status.BAD_PROGRAM
            if loops == 1 and (len(self.sections[1]) - 1 != self.sections[1][0].gpr or self.entries == self.marks[0]):
                return Status.BAD_PROGRAM
            if ins.gbuf == 1:
                n = len(ins.channels())
                slices = n // c.slice_channels
                if n % c.slice_channels or slices & (slices - 1):
                    return Status.BAD_PROGRAM
            self.marks.append(self.entries)
            self.sections[1 + loops].append(ins)
            return Status.OK
        if ins.op == Opcode.DYN_MODI:
            if loops == 0 or ins.gbuf not in tuple(Modi):
                return Status.BAD_PROGRAM
            self.pending = True
            self.sections[loops].append(ins)
            return Status.OK
        if self.entries == c.program_entries:
            return Status.PROGRAM_FULL
        self.entries += 1
        self.pending = False
        self.sections[loops].append(ins)
        return Status.OK

    def program(self) -> DpaProgram | None:
        """The loaded program, or None unless it is complete (what RUN requires)."""
        _, qk, sv = self.sections
        if len(self.marks) < 2 or self.pending or len(sv) - 1 != sv[0].gpr or self.entries == self.marks[1]:
            return None
        return DpaProgram(self.block_tokens, list(self.sections[0]), list(qk), list(sv))

    def _run(self, request: int, segment: int, emitted: list[tuple[Instruction, bool]]) -> Status:
        req = self.alloc.requests.get(request)
        if req is None:
            return Status.UNKNOWN_REQUEST
        if not 0 <= segment < self.config.segments:
            return Status.PAST_END
        program = self.program()
        if program is None:
            return Status.BAD_PROGRAM
        blocks = self.dispatcher.expand(program, lambda kind, row: self.alloc.row_of(request, segment, kind, row),
                                        req.length, dropped=True)
        self.fetched = [(ins, sv) for qk, svs in blocks for sv, part in ((False, qk), (True, svs)) for ins in part]
        emitted.extend((ins, sv) for ins, sv in self.fetched if ins is not None)
        return Status.OK


def load_program(program: DpaProgram, fmt: Format, block: int | None = None) -> list[DpaOperation]:
    """The operations that load ``program``: PROGRAM (blocks of ``block`` tokens, by default the
    program's) and one LOAD per word."""
    words = [fmt.encode_instruction(ins) for ins in (*program.prologue, *program.qk, *program.sv)]
    return [DpaOperation(DpaOp.PROGRAM, arg=program.block_tokens if block is None else block),
            *(DpaOperation(DpaOp.LOAD, word=w) for w in words)]
