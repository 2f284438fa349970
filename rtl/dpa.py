"""``DpaController``: dynamic PIM access — a paged KV cache and the DPA instruction decoder in hardware.

The operation-level behaviour is :class:`~pimphony.model.dpa.DpaControllerModel`'s (its docstring
lists the operations, the program structure and every error); this module is that model in gates,
checked against it operation by operation in amaranth.sim and at the Verilog boundary in cocotb.

The controller is built from components, each with its own tests (``tests/test_rtl_dpa_parts.py``):

- :class:`FreeList`: the pool's free chunks, a ring in block RAM, rebuilt after reset;
- :class:`Va2PaTable`: the physical chunk of every virtual chunk of every open request;
- :class:`ConfigBuffer`: the open requests (id, length, chunks held), looked up by id;
- :class:`ProgramLoader`: PROGRAM / LOAD, the program's checks and the instruction buffer;
- :class:`Decoder`: RUN's expansion of the program into physical instructions (a fetch stage, five decode
  stages).

:class:`DpaController` answers the host's operations with an FSM over them.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from pimphony.model.config import index_bits
from pimphony.model.dpa import ARG_BITS, OP_BITS, DpaConfig, DpaOp
from pimphony.model.isa import ADVANCING, LOOP_ROW_UNIT, Format, Modi, Opcode

from .layouts import StatusShape, instruction_layout, opcode_in, popcount


class Phase(enum.Enum, shape=2):
    """Which part of a block the decoder fetches from."""

    PROLOGUE = 0
    QK = 1
    SV = 2


def _pow2(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


@dataclass(frozen=True)
class DpaWidths:
    """Field widths and buffer sizes the controller derives from its :class:`DpaConfig`."""

    config: DpaConfig

    @property
    def fmt(self) -> Format:
        return Format.for_org(self.config.org)

    @property
    def seg_bits(self) -> int:
        return index_bits(self.config.segments + 1)        # one value past the last segment: PAST_END

    @property
    def chunk_bits(self) -> int:
        return index_bits(self.config.n_chunks)

    @property
    def len_bits(self) -> int:
        return self.config.max_tokens.bit_length()


class FreeList(wiring.Component):
    """The pool's free chunk numbers, a ring in block RAM.

    After reset it writes chunk numbers 0 .. ``chunks - 1``, one per cycle; ``ready`` is low meanwhile.
    ``pop`` (only while ``ready`` and ``count`` is not zero) takes the head: its number is on ``head``
    in the next cycle and stays there until the next pop. ``push`` appends ``push_chunk`` at the tail.
    A pop and a push may not fall in one cycle.

    Parameters
    ----------
    chunks:
        Chunks of the pool.
    """

    def __init__(self, chunks: int):
        self.chunks = chunks
        bits = index_bits(chunks)                           # a chunk number
        super().__init__({
            "ready": Out(1),
            "count": Out(range(chunks + 1), init=chunks),
            "pop": In(1),
            "head": Out(bits),
            "push": In(1),
            "push_chunk": In(bits),
        })

    @staticmethod
    def storage_bits(chunks: int) -> int:
        """Bits of the ring of a pool of ``chunks``: a chunk number per chunk."""
        return chunks * index_bits(chunks)

    def elaborate(self, platform):
        m = Module()
        C = self.chunks
        m.submodules.ram = ram = Memory(shape=len(self.head), depth=C, init=[])        # rebuilt after reset
        wp, rp = ram.write_port(), ram.read_port(domain="sync")
        head, tail = Signal(range(C)), Signal(range(C))
        rebuilding, init_i = Signal(init=1), Signal(range(C))

        def wrap(ptr):
            return Mux(ptr == C - 1, 0, ptr + 1)

        m.d.comb += [self.ready.eq(~rebuilding), self.head.eq(rp.data), rp.addr.eq(head), rp.en.eq(self.pop)]
        with m.If(rebuilding):
            m.d.comb += [wp.addr.eq(init_i), wp.data.eq(init_i), wp.en.eq(1)]
            m.d.sync += init_i.eq(init_i + 1)
            with m.If(init_i == C - 1):
                m.d.sync += rebuilding.eq(0)
        with m.Elif(self.push):
            m.d.comb += [wp.addr.eq(tail), wp.data.eq(self.push_chunk), wp.en.eq(1)]
            m.d.sync += tail.eq(wrap(tail))
        with m.If(self.pop):
            m.d.sync += head.eq(wrap(head))
        m.d.sync += self.count.eq(self.count - self.pop + self.push)
        return m


class Va2PaTable(wiring.Component):
    """VA2PA: the physical chunk of every (config slot, segment, virtual chunk), in a K table and a V table.

    The two tables are block RAMs read together, each at its own address: a read (``read_en``) of
    ``read_addr`` (K, V) answers on ``read_data`` (the K and the V entry) in the next cycle and holds
    them until the next read (an address per table: each table's address drives half the block RAMs,
    and a reader with one table's answer in mind need not choose between two addresses); the
    reader picks its half from a register of its own, so no multiplexer sits between a block RAM and
    the register that takes its data. A write (``write_en``) of the ``write_kv`` table takes effect at
    the clock edge. :meth:`address` gives an entry's address in its table.

    Parameters
    ----------
    slots, segments, vchunks:
        Config-buffer slots, segments per request and virtual chunks per segment.
    chunk_bits:
        Width of a chunk number.
    """

    def __init__(self, slots: int, segments: int, vchunks: int, chunk_bits: int):
        self.segments, self.vchunks = segments, vchunks
        self.depth = self.entries(slots, segments, vchunks) // 2            # per table
        super().__init__({
            "read_addr": In(data.ArrayLayout(range(self.depth), 2)), "read_en": In(1),
            "read_data": Out(data.ArrayLayout(chunk_bits, 2)),
            "write_addr": In(range(self.depth)), "write_kv": In(1), "write_data": In(chunk_bits), "write_en": In(1),
        })

    @staticmethod
    def entries(slots: int, segments: int, vchunks: int) -> int:
        """Entries of the tables for ``slots`` requests: K and V, each ``segments`` x ``vchunks``."""
        return slots * 2 * segments * vchunks

    @classmethod
    def storage_bits(cls, slots: int, segments: int, vchunks: int, chunk_bits: int) -> int:
        """Bits of the tables: a chunk number per entry."""
        return cls.entries(slots, segments, vchunks) * chunk_bits

    def address(self, slot, seg, vchunk):
        """The entry of virtual chunk ``vchunk`` of segment ``seg`` of ``slot`` (in the K or the V table).
        In gates, with power-of-two segments and virtual chunks (the shipped sizes), the fields side by
        side: no adder in front of the RAMs' address."""
        fields = (slot, seg, vchunk)
        if all(isinstance(x, int) for x in fields) or not (_pow2(self.segments) and _pow2(self.vchunks)):
            return (slot * self.segments + seg) * self.vchunks + vchunk
        ls, lv = (self.segments - 1).bit_length(), (self.vchunks - 1).bit_length()
        return Cat(Value.cast(vchunk)[:lv], Value.cast(seg)[:ls], Value.cast(slot))

    def elaborate(self, platform):
        m = Module()
        for kv, name in enumerate(("k_table", "v_table")):
            m.submodules[name] = ram = Memory(shape=len(self.write_data), depth=self.depth, init=[])
            wp, rp = ram.write_port(), ram.read_port(domain="sync")
            m.d.comb += [rp.addr.eq(self.read_addr[kv]), rp.en.eq(self.read_en), self.read_data[kv].eq(rp.data),
                         wp.addr.eq(self.write_addr), wp.data.eq(self.write_data),
                         wp.en.eq(self.write_en & (self.write_kv == kv))]
        return m


class ConfigBuffer(wiring.Component):
    """The open requests: per slot a valid bit, the request id, its length and the K and V chunks it holds
    per segment.

    ``request`` is looked up at the clock edge while ``lookup`` is high (a match of the valid slots' ids,
    registered as one bit per slot); the answer is registered a cycle later: from the second cycle
    on, until the next lookup, ``found``, the matching ``slot`` and that slot's ``length`` and
    ``have`` (K, V) as they were a cycle before. An id is held by one slot at most (the parent opens
    only an id it did not find), so the answer is an AND-OR over the slots, a tree, not a priority
    chain. ``free`` is high while a slot is free, ``free_slot`` the
    lowest. A write on slot ``at`` (the parent names it from what it looked up): ``open`` fills it
    with id ``open_id``, ``update`` writes its length and chunks, ``close`` frees it (one of them per
    cycle). A write is registered when it is asked for and applied at the end of the next cycle, so
    the decision that asks for it does not drive the slots' enables; ``busy`` is high in that next
    cycle, while the slots still hold the old contents.

    Parameters
    ----------
    config:
        The controller's parameters.
    len_bits:
        Width of a request length.
    """

    def __init__(self, config: DpaConfig, len_bits: int):
        self.config = config
        R = config.max_requests
        self.values = values = self.slot_layout(config, len_bits)
        super().__init__({
            "request": In(config.request_id_bits), "lookup": In(1),
            "found": Out(1), "slot": Out(range(R)), "free": Out(1), "free_slot": Out(range(R)),
            "current": Out(values),
            "at": In(range(R)), "open": In(1), "open_id": In(config.request_id_bits), "update": In(1),
            "close": In(1), "write": In(values), "busy": Out(1),
        })

    @staticmethod
    def slot_layout(config: DpaConfig, len_bits: int) -> data.StructLayout:
        """What a slot holds besides its valid bit and request id: the length and the K and V chunks."""
        return data.StructLayout({"length": len_bits,
                                  "have": data.ArrayLayout(range(config.max_chunks_per_segment + 1), 2)})

    @classmethod
    def storage_bits(cls, config: DpaConfig, len_bits: int) -> int:
        """Bits of the slots' registers: valid, request id, length and chunks held."""
        return config.max_requests * (1 + config.request_id_bits + cls.slot_layout(config, len_bits).size)

    def elaborate(self, platform):
        m = Module()
        c = self.config
        R = c.max_requests
        valid = Array(Signal(name=f"valid{i}") for i in range(R))
        ids = Array(Signal(c.request_id_bits, name=f"id{i}") for i in range(R))
        values = Array(Signal(self.values, name=f"request{i}") for i in range(R))
        hit, free_slots = Signal(R, name="hit"), Signal(R)
        with m.If(self.lookup):
            m.d.sync += [hit[i].eq(valid[i] & (ids[i] == self.request)) for i in range(R)]
        m.d.comb += [free_slots[i].eq(~valid[i]) for i in range(R)]
        slot, current = Const(0, len(self.slot)), Const(0, self.values.size)
        for i in range(R):                          # one hit at most: an OR of the hit slot's index and values
            slot = slot | Mux(hit[i], i, 0)
            current = current | Mux(hit[i], values[i].as_value(), 0)
        lowest = free_slots & -free_slots           # the lowest free slot, one-hot
        free_slot = Const(0, len(self.free_slot))
        for i in range(R):
            free_slot = free_slot | Mux(lowest[i], i, 0)
        m.d.sync += [self.found.eq(hit.any()), self.slot.eq(slot), self.current.eq(current)]
        m.d.comb += [self.free.eq(free_slots.any()), self.free_slot.eq(free_slot)]
        w_open, w_update, w_close = Signal(name="w_open"), Signal(name="w_update"), Signal(name="w_close")
        w_at, w_id = Signal(range(R), name="w_at"), Signal(c.request_id_bits, name="w_id")
        w_values = Signal(self.values, name="w_values")
        m.d.sync += [w_open.eq(self.open), w_update.eq(self.update), w_close.eq(self.close), w_at.eq(self.at),
                     w_id.eq(self.open_id), w_values.eq(self.write)]
        m.d.comb += self.busy.eq(w_open | w_update | w_close)
        with m.If(w_open):
            m.d.sync += [valid[w_at].eq(1), ids[w_at].eq(w_id), values[w_at].eq(w_values)]
        with m.If(w_update):
            m.d.sync += values[w_at].eq(w_values)
        with m.If(w_close):
            m.d.sync += valid[w_at].eq(0)
        return m


class ProgramLoader(wiring.Component):
    """PROGRAM and LOAD: the program's structure checks and the instruction buffer.

    ``program`` (a PROGRAM of ``arg`` tokens per block, not zero, taken this cycle) starts a new program.
    ``load`` (a LOAD of ``word``, which must have been on ``word`` since the previous cycle: its own
    checks are registered) applies the word when ``load_status`` (combinational, the LOAD's answer) is
    OK: a DYN_LOOP opens the K or V loop, a DYN_MODI marks the next entry, any
    other word is written into the instruction buffer. The decoder reads the program's shape (``block``,
    ``entries``, the loops' first entries ``marks``, their tokens per row ``row_tokens`` and channel
    ``masks``, ``slices_log2``) and the buffer (``read_addr``, ``read_en`` -> ``read_data`` the next
    cycle); ``complete`` is high when the program has both loops, each closed by its words.

    Parameters
    ----------
    config:
        The controller's parameters.
    """

    def __init__(self, config: DpaConfig):
        self.config = config
        w = DpaWidths(config)
        fmt, org, P = w.fmt, config.org, config.program_entries
        self.ins_layout = instruction_layout(fmt)
        self.entry_layout = self.buffer_entry(fmt)
        self.max_slices = org.channels // config.slice_channels
        super().__init__({
            "arg": In(ARG_BITS), "word": In(self.ins_layout),
            "program": In(1), "load": In(1), "load_status": Out(StatusShape),
            "complete": Out(1),
            "block": Out(w.len_bits), "entries": Out(range(P + 1)),
            "marks": Out(data.ArrayLayout(range(P + 1), 2)),
            "row_tokens": Out(data.ArrayLayout(fmt.row_bits + LOOP_ROW_UNIT.bit_length(), 2)),
            "masks": Out(data.ArrayLayout(fmt.channels, 2)),
            "slices_log2": Out(range(max(2, self.max_slices.bit_length()))),
            "read_addr": In(range(P)), "read_en": In(1), "read_data": Out(self.entry_layout),
        })

    @staticmethod
    def buffer_entry(fmt: Format) -> data.StructLayout:
        """An instruction buffer entry: the instruction, its row flag, GPR stride and guard."""
        return data.StructLayout({"ins": instruction_layout(fmt), "rowm": 1, "stride": fmt.gpr_bits,
                                  "guard": fmt.row_bits})

    @classmethod
    def storage_bits(cls, config: DpaConfig) -> int:
        """Bits of the instruction buffer: an entry per program word."""
        return config.program_entries * cls.buffer_entry(Format.for_org(config.org)).size

    def elaborate(self, platform):
        m = Module()
        c, org, lay = self.config, self.config.org, self.config.layout
        fmt, P, kb = DpaWidths(c).fmt, c.program_entries, c.slice_channels
        lkb = (kb - 1).bit_length()
        m.submodules.ibuf = ibuf = Memory(shape=self.entry_layout, depth=P, init=[])
        ib_w, ib_r = ibuf.write_port(), ibuf.read_port(domain="sync")
        m.d.comb += [ib_r.addr.eq(self.read_addr), ib_r.en.eq(self.read_en), self.read_data.eq(ib_r.data)]
        entries, marks = self.entries, self.marks
        loading = Signal()
        loops = Signal(range(3))
        words = Signal(fmt.gpr_bits + 1)               # words since the last DYN_LOOP
        loop_words = [Signal(fmt.gpr_bits, name=f"loop_words{k}") for k in range(2)]
        pend, pend_row = Signal(), Signal()
        pend_stride, pend_guard = Signal(fmt.gpr_bits), Signal(fmt.row_bits)
        m.d.comb += self.complete.eq(loading & (loops == 2) & ~pend & (words == loop_words[1])
                                     & (entries != marks[1]))

        # what the word alone says, registered: the word must be on ``word`` a cycle before its ``load``
        word = self.word
        w_op = word.op.as_value()
        op_exists = w_op < len(Opcode)
        no_size = opcode_in(word.op, [op for op in Opcode if not ADVANCING[op]])
        w_kind = word.gbuf
        unit = LOOP_ROW_UNIT * lay.rows_per_chunk
        chunk_rows = Mux(w_kind == 0, lay.k_tokens // unit, lay.v_tokens // unit)
        v_n = popcount(word.ch_mask)
        v_ns = Signal(range(org.channels + 1))
        bad_word, bad_shape = Signal(), Signal()       # any word; a DYN_LOOP's own fields
        slices = v_n >> lkb
        m.d.sync += [v_ns.eq(slices),
                     bad_word.eq(~op_exists | (word.ch_mask == 0) | (no_size & (word.op_size != 0))),
                     bad_shape.eq((w_kind > 1) | (word.row != chunk_rows)
                                  | ((w_kind == 1) & ((v_n & (kb - 1) != 0) | ((slices & (slices - 1)) != 0))))]
        bad_loop = ((w_kind != loops) | bad_shape | pend
                    | ((loops == 1) & ((words != loop_words[0]) | (entries == marks[0]))))
        bad_modi = (loops == 0) | (word.gbuf > max(Modi))

        status = self.load_status
        m.d.comb += status.eq(StatusShape.OK)
        with m.If(~loading | bad_word):
            m.d.comb += status.eq(StatusShape.BAD_PROGRAM)
        with m.Elif(w_op == Opcode.DYN_LOOP), m.If(bad_loop):
            m.d.comb += status.eq(StatusShape.BAD_PROGRAM)
        with m.Elif(w_op == Opcode.DYN_MODI), m.If(bad_modi):
            m.d.comb += status.eq(StatusShape.BAD_PROGRAM)
        with m.Elif(entries == P):
            m.d.comb += status.eq(StatusShape.PROGRAM_FULL)

        with m.If(self.program):
            m.d.sync += [loading.eq(1), entries.eq(0), loops.eq(0), pend.eq(0), words.eq(0),
                         self.block.eq(Mux(self.arg > c.max_tokens, c.max_tokens, self.arg))]
        with m.If(self.load & (status == StatusShape.OK)):
            with m.If(w_op == Opcode.DYN_LOOP):
                m.d.sync += [loops.eq(loops + 1), words.eq(0), marks[w_kind].eq(entries),
                             Array(loop_words)[w_kind].eq(word.gpr),
                             self.row_tokens[w_kind].eq(word.row * LOOP_ROW_UNIT),
                             self.masks[w_kind].eq(word.ch_mask)]
                with m.If(w_kind == 1):
                    for k in range(self.max_slices.bit_length()):
                        with m.If(v_ns == 1 << k):
                            m.d.sync += self.slices_log2.eq(k)
            with m.Elif(w_op == Opcode.DYN_MODI):
                m.d.sync += [pend.eq(1), words.eq(words + 1)]
                with m.Switch(word.gbuf):
                    with m.Case(Modi.ROW):
                        m.d.sync += pend_row.eq(1)
                    with m.Case(Modi.GPR):
                        m.d.sync += pend_stride.eq(pend_stride + word.row)
                    with m.Case(Modi.GUARD):
                        m.d.sync += pend_guard.eq(word.row)
            with m.Else():
                m.d.comb += [ib_w.addr.eq(entries), ib_w.en.eq(1), ib_w.data.ins.eq(word),
                             ib_w.data.rowm.eq(pend_row), ib_w.data.stride.eq(pend_stride),
                             ib_w.data.guard.eq(pend_guard)]
                m.d.sync += [entries.eq(entries + 1), words.eq(words + 1), pend.eq(0),
                             pend_row.eq(0), pend_stride.eq(0), pend_guard.eq(0)]
        return m


class Decoder(wiring.Component):
    """RUN's expansion of the program into physical instructions: a fetch stage and five decode stages.

    ``start`` (with the request's config ``slot``, ``segment`` and ``length``) begins a RUN at the clock
    edge. While ``enable`` is high the fetch stage reads one buffer entry per cycle (``ib_addr``,
    ``ib_en``) and the VA2PA entries of the K and the V loop's rows (``va``, ``va_en``), walking the prologue,
    the K loop over the rows of the block and the V loop, block after block; the decode stages (the
    next five cycles, :meth:`_decode`) apply the Dyn-Loop guards to the channel mask and op-size, write
    the physical row and the GPR stride, and register the instruction on ``out``, five cycles after
    its fetch. An entry that the guards leave with no channel or no repetition is dropped.
    ``out.ready`` low stalls every stage. ``done`` is high in the cycle the last instruction leaves
    (or, with nothing to send, when the fetch has ended and the stages are empty).

    Parameters
    ----------
    config:
        The controller's parameters.
    loader:
        The :class:`ProgramLoader` whose program and buffer the decoder reads (its layouts).
    """

    def __init__(self, config: DpaConfig, loader: ProgramLoader):
        self.config = config
        w = DpaWidths(config)
        self.fmt, self.len_bits = w.fmt, w.len_bits
        R, S = config.max_requests, config.segments
        va = data.StructLayout({"slot": range(R), "seg": range(S), "vchunk": data.ArrayLayout(w.len_bits, 2)})
        super().__init__({
            "enable": In(1),
            "start": In(1), "slot": In(range(R)), "segment": In(range(S)), "length": In(w.len_bits),
            "block": In(w.len_bits), "entries": In(range(config.program_entries + 1)),
            "marks": In(loader.marks.shape()), "row_tokens": In(loader.row_tokens.shape()),
            "masks": In(loader.masks.shape()), "slices_log2": In(loader.slices_log2.shape()),
            "ib_addr": Out(range(config.program_entries)), "ib_en": Out(1), "ib_data": In(loader.entry_layout),
            "va": Out(va), "va_en": Out(1), "va_data": In(data.ArrayLayout(w.chunk_bits, 2)),
            "out": Out(stream.Signature(data.StructLayout({"ins": loader.ins_layout, "sv": 1}))),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        fmt, lb = self.fmt, self.len_bits + 1
        f_run, f_phase = Signal(name="f_run"), Signal(Phase, name="f_phase")
        pc, r = Signal(range(self.config.program_entries), name="pc"), Signal(fmt.gpr_bits, name="loop_row")
        b = data.StructLayout({"valid": 1, "phase": Phase, "r": fmt.gpr_bits, "t1": lb, "bursts": lb,
                               "v": self.len_bits, "kacc": lb + 4, "vb": lb})
        fetched = Signal(b, name="fetched")             # what the fetch stage hands the decode stage
        advance = ~self.out.valid | self.out.ready
        consts = self._program_constants(m)
        self._fetch(m, f_run, f_phase, pc, r, fetched, advance, consts)
        decoding = self._decode(m, fetched, advance, consts)
        m.d.comb += self.done.eq(~f_run & ~fetched.valid & ~decoding & advance)
        return m

    def _program_constants(self, m) -> dict:
        """What the stages derive from the program's shape, in registers: each channel's rank among the
        loop's channels and the K loop's channel count (popcount trees, first register), the K loop's
        tokens per guard step and per row and the V slices' members (from those, second register), each
        V slice's rounding term ``slices - 1 - s``, and the last entry of the prologue and of each loop.
        The program changes only when a LOAD is decided, and a RUN is decided at least two cycles later
        and fetches in the cycle after, so the registers' two cycles of lag are never seen; they keep
        the popcounts and the subtractions out of the per-entry path."""
        c, org, fmt = self.config, self.config.org, self.fmt
        masks, kb = self.masks, c.slice_channels
        lkb = (kb - 1).bit_length()
        n_k = Signal(range(fmt.channels + 1), name="k_channels")
        m.d.sync += n_k.eq(popcount(masks[0]))
        rank_bits = fmt.channels.bit_length()
        ranks = [[Signal(rank_bits, name=f"rank{kind}_{ch}") for ch in range(fmt.channels)] for kind in range(2)]
        for kind in range(2):
            for ch in range(fmt.channels):                  # the loop's channels below this one
                m.d.sync += ranks[kind][ch].eq(popcount(masks[kind][:ch]) if ch else 0)
        k_tokens = Signal(range(fmt.channels * org.banks + 1), name="k_guard_tokens")   # per guard step
        k_step = Signal(range(fmt.channels * org.banks * org.bursts_per_row + 1), name="k_row_tokens")
        m.d.sync += [k_tokens.eq(n_k * org.banks), k_step.eq(n_k * org.banks * (org.bursts_per_row // kb))]
        members = [Signal(fmt.channels, name=f"v_slice{s}") for s in range(org.channels // kb)]
        for s, member in enumerate(members):
            m.d.sync += member.eq(Cat(masks[1][ch] & ((ranks[1][ch] >> lkb) == s) for ch in range(fmt.channels)))
        last_pc = [Signal(len(self.marks[0]), name=f"last_pc{k}") for k in range(3)]    # each part's last entry
        ends = (self.marks[0], self.marks[1], self.entries)
        m.d.sync += [last.eq(end - 1) for last, end in zip(last_pc, ends, strict=True)]
        ns = Const(1, len(members).bit_length() + 1) << self.slices_log2
        pads = [Signal(range(len(members)), name=f"v_pad{s}") for s in range(len(members))]
        m.d.sync += [pad.eq(Mux(s < ns, ns - 1 - s, 0)) for s, pad in enumerate(pads)]   # ns - 1 - s, rounding up
        return {"ranks": ranks, "k_tokens": k_tokens, "k_step": k_step, "members": members, "v_pad": pads,
                "last_pc": last_pc, "slices": ns}

    def _fetch(self, m, f_run, f_phase, pc, r, fetched, advance, consts):
        """The first stage: the entry at ``pc`` and the VA2PA entries of the K and the V loop's rows; the walk. The sums
        the walk compares (the next row's start per loop, the next block's start and end) are registers
        kept one step ahead, so each decision is one compare."""
        c, org, lay = self.config, self.config.org, self.config.layout
        lb = self.len_bits + 1
        lrpc = (lay.rows_per_chunk - 1).bit_length()
        lburst = (org.burst_elements - 1).bit_length()
        t1, run_len = Signal(lb, name="t1"), Signal(self.len_bits, name="run_len")     # the block's end, the RUN's
        rs = [Signal(lb, name=f"row_start{k}") for k in range(2)]
        rs_next = [Signal(lb + 1, name=f"row_next{k}") for k in range(2)]         # rs + the loop's row tokens
        t0_next, t0_after = Signal(lb + 1, name="t0_next"), Signal(lb + 2, name="t0_after")  # the next block's
        # start and end (uncut)
        vr = [Signal(self.len_bits, name=f"vrow{k}") for k in range(2)]
        kacc, vb = Signal(lb + 4, name="kacc"), Signal(lb, name="vb")
        run_slot, run_seg = Signal(range(c.max_requests), name="run_slot"), Signal(range(c.segments), name="run_seg")
        marks, loop_rt, block = self.marks, self.row_tokens, self.block
        bpr = org.bursts_per_row
        kstep = consts["k_step"]
        last_pc = consts["last_pc"]
        sec_last = Mux(f_phase == Phase.PROLOGUE, last_pc[0], Mux(f_phase == Phase.QK, last_pc[1], last_pc[2]))
        f_kind = f_phase == Phase.SV

        with m.If(self.start):
            m.d.sync += [run_slot.eq(self.slot), run_seg.eq(self.segment), run_len.eq(self.length),
                         f_run.eq(1), pc.eq(0), r.eq(0),
                         t1.eq(Mux(self.length < block, self.length, block)),
                         f_phase.eq(Mux(marks[0] == 0, Phase.QK, Phase.PROLOGUE)),
                         kacc.eq(0), vb.eq(0), fetched.valid.eq(0), t0_next.eq(block), t0_after.eq(2 * block)]
            m.d.sync += [s.eq(0) for s in (*rs, *vr)]
            m.d.sync += [rs_next[k].eq(loop_rt[k]) for k in range(2)]
        with m.If(self.enable):
            vrow = Mux(f_kind, vr[1], vr[0])
            m.d.comb += [self.ib_addr.eq(pc), self.ib_en.eq(advance), self.va.slot.eq(run_slot),
                         self.va.seg.eq(run_seg), self.va.vchunk[0].eq(vr[0] >> lrpc),
                         self.va.vchunk[1].eq(vr[1] >> lrpc),
                         self.va_en.eq(advance)]
            with m.If(advance):
                m.d.sync += [fetched.valid.eq(f_run), fetched.phase.eq(f_phase), fetched.r.eq(r), fetched.t1.eq(t1),
                             fetched.bursts.eq((t1 + (1 << lburst) - 1) >> lburst),
                             fetched.v.eq(vrow), fetched.kacc.eq(kacc), fetched.vb.eq(vb)]
            last = pc == sec_last
            t0n = t0_next

            def next_row(kind):
                m.d.sync += [rs[kind].eq(rs_next[kind]), rs_next[kind].eq(rs_next[kind] + loop_rt[kind]),
                             vr[kind].eq(vr[kind] + 1)]
                m.d.sync += (kacc.eq(kacc + kstep) if kind == 0 else vb.eq(vb + bpr))

            with m.If(advance & f_run):
                with m.If(~last):
                    m.d.sync += pc.eq(pc + 1)
                with m.Elif(f_phase == Phase.PROLOGUE):
                    m.d.sync += [f_phase.eq(Phase.QK), pc.eq(marks[0]), r.eq(0)]
                with m.Elif(f_phase == Phase.QK):
                    with m.If(rs_next[0] < t1):
                        next_row(0)
                        m.d.sync += [r.eq(r + 1), pc.eq(marks[0])]
                    with m.Else():
                        m.d.sync += [f_phase.eq(Phase.SV), pc.eq(marks[1]), r.eq(0)]
                with m.Else():
                    with m.If(rs_next[1] < t1):
                        next_row(1)
                        m.d.sync += [r.eq(r + 1), pc.eq(marks[1])]
                    with m.Elif(t0n < run_len):
                        m.d.sync += [t1.eq(Mux(t0_after < run_len, t0_after, run_len)), pc.eq(0),
                                     t0_next.eq(t0_after), t0_after.eq(t0_after + block),
                                     r.eq(0), f_phase.eq(Mux(marks[0] == 0, Phase.QK, Phase.PROLOGUE))]
                        for kind in range(2):
                            with m.If(rs_next[kind] <= t0n):
                                next_row(kind)
                    with m.Else():
                        m.d.sync += f_run.eq(0)

    def _decode(self, m, b, advance, consts) -> Value:
        """The decode stages after the fetch: D0 (the entry and the VA2PA chunks as read, each channel's
        and slice's bound from the walk's position), D1 (the physical row, the guard's products with the
        K tokens per step and of the GPR stride, the V start), D2 (the K start, the GPR, the V compares),
        D3 (the K compares, the V trims, the masks and op-size chosen by phase), D4 (the output
        register). Every stage register moves when ``advance``; returns "a stage holds an entry"."""
        c, org, lay, fmt = self.config, self.config.org, self.config.layout, self.fmt
        out, e = self.out, self.ib_data
        lb = self.len_bits + 1
        lrpc = (lay.rows_per_chunk - 1).bit_length()
        kb = c.slice_channels
        max_ns = org.channels // kb
        masks, ranks = self.masks, consts["ranks"]
        carry = data.StructLayout({"valid": 1, "phase": Phase, "ins": e.ins.shape(), "row": fmt.row_bits})
        bounds = {"lim": data.ArrayLayout(lb, fmt.channels), "pos": fmt.channels, "end": data.ArrayLayout(lb, max_ns)}
        d0 = Signal(data.StructLayout({"c": carry, "guard": fmt.row_bits, "stride": fmt.gpr_bits,
                                       "r": fmt.gpr_bits, "kacc": lb + 4, "vb": lb, **bounds,
                                       "rowm": 1, "chunks": self.va_data.shape(), "low": max(lrpc, 1)}), name="d0")
        d1 = Signal(data.StructLayout({"c": carry, "guarded": 1, "strided": fmt.gpr_bits, "kacc": lb + 4,
                                       "k_from": lb + 4, "k_off": lb + 4, "first_v": lb, **bounds,
                                       "hit": max_ns}), name="d1")
        d2 = Signal(data.StructLayout({"c": carry, "gpr": fmt.gpr_bits, "first_k": lb + 4,
                                       "lim": data.ArrayLayout(lb, fmt.channels), "pos": fmt.channels, "v_gt": max_ns,
                                       "v_less": data.ArrayLayout(lb, max_ns), "hit": max_ns}), name="d2")
        d3 = Signal(data.StructLayout({"c": carry, "gpr": fmt.gpr_bits, "mask": fmt.channels,
                                       "op_size": fmt.op_size_bits, "none": 1}), name="d3")
        # D0 -- the fetched entry and its VA2PA chunks into registers as read (the row is chosen in D1:
        # nothing but wires behind the block RAMs); the bounds from the walk's position
        loop = b.phase != Phase.PROLOGUE
        ns = consts["slices"]                                # the V loop's slices, 1 << slices_log2
        with m.If(advance):
            m.d.sync += [d0.c.valid.eq(b.valid), d0.c.phase.eq(b.phase), d0.c.ins.eq(e.ins),
                         d0.c.row.eq(e.ins.row), d0.rowm.eq(loop & e.rowm), d0.chunks.eq(self.va_data),
                         d0.low.eq(b.v[:lrpc] if lrpc else 0), d0.guard.eq(e.guard),
                         d0.stride.eq(e.stride), d0.r.eq(Mux(loop, b.r, 0)), d0.kacc.eq(b.kacc), d0.vb.eq(b.vb)]
            for ch in range(fmt.channels):     # K: channel of rank p keeps the instruction while its first
                before = ranks[0][ch] * org.banks   # lane's token (kacc + g x tokens + p x banks) is below t1
                m.d.sync += [d0.lim[ch].eq(b.t1 - before), d0.pos[ch].eq(b.t1 > before)]
            for s in range(max_ns):            # V: slice s holds local bursts below ceil(ceil(t1/16) - s, ns)
                m.d.sync += d0.end[s].eq(Mux(b.bursts > s, (b.bursts + consts["v_pad"][s]) >> self.slices_log2, 0))
        # D1 -- the physical row, the products and the V start (g = guard - 1, or 0 without a guard)
        ins0 = d0.c.ins
        guarded = d0.guard != 0
        chunk = Mux(d0.c.phase == Phase.SV, d0.chunks[1], d0.chunks[0])      # the V table in the SV part
        row = Cat(d0.low, chunk) if lrpc else chunk
        with m.If(advance):
            m.d.sync += [d1.c.eq(d0.c), d1.c.row.eq(Mux(d0.rowm, row, d0.c.row)), d1.lim.eq(d0.lim),
                         d1.pos.eq(d0.pos), d1.end.eq(d0.end),
                         d1.guarded.eq(guarded), d1.strided.eq(d0.r * d0.stride), d1.kacc.eq(d0.kacc),
                         d1.k_from.eq(d0.kacc - consts["k_tokens"]), d1.k_off.eq(d0.guard * consts["k_tokens"]),
                         d1.first_v.eq(Mux(guarded, d0.vb + d0.guard - 1, d0.vb))]
            for s in range(max_ns):
                m.d.sync += d1.hit[s].eq((s < ns) & guarded & ((ins0.ch_mask & consts["members"][s]) != 0))
        # D2 -- the K start (kacc + g x tokens), the GPR and the V compares
        first_k = Mux(d1.guarded, d1.k_from + d1.k_off, d1.kacc)
        with m.If(advance):
            m.d.sync += [d2.c.eq(d1.c), d2.gpr.eq(d1.c.ins.gpr + d1.strided), d2.hit.eq(d1.hit)]
            m.d.sync += [d2.first_k.eq(first_k), d2.lim.eq(d1.lim), d2.pos.eq(d1.pos)]
            for s in range(max_ns):          # the slice's repetitions less one (end - first - 1) when it is
                less = Signal(lb, name=f"v_less{s}")     # below the instruction's op-size
                m.d.comb += less.eq(d1.end[s] + ~d1.first_v)
                m.d.sync += [d2.v_gt[s].eq(d1.end[s] > d1.first_v), d2.v_less[s].eq(less)]
        # D3 -- the K compares, the V trims, mask and op-size (repetitions less one) by phase
        ins3 = d2.c.ins
        k_mask = Cat(masks[0][ch] & d2.pos[ch] & (d2.first_k < d2.lim[ch]) for ch in range(fmt.channels))
        v_mask = Const(0, fmt.channels)
        v_op, v_none = Signal(fmt.op_size_bits), Signal()     # a hit slice with no repetition left: dropped
        m.d.comb += v_op.eq(ins3.op_size)
        for s in range(max_ns):
            v_mask = v_mask | Mux((s < ns) & d2.v_gt[s], consts["members"][s], 0)
            with m.If(d2.hit[s]):
                m.d.comb += [v_none.eq(~d2.v_gt[s]),
                             v_op.eq(Mux(d2.v_less[s] < ins3.op_size, d2.v_less[s], ins3.op_size))]
        mask, op_size, none = Signal(fmt.channels), Signal(fmt.op_size_bits), Signal()
        with m.Switch(d2.c.phase):
            with m.Case(Phase.PROLOGUE):
                m.d.comb += [mask.eq(ins3.ch_mask), op_size.eq(ins3.op_size)]
            with m.Case(Phase.QK):
                m.d.comb += [mask.eq(k_mask & ins3.ch_mask), op_size.eq(ins3.op_size)]
            with m.Default():
                m.d.comb += [mask.eq(v_mask & ins3.ch_mask), op_size.eq(v_op), none.eq(v_none)]
        with m.If(advance):
            m.d.sync += [d3.c.eq(d2.c), d3.gpr.eq(d2.gpr), d3.mask.eq(mask), d3.op_size.eq(op_size), d3.none.eq(none)]
        # D4 -- the output register: an instruction left with no channel or no repetition is dropped
        with m.If(advance):
            m.d.sync += out.valid.eq(d3.c.valid & (d3.mask != 0) & ~d3.none)
            m.d.sync += [out.payload.ins.eq(d3.c.ins), out.payload.ins.ch_mask.eq(d3.mask),
                         out.payload.ins.op_size.eq(d3.op_size), out.payload.ins.row.eq(d3.c.row),
                         out.payload.ins.gpr.eq(d3.gpr), out.payload.sv.eq(d3.c.phase == Phase.SV)]
        return d0.c.valid | d1.c.valid | d2.c.valid | d3.c.valid


class DpaController(wiring.Component):
    """DPA controller of one module: config buffer, VA2PA table, free list, instruction buffer, decoder.

    Ports
    -----
    mgmt : In(stream of {op, request, segment, kv, arg, word})
        Host operations (:class:`~pimphony.model.dpa.DpaOp`), one at a time and in order: an operation
        is accepted (``ready``) only when the previous one has been answered and its response taken
        or being taken, and not in the cycle after an OPEN, APPEND or CLOSE is decided (the config
        buffer applies its write). ``ready`` is low for ``chunks`` cycles after reset while the free
        list is rebuilt.
    resp : Out(stream of {status, chunk, offset, free})
        Exactly one response per operation, in order; the payload holds until ``ready``. A failed
        operation changed no state. An operation is taken with its own bounds (registered) and its
        request looked up in the config buffer, whose answer is registered in the next cycle; it is
        decided in the cycle after that (PROGRAM, which looks nothing up, in the next cycle);
        OPEN and APPEND three cycles later (the chunk arithmetic: the new length, then the chunks
        wanted, held and free, then their compares), TRANSLATE one cycle later (the token against
        the length). OPEN / APPEND then take one cycle per chunk and two more (the free list's read
        is registered before the VA2PA write), CLOSE likewise per chunk it returns, RUN answers after
        its last instruction has left ``ins_out``, TRANSLATE a cycle after its VA2PA read (the data
        registered); the answer is registered.
    ins_out : Out(stream of {ins, sv})
        RUN's physical instructions, in the order of
        :meth:`~pimphony.model.hub.DpaDispatcher.expand`, ``sv`` high in the SV part of a block.
        One buffer entry is decoded per cycle while ``ready`` is high (an entry that the guards
        leave with no channel or no repetition is dropped in its cycle); an instruction is valid six
        cycles after its entry is fetched, the first fetch the cycle after the RUN is decided.
        ``ready`` low stalls the decoder without loss.

    Parameters
    ----------
    config:
        The controller's parameters (shared with the golden model). The hardware also needs the
        chunk's K and V tokens, its rows per bank, the banks, the 16-token burst and
        ``head_dim / 16`` to be powers of two (shifts instead of dividers).
    """

    def __init__(self, config: DpaConfig):
        lay, org = config.layout, config.org
        for name, value in (("k_tokens", lay.k_tokens), ("v_tokens", lay.v_tokens),
                            ("rows_per_chunk", lay.rows_per_chunk), ("banks", org.banks),
                            ("burst_elements", org.burst_elements), ("head_dim / 16", config.slice_channels)):
            if not _pow2(value):
                raise ValueError(f"DpaController needs {name} to be a power of two, got {value}")
        self.config = config
        w = DpaWidths(config)
        self.fmt = w.fmt
        self.ins_layout = instruction_layout(self.fmt)
        self.seg_bits, self.chunk_bits, self.len_bits = w.seg_bits, w.chunk_bits, w.len_bits
        self.req_layout = data.StructLayout({"op": OP_BITS, "request": config.request_id_bits,
                                             "segment": self.seg_bits, "kv": 1, "arg": ARG_BITS,
                                             "word": self.fmt.instruction_bits})
        self.resp_layout = data.StructLayout({"status": StatusShape, "chunk": self.chunk_bits,
                                              "offset": index_bits(max(lay.k_tokens, lay.v_tokens)),
                                              "free": index_bits(config.n_chunks + 1)})
        super().__init__({
            "mgmt": In(stream.Signature(self.req_layout)),
            "resp": Out(stream.Signature(self.resp_layout)),
            "ins_out": Out(stream.Signature(data.StructLayout({"ins": self.ins_layout, "sv": 1}))),
        })

    @staticmethod
    def storage_bits(config: DpaConfig) -> dict[str, int]:
        """Bits of every buffer, each from its component's layouts: free list, VA2PA table, config buffer,
        the loader's instruction buffer."""
        w, c = DpaWidths(config), config
        return {"free_list": FreeList.storage_bits(c.n_chunks),
                "va2pa": Va2PaTable.storage_bits(c.max_requests, c.segments, c.max_chunks_per_segment, w.chunk_bits),
                "config_buffer": ConfigBuffer.storage_bits(c, w.len_bits),
                "instruction_buffer": ProgramLoader.storage_bits(c)}

    def elaborate(self, platform):
        m = Module()
        c, lay = self.config, self.config.layout
        S = c.segments
        req, resp = self.mgmt.payload, self.resp
        lkt, lvt = (lay.k_tokens - 1).bit_length(), (lay.v_tokens - 1).bit_length()
        free = m.submodules.free_list = FreeList(c.n_chunks)
        va2pa = m.submodules.va2pa = Va2PaTable(c.max_requests, S, c.max_chunks_per_segment, self.chunk_bits)
        buf = m.submodules.config_buffer = ConfigBuffer(c, self.len_bits)
        loader = m.submodules.loader = ProgramLoader(c)
        dec = m.submodules.decoder = Decoder(c, loader)
        # -- the operation pipeline: TAKE -> LOOKUP -> ARITH -> NEED -> CHECK -> DECIDE ----------------
        # The operation is registered when it is taken and its request looked up (the config buffer
        # answers two cycles later, in registers); the chunk arithmetic takes three more cycles, the
        # translation's bound one; DECIDE checks registered flags and starts it.
        op = Signal(self.req_layout, name="operation")
        looked = Signal(data.StructLayout({"free": 1, "free_slot": range(c.max_requests)}), name="looked_up")
        taking = Signal()
        # the operation's own bounds, compared when it is taken: every check DECIDE makes is a register
        flags = Signal(data.StructLayout({"arg_zero": 1, "arg_over": 1, "seg_over": 1}), name="flags")
        m.d.comb += [buf.request.eq(req.request), buf.lookup.eq(taking), buf.open_id.eq(op.request)]
        with m.If(taking):
            m.d.sync += [flags.arg_zero.eq(req.arg == 0), flags.arg_over.eq(req.arg > c.max_tokens),
                         flags.seg_over.eq(req.segment >= S)]
            m.d.sync += [op.eq(req), looked.free.eq(buf.free), looked.free_slot.eq(buf.free_slot)]
        m.d.comb += [loader.arg.eq(op.arg), loader.word.eq(op.word),
                     dec.slot.eq(buf.slot), dec.segment.eq(op.segment), dec.length.eq(buf.current.length),
                     dec.ib_data.eq(loader.read_data), loader.read_addr.eq(dec.ib_addr), loader.read_en.eq(dec.ib_en),
                     dec.va_data.eq(va2pa.read_data)]
        for name in ("block", "entries", "marks", "row_tokens", "masks", "slices_log2"):
            m.d.comb += getattr(dec, name).eq(getattr(loader, name))
        m.d.comb += [self.ins_out.valid.eq(dec.out.valid), self.ins_out.payload.eq(dec.out.payload),
                     dec.out.ready.eq(self.ins_out.ready)]

        # -- chunk arithmetic of OPEN / APPEND: ARITH (the new length), NEED (chunks wanted, held, free),
        # CHECK (their compares); CHECK also compares TRANSLATE's token with the length -------------------
        req = op                                      # from here on: the registered operation
        length, have = buf.current.length, buf.current.have
        arg = req.arg
        new_len = Signal(ARG_BITS + 1)
        m.d.sync += new_len.eq(Mux(req.op == DpaOp.APPEND, length + arg, arg))
        # chunks per segment wanted: only an admitted length's are used (written, walked), and they fit
        want = [Signal(range(c.max_chunks_per_segment + 1), name=f"want_{kv}") for kv in "kv"]
        m.d.sync += [want[0].eq((new_len + lay.k_tokens - 1) >> lkt), want[1].eq((new_len + lay.v_tokens - 1) >> lvt)]
        held = [Mux(req.op == DpaOp.APPEND, have[kv], 0) for kv in range(2)]
        # chunks needed = (wanted - held) x segments, compared with the free count as wanted x segments
        # against free + held x segments: every term is a register by DECIDE
        held_total, wanted, budget = Signal(ARG_BITS + 8), Signal(ARG_BITS + 8), Signal(ARG_BITS + 9)
        m.d.sync += [held_total.eq((held[0] + held[1]) * S), budget.eq(free.count + held_total),
                     wanted.eq((((new_len + lay.k_tokens - 1) >> lkt) + ((new_len + lay.v_tokens - 1) >> lvt)) * S)]
        need = _Need(wanted, held_total, budget)
        checked = Signal(data.StructLayout({"exceeds_free": 1, "none": 1, "len_over": 1, "past": 1}), name="checked")
        m.d.sync += [checked.exceeds_free.eq(need.exceeds_free), checked.none.eq(need.none),
                     checked.len_over.eq(new_len > c.max_tokens), checked.past.eq(arg >= length)]
        m.d.comb += [buf.write.length.eq(new_len), buf.write.have[0].eq(want[0]), buf.write.have[1].eq(want[1])]

        # -- response register ------------------------------------------------------------------------
        with m.If(resp.valid & resp.ready):
            m.d.sync += resp.valid.eq(0)

        def answer(status, chunk=0, offset=0):
            m.d.sync += [resp.valid.eq(1), resp.payload.status.eq(status), resp.payload.chunk.eq(chunk),
                         resp.payload.offset.eq(offset), resp.payload.free.eq(free.count)]

        d = _Datapath(m, free, va2pa, buf, loader, dec, _Cursor(m, c, va2pa.depth), answer, want, flags, checked,
                      op, looked)
        # each memory's read data registered on its own, whatever the state: nothing but wires between a
        # block RAM and its register
        m.d.sync += [d.cursor.popped.eq(free.head), d.cursor.returned.eq(va2pa.read_data)]
        with m.FSM(init="IDLE"):
            with m.State("IDLE"):
                m.d.comb += self.mgmt.ready.eq(free.ready & ~buf.busy & (~resp.valid | resp.ready))
                m.d.comb += taking.eq(self.mgmt.valid & self.mgmt.ready)
                incoming = self.mgmt.payload.op
                with m.If(taking & (incoming == DpaOp.PROGRAM)):
                    m.next = "DECIDE"                # no request to look up, nothing to check but its bounds
                with m.Elif(taking):
                    m.next = "LOOKUP"
            with m.State("LOOKUP"):                  # the config buffer answers in the next cycle
                with m.If((op.op == DpaOp.OPEN) | (op.op == DpaOp.APPEND)):
                    m.next = "ARITH"                 # OPEN and APPEND: the chunk arithmetic
                with m.Elif(op.op == DpaOp.TRANSLATE):
                    m.next = "CHECK"                 # the token against the length
                with m.Else():
                    m.next = "DECIDE"                # LOAD: the loader registered its word's checks meanwhile
            with m.State("ARITH"):
                m.next = "NEED"
            with m.State("NEED"):
                m.next = "CHECK"
            with m.State("CHECK"):
                m.next = "DECIDE"
            with m.State("DECIDE"):
                m.next = "IDLE"
                self._operations(d)
            self._walks(d)
        return m

    def _operations(self, d: _Datapath) -> None:
        """DECIDE: check the registered operation with what was looked up and computed, answer it or start
        it (the next state)."""
        m, lay = d.m, self.config.layout
        req, resp, arg = d.op, self.resp, d.op.arg
        lkt, lvt = (lay.k_tokens - 1).bit_length(), (lay.v_tokens - 1).bit_length()
        va2pa, buf, loader, dec, cursor, answer = d.va2pa, d.buf, d.loader, d.dec, d.cursor, d.answer
        slot, found, have = buf.slot, buf.found, buf.current.have
        want, flags, checked, va_addr = d.want, d.flags, d.checked, va2pa.address
        with m.Switch(req.op):
            with m.Case(DpaOp.OPEN):
                with m.If(found):
                    answer(StatusShape.DUPLICATE_REQUEST)
                with m.Elif(flags.arg_zero):
                    answer(StatusShape.BAD_LENGTH)
                with m.Elif(flags.arg_over):
                    answer(StatusShape.PAST_END)
                with m.Elif(~d.looked.free):
                    answer(StatusShape.TABLE_FULL)
                with m.Elif(checked.exceeds_free):
                    answer(StatusShape.OUT_OF_CHUNKS)
                with m.Else():
                    m.d.comb += [buf.open.eq(1), buf.at.eq(d.looked.free_slot)]
                    cursor.start(d.looked.free_slot, 0, want[0], 0, want[1])
                    m.next = "ALLOC"
            with m.Case(DpaOp.APPEND):
                with m.If(~found):
                    answer(StatusShape.UNKNOWN_REQUEST)
                with m.Elif(flags.arg_zero):
                    answer(StatusShape.BAD_LENGTH)
                with m.Elif(checked.len_over):
                    answer(StatusShape.PAST_END)
                with m.Elif(checked.exceeds_free):
                    answer(StatusShape.OUT_OF_CHUNKS)
                with m.Else():
                    m.d.comb += [buf.update.eq(1), buf.at.eq(slot)]
                    with m.If(checked.none):
                        answer(StatusShape.OK)
                    with m.Else():
                        cursor.start(slot, have[0], want[0], have[1], want[1])
                        m.next = "ALLOC"
            with m.Case(DpaOp.CLOSE):
                with m.If(~found):
                    answer(StatusShape.UNKNOWN_REQUEST)
                with m.Else():
                    m.d.comb += [buf.close.eq(1), buf.at.eq(slot)]
                    cursor.start(slot, 0, have[0], 0, have[1])
                    m.next = "FREE"
            with m.Case(DpaOp.TRANSLATE):
                # the VA2PA entry is read whatever the checks say (a read changes nothing), so the read
                # does not wait for them
                m.d.comb += [va2pa.read_en.eq(1), va2pa.read_addr[0].eq(va_addr(slot, req.segment, arg >> lkt)),
                             va2pa.read_addr[1].eq(va_addr(slot, req.segment, arg >> lvt))]
                with m.If(~found):
                    answer(StatusShape.UNKNOWN_REQUEST)
                with m.Elif(checked.past | flags.seg_over):
                    answer(StatusShape.PAST_END)
                with m.Else():
                    m.d.sync += resp.payload.offset.eq(
                        Mux(req.kv, arg[:lvt] if lvt else 0, arg[:lkt] if lkt else 0))
                    m.next = "TRANSLATE"
            with m.Case(DpaOp.RUN):
                with m.If(~found):
                    answer(StatusShape.UNKNOWN_REQUEST)
                with m.Elif(flags.seg_over):
                    answer(StatusShape.PAST_END)
                with m.Elif(~loader.complete):
                    answer(StatusShape.BAD_PROGRAM)
                with m.Else():
                    m.d.comb += dec.start.eq(1)
                    m.next = "RUN"
            with m.Case(DpaOp.PROGRAM):
                with m.If(flags.arg_zero):
                    answer(StatusShape.BAD_LENGTH)
                with m.Else():
                    m.d.comb += loader.program.eq(1)
                    answer(StatusShape.OK)
            with m.Case(DpaOp.LOAD):
                m.d.comb += loader.load.eq(1)
                answer(loader.load_status)
            with m.Default():
                answer(StatusShape.BAD_OP)


    def _walks(self, d: _Datapath) -> None:
        """The states after DECIDE: ALLOC and FREE walk the cursor, TRANSLATE waits for VA2PA and
        answers, RUN waits on the decoder."""
        m, resp = d.m, self.resp
        free, va2pa, dec, cursor, answer = d.free, d.va2pa, d.dec, d.cursor, d.answer
        va_addr = va2pa.address
        with m.State("ALLOC"):
            # pop the free list's head for the cursor's entry; it is read a cycle later and registered
            # (no path from one block RAM into another), and written into VA2PA two cycles later
            with m.If(cursor.written):
                m.d.comb += [va2pa.write_addr.eq(cursor.written_addr), va2pa.write_kv.eq(cursor.written_kv),
                             va2pa.write_data.eq(cursor.popped), va2pa.write_en.eq(1)]
            cursor.follow()
            with m.If(cursor.more):
                m.d.comb += free.pop.eq(1)
                m.d.sync += cursor.pending_addr.eq(va_addr(cursor.slot, cursor.seg, cursor.vc))
                cursor.step()
            with m.Elif(~cursor.pending & ~cursor.written):
                answer(StatusShape.OK)
                m.next = "IDLE"

        with m.State("FREE"):
            # read the cursor's VA2PA entry; register it a cycle later, push it onto the free list's tail
            # two cycles later
            m.d.comb += [free.push.eq(cursor.written), free.push_chunk.eq(cursor.returned[cursor.written_kv])]
            cursor.follow()
            with m.If(cursor.more):
                m.d.comb += [va2pa.read_addr[kv].eq(va_addr(cursor.slot, cursor.seg, cursor.vc)) for kv in range(2)]
                m.d.comb += va2pa.read_en.eq(1)
                cursor.step()
            with m.Elif(~cursor.pending & ~cursor.written):
                answer(StatusShape.OK)
                m.next = "IDLE"

        with m.State("TRANSLATE"):                   # VA2PA answers; its data is registered (``returned``)
            m.next = "TRANSLATED"

        with m.State("TRANSLATED"):
            m.d.sync += [resp.valid.eq(1), resp.payload.status.eq(StatusShape.OK),
                         resp.payload.chunk.eq(cursor.returned[d.op.kv]), resp.payload.free.eq(free.count)]
            m.next = "IDLE"

        with m.State("RUN"):
            m.d.comb += [dec.enable.eq(1), va2pa.read_en.eq(dec.va_en)]
            m.d.comb += [va2pa.read_addr[kv].eq(va_addr(dec.va.slot, dec.va.seg, dec.va.vchunk[kv])) for kv in range(2)]
            with m.If(dec.done):
                answer(StatusShape.OK)
                m.next = "IDLE"


@dataclass
class _Datapath:
    """What the controller's FSM states share: the components, the cursor, the response and the chunk
    arithmetic of OPEN / APPEND."""

    m: Module
    free: FreeList
    va2pa: Va2PaTable
    buf: ConfigBuffer
    loader: ProgramLoader
    dec: Decoder
    cursor: _Cursor
    answer: object
    want: list
    flags: object
    checked: object
    op: object
    looked: object


@dataclass
class _Need:
    """The chunks an OPEN / APPEND needs, ``(wanted - held) x segments``, as registers compared in CHECK."""

    wanted: object
    """Chunks wanted, all segments."""
    held: object
    """Chunks held (APPEND), all segments."""
    budget: object
    """The free count plus ``held``."""

    @property
    def exceeds_free(self):
        return self.wanted > self.budget

    @property
    def none(self):
        return self.wanted == self.held


class _Cursor:
    """The (K/V, segment, virtual chunk) walk of an allocation or a release over ``[lo, hi)`` chunks per
    K and V, in every segment of one config slot; ``more`` falls after the last entry, ``pending`` marks
    the entry whose first memory's read completes in this cycle, ``written`` the entry whose registered
    chunk (``popped`` from the free list, ``returned`` from the K and V tables) is written into the
    other memory in this cycle (at ``written_addr`` of the ``written_kv`` table for VA2PA); each
    entry's K or V follows it."""

    def __init__(self, m: Module, c: DpaConfig, entries: int):
        R, S, V = c.max_requests, c.segments, c.max_chunks_per_segment
        self.m, self.S = m, S
        self.slot = Signal(range(R), name="cur_slot")
        self.kv, self.seg, self.vc = Signal(name="cur_kv"), Signal(range(S), name="cur_seg"), Signal(range(V + 1),
                                                                                                     name="cur_vc")
        self.lo = [Signal(range(V + 1), name=f"lo{k}") for k in range(2)]
        self.more = Signal(name="more")
        self.left = Signal(range(V + 1), name="cur_left")          # entries after this one in its segment
        self.span = [Signal(range(V + 1), name=f"span{k}") for k in range(2)]     # hi - lo - 1 per kv
        self.has_v = Signal(name="has_v")
        self.pending = Signal(name="pending")
        self.pending_addr = Signal(range(entries), name="pending_addr")          # a VA2PA address
        self.written = Signal(name="written")
        self.written_addr = Signal(range(entries), name="written_addr")
        self.pending_kv, self.written_kv = Signal(name="pending_kv"), Signal(name="written_kv")
        self.popped = Signal(index_bits(c.n_chunks), name="popped_chunk")
        self.returned = Signal(data.ArrayLayout(index_bits(c.n_chunks), 2), name="returned_chunks")

    def start(self, slot_v, lo0, hi0, lo1, hi1):
        """Walk [lo0, hi0) of K and [lo1, hi1) of V in every segment (at least one of them not empty)."""
        has_k = hi0 > lo0
        spans = [hi0 - lo0 - 1, hi1 - lo1 - 1]
        self.m.d.sync += [self.slot.eq(slot_v), self.lo[0].eq(lo0), self.lo[1].eq(lo1),
                          self.span[0].eq(spans[0]), self.span[1].eq(spans[1]), self.has_v.eq(hi1 > lo1),
                          self.kv.eq(Mux(has_k, 0, 1)), self.seg.eq(0), self.vc.eq(Mux(has_k, lo0, lo1)),
                          self.left.eq(Mux(has_k, spans[0], spans[1])), self.more.eq(1), self.pending.eq(0),
                          self.written.eq(0)]

    def follow(self):
        """Move the entries along: the one read in this cycle is pending next, the pending one written."""
        self.m.d.sync += [self.pending.eq(self.more), self.written.eq(self.pending),
                          self.written_addr.eq(self.pending_addr), self.pending_kv.eq(self.kv),
                          self.written_kv.eq(self.pending_kv)]

    def step(self):
        """Advance over [lo, hi) per kv; ``more`` falls after the last. What is left of a segment is counted
        down (``left``), so the decision is a compare of a register with zero, not a sum and a compare."""
        m, lo, span = self.m, self.lo, self.span
        with m.If(self.left != 0):
            m.d.sync += [self.vc.eq(self.vc + 1), self.left.eq(self.left - 1)]
        with m.Elif(self.seg != self.S - 1):
            m.d.sync += [self.seg.eq(self.seg + 1), self.vc.eq(Array(lo)[self.kv]), self.left.eq(Array(span)[self.kv])]
        with m.Elif((self.kv == 0) & self.has_v):
            m.d.sync += [self.kv.eq(1), self.seg.eq(0), self.vc.eq(lo[1]), self.left.eq(span[1])]
        with m.Else():
            m.d.sync += self.more.eq(0)
