"""``DpaController``: dynamic PIM access — a paged KV cache and the DPA instruction decoder in hardware.

The operation-level behaviour is :class:`~pimphony.model.dpa.DpaControllerModel`'s (its docstring
lists the operations, the program structure and every error); this module is that model in gates,
checked against it operation by operation in amaranth.sim and at the Verilog boundary in cocotb.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth import Array, Cat, Const, Module, Mux, Signal
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

    @property
    def va2pa_depth(self) -> int:
        c = self.config
        return c.max_requests * 2 * c.segments * c.max_chunks_per_segment

    @property
    def entry_bits(self) -> int:
        """An instruction buffer entry: the instruction, its row flag, GPR stride and guard."""
        fmt = self.fmt
        return fmt.instruction_bits + 1 + fmt.gpr_bits + fmt.row_bits

    def storage_bits(self) -> dict[str, int]:
        """Bits of every buffer: VA2PA table, free list, instruction buffer, config buffer."""
        c = self.config
        per_request = 1 + c.request_id_bits + self.len_bits + 2 * index_bits(c.max_chunks_per_segment + 1)
        return {"va2pa": self.va2pa_depth * self.chunk_bits, "free_list": c.n_chunks * self.chunk_bits,
                "instruction_buffer": c.program_entries * self.entry_bits,
                "config_buffer": c.max_requests * per_request}


class DpaController(wiring.Component):
    """DPA controller of one module: config buffer, VA2PA table, free list, instruction buffer, decoder.

    Ports
    -----
    mgmt : In(stream of {op, request, segment, kv, arg, word})
        Host operations (:class:`~pimphony.model.dpa.DpaOp`), one at a time and in order: an operation
        is accepted (``ready``) only when the previous one has been answered and its response taken
        or being taken. ``ready`` is low for ``chunks`` cycles after reset while the free list is
        rebuilt.
    resp : Out(stream of {status, chunk, offset, free})
        Exactly one response per operation, in order; the payload holds until ``ready``. A failed
        operation changed no state. OPEN / APPEND answer after one cycle per chunk they take, CLOSE
        after one per chunk it returns, RUN after its last instruction has left ``ins_out``; the
        others answer in one or two cycles.
    ins_out : Out(stream of {ins, sv})
        RUN's physical instructions, in the order of
        :meth:`~pimphony.model.hub.DpaDispatcher.expand`, ``sv`` high in the SV part of a block.
        One buffer entry is decoded per cycle while ``ready`` is high (an entry that the guards
        leave with no channel or no repetition is dropped in its cycle); an instruction is valid two
        cycles after its entry is fetched. ``ready`` low stalls the decoder without loss.

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
        self.widths = w = DpaWidths(config)
        self.fmt = w.fmt
        self.ins_layout = instruction_layout(self.fmt)
        self.seg_bits, self.chunk_bits, self.len_bits = w.seg_bits, w.chunk_bits, w.len_bits
        self.va2pa_depth = w.va2pa_depth
        self.entry_layout = data.StructLayout({"ins": self.ins_layout, "rowm": 1, "stride": self.fmt.gpr_bits,
                                               "guard": self.fmt.row_bits})
        assert self.entry_layout.size == w.entry_bits
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

    def storage_bits(self) -> dict[str, int]:
        """Bits of every buffer (see :meth:`DpaWidths.storage_bits`)."""
        return self.widths.storage_bits()

    def elaborate(self, platform):
        m = Module()
        c, fmt, lay, org = self.config, self.fmt, self.config.layout, self.config.org
        R, S, V, C, P = c.max_requests, c.segments, c.max_chunks_per_segment, c.n_chunks, c.program_entries
        lb = self.len_bits + 1
        req, resp, out = self.mgmt.payload, self.resp, self.ins_out
        lrpc = (lay.rows_per_chunk - 1).bit_length()
        lkt, lvt = (lay.k_tokens - 1).bit_length(), (lay.v_tokens - 1).bit_length()
        kb = c.slice_channels
        lkb = (kb - 1).bit_length()
        lburst = (org.burst_elements - 1).bit_length()
        max_ns = org.channels // kb

        # -- memories ---------------------------------------------------------------------------------
        m.submodules.free_mem = free_mem = Memory(shape=self.chunk_bits, depth=C, init=[])   # rebuilt by INIT
        m.submodules.va2pa = va2pa = Memory(shape=self.chunk_bits, depth=self.va2pa_depth, init=[])
        m.submodules.ibuf = ibuf = Memory(shape=self.entry_layout, depth=P, init=[])
        free_w, free_r = free_mem.write_port(), free_mem.read_port(domain="sync")
        va_w, va_r = va2pa.write_port(), va2pa.read_port(domain="sync")
        ib_w, ib_r = ibuf.write_port(), ibuf.read_port(domain="sync")
        for port in (free_r, va_r, ib_r):
            m.d.comb += port.en.eq(0)

        def va_addr(slot, kv, seg, vchunk):
            return ((slot * 2 + kv) * S + seg) * V + vchunk

        # -- config buffer and free-list state --------------------------------------------------------
        valid = Array(Signal(name=f"valid{i}") for i in range(R))
        ids = Array(Signal(c.request_id_bits, name=f"id{i}") for i in range(R))
        length = Array(Signal(self.len_bits, name=f"length{i}") for i in range(R))
        have = [Array(Signal(range(V + 1), name=f"{kv}chunks{i}") for i in range(R)) for kv in "kv"]
        head, tail = Signal(range(C)), Signal(range(C))
        count = Signal(range(C + 1), init=C)

        def wrap(ptr):
            return Mux(ptr == C - 1, 0, ptr + 1)

        hit = Signal(R)
        free_slots = Signal(R)
        m.d.comb += [hit[i].eq(valid[i] & (ids[i] == req.request)) for i in range(R)]
        m.d.comb += [free_slots[i].eq(~valid[i]) for i in range(R)]
        slot, new_slot = Signal(range(R)), Signal(range(R))
        for i in reversed(range(R)):
            with m.If(hit[i]):
                m.d.comb += slot.eq(i)
            with m.If(free_slots[i]):
                m.d.comb += new_slot.eq(i)
        found = hit.any()

        # -- chunk arithmetic of OPEN / APPEND --------------------------------------------------------
        arg = req.arg
        new_len = Signal(ARG_BITS + 1)
        m.d.comb += new_len.eq(Mux(req.op == DpaOp.APPEND, length[slot] + arg, arg))
        want = [Signal(ARG_BITS + 1, name="want_k"), Signal(ARG_BITS + 1, name="want_v")]
        m.d.comb += [want[0].eq((new_len + lay.k_tokens - 1) >> lkt), want[1].eq((new_len + lay.v_tokens - 1) >> lvt)]
        held = [Mux(req.op == DpaOp.APPEND, have[kv][slot], 0) for kv in range(2)]
        need = Signal(ARG_BITS + 8)
        m.d.comb += need.eq((want[0] - held[0] + want[1] - held[1]) * S)

        # -- program registers ------------------------------------------------------------------------
        loading = Signal()
        block = Signal(self.len_bits)
        entries = Signal(range(P + 1))
        marks = [Signal(range(P + 1), name=f"mark{k}") for k in range(2)]
        loops = Signal(range(3))
        words = Signal(fmt.gpr_bits + 1)               # words since the last DYN_LOOP
        loop_words = [Signal(fmt.gpr_bits, name=f"loop_words{k}") for k in range(2)]
        loop_rt = [Signal(fmt.row_bits + LOOP_ROW_UNIT.bit_length(), name=f"row_tokens{k}") for k in range(2)]
        loop_mask = [Signal(fmt.channels, name=f"loop_mask{k}") for k in range(2)]
        lns = Signal(range(max(2, max_ns.bit_length())))
        pend = Signal()
        pend_row = Signal()
        pend_stride = Signal(fmt.gpr_bits)
        pend_guard = Signal(fmt.row_bits)
        complete = Signal()
        m.d.comb += complete.eq(loading & (loops == 2) & ~pend & (words == loop_words[1]) & (entries != marks[1]))

        word = self.ins_layout(req.word)
        w_op = word.op.as_value()
        op_exists = w_op < len(Opcode)
        no_size = opcode_in(word.op, [op for op in Opcode if not ADVANCING[op]])
        bad_word = ~op_exists | (word.ch_mask == 0) | (no_size & (word.op_size != 0))
        w_kind = word.gbuf
        unit = LOOP_ROW_UNIT * lay.rows_per_chunk
        chunk_rows = Mux(w_kind == 0, lay.k_tokens // unit, lay.v_tokens // unit)
        v_n = popcount(word.ch_mask)
        v_ns = Signal(range(org.channels + 1))
        m.d.comb += v_ns.eq(v_n >> lkb)
        bad_loop = ((w_kind != loops) | (w_kind > 1) | pend | (word.row != chunk_rows)
                    | ((loops == 1) & ((words != loop_words[0]) | (entries == marks[0])))
                    | ((w_kind == 1) & ((v_n & (kb - 1) != 0) | ((v_ns & (v_ns - 1)) != 0))))
        bad_modi = (loops == 0) | (word.gbuf > max(Modi))

        # -- response register ------------------------------------------------------------------------
        with m.If(resp.valid & resp.ready):
            m.d.sync += resp.valid.eq(0)

        def answer(status, chunk=0, offset=0, free=None):
            m.d.sync += [resp.valid.eq(1), resp.payload.status.eq(status), resp.payload.chunk.eq(chunk),
                         resp.payload.offset.eq(offset), resp.payload.free.eq(count if free is None else free)]

        # -- allocation / release cursor --------------------------------------------------------------
        cur_slot = Signal(range(R))
        cur_kv, cur_seg, cur_vc = Signal(), Signal(range(S)), Signal(range(V + 1))
        lo = [Signal(range(V + 1), name=f"lo{k}") for k in range(2)]
        hi = [Signal(range(V + 1), name=f"hi{k}") for k in range(2)]
        more = Signal()
        pending, pending_addr = Signal(), Signal(range(self.va2pa_depth))

        def step_cursor():
            """Advance (kv, segment, chunk) over [lo, hi) per kv; ``more`` falls after the last."""
            lo_v, hi_v = Array(lo), Array(hi)
            with m.If(cur_vc + 1 < hi_v[cur_kv]):
                m.d.sync += cur_vc.eq(cur_vc + 1)
            with m.Elif(cur_seg != S - 1):
                m.d.sync += [cur_seg.eq(cur_seg + 1), cur_vc.eq(lo_v[cur_kv])]
            with m.Elif((cur_kv == 0) & (hi[1] > lo[1])):
                m.d.sync += [cur_kv.eq(1), cur_seg.eq(0), cur_vc.eq(lo[1])]
            with m.Else():
                m.d.sync += more.eq(0)

        def start_cursor(slot_v, lo0, hi0, lo1, hi1):
            m.d.sync += [cur_slot.eq(slot_v), lo[0].eq(lo0), hi[0].eq(hi0), lo[1].eq(lo1), hi[1].eq(hi1),
                         cur_kv.eq(Mux(hi0 > lo0, 0, 1)), cur_seg.eq(0), cur_vc.eq(Mux(hi0 > lo0, lo0, lo1)),
                         more.eq(1), pending.eq(0)]

        # -- decoder state ----------------------------------------------------------------------------
        f_run, f_phase, pc, r = Signal(), Signal(Phase), Signal(range(P)), Signal(fmt.gpr_bits)
        t0, t1, run_len = Signal(lb), Signal(lb), Signal(self.len_bits)
        rs = [Signal(lb, name=f"row_start{k}") for k in range(2)]
        vr = [Signal(self.len_bits, name=f"vrow{k}") for k in range(2)]
        kacc, vb = Signal(lb + 4), Signal(lb)
        run_slot, run_seg = Signal(range(R)), Signal(range(S))
        b_valid, b_phase, b_r, b_t1 = Signal(), Signal(Phase), Signal(fmt.gpr_bits), Signal(lb)
        b_v, b_kacc, b_vb = Signal(self.len_bits), Signal(lb + 4), Signal(lb)
        advance = ~out.valid | out.ready
        bpr = org.bursts_per_row
        lanes_k = popcount(loop_mask[0]) * org.banks
        kstep = lanes_k * (bpr // kb)
        sec_end = Mux(f_phase == Phase.PROLOGUE, marks[0], Mux(f_phase == Phase.QK, marks[1], entries))
        f_kind = f_phase == Phase.SV

        # -- decode: the second pipeline stage (combinational) --------------------------------------
        e = ib_r.data
        ins = e.ins
        size = Signal(fmt.op_size_bits + 1)
        mask = Signal(fmt.channels)
        g = Signal(fmt.row_bits)
        m.d.comb += g.eq(Mux(e.guard != 0, e.guard - 1, 0))
        ranks = []
        for kind in range(2):
            rk, total = [], Const(0, 1)
            for ch in range(fmt.channels):
                rk.append(total)
                total = total + loop_mask[kind][ch]
            ranks.append(rk)
        # K: channel of rank p keeps the instruction while its first lane's token is below t1
        first_k = b_kacc + g * (popcount(loop_mask[0]) * org.banks)
        k_mask = Cat(loop_mask[0][ch] & (first_k + ranks[0][ch] * org.banks < b_t1) for ch in range(fmt.channels))
        # V: slice s (ranks s*kb .. s*kb+kb-1) holds local bursts below ceil(ceil(t1/16) - s, ns)
        first_v = b_vb + g
        bursts = (b_t1 + (1 << lburst) - 1) >> lburst
        ns = Const(1, max_ns.bit_length() + 1) << lns
        v_mask = Const(0, fmt.channels)
        v_size = Signal(fmt.op_size_bits + 1)
        m.d.comb += v_size.eq(ins.op_size + 1)
        for s in range(max_ns):
            members = Cat(loop_mask[1][ch] & ((ranks[1][ch] >> lkb) == s) for ch in range(fmt.channels))
            end = Mux(bursts > s, (bursts - s + ns - 1) >> lns, 0)
            exists = s < ns
            v_mask = v_mask | Mux(exists & (end > first_v), members, 0)
            with m.If(exists & (e.guard != 0) & ((ins.ch_mask & members) != 0)):
                m.d.comb += v_size.eq(Mux(end <= first_v, 0, Mux(end - first_v < ins.op_size + 1,
                                                                   end - first_v, ins.op_size + 1)))
        with m.Switch(b_phase):
            with m.Case(Phase.PROLOGUE):
                m.d.comb += [mask.eq(ins.ch_mask), size.eq(ins.op_size + 1)]
            with m.Case(Phase.QK):
                m.d.comb += [mask.eq(k_mask & ins.ch_mask), size.eq(ins.op_size + 1)]
            with m.Default():
                m.d.comb += [mask.eq(v_mask & ins.ch_mask), size.eq(v_size)]
        loop = b_phase != Phase.PROLOGUE
        row = Cat(b_v[:lrpc], va_r.data) if lrpc else va_r.data
        with m.If(advance):
            m.d.sync += out.valid.eq(b_valid & (mask != 0) & (size != 0))
            m.d.sync += [out.payload.ins.eq(ins), out.payload.ins.ch_mask.eq(mask),
                         out.payload.ins.op_size.eq(size - 1),
                         out.payload.ins.row.eq(Mux(loop & e.rowm, row, ins.row)),
                         out.payload.ins.gpr.eq(Mux(loop, ins.gpr + b_r * e.stride, ins.gpr)),
                         out.payload.sv.eq(b_phase == Phase.SV)]

        init_i = Signal(range(C))

        with m.FSM(init="INIT"):
            with m.State("INIT"):
                m.d.comb += [free_w.addr.eq(init_i), free_w.data.eq(init_i), free_w.en.eq(1)]
                m.d.sync += init_i.eq(init_i + 1)
                with m.If(init_i == C - 1):
                    m.d.sync += [head.eq(0), tail.eq(0), count.eq(C)]
                    m.next = "IDLE"

            with m.State("IDLE"):
                m.d.comb += self.mgmt.ready.eq(~resp.valid | resp.ready)
                with m.If(self.mgmt.valid & self.mgmt.ready), m.Switch(req.op):
                    with m.Case(DpaOp.OPEN):
                        with m.If(found):
                            answer(StatusShape.DUPLICATE_REQUEST)
                        with m.Elif(arg == 0):
                            answer(StatusShape.BAD_LENGTH)
                        with m.Elif(arg > c.max_tokens):
                            answer(StatusShape.PAST_END)
                        with m.Elif(~free_slots.any()):
                            answer(StatusShape.TABLE_FULL)
                        with m.Elif(need > count):
                            answer(StatusShape.OUT_OF_CHUNKS)
                        with m.Else():
                            m.d.sync += [valid[new_slot].eq(1), ids[new_slot].eq(req.request),
                                         length[new_slot].eq(arg), have[0][new_slot].eq(want[0]),
                                         have[1][new_slot].eq(want[1])]
                            start_cursor(new_slot, 0, want[0], 0, want[1])
                            m.next = "ALLOC"
                    with m.Case(DpaOp.APPEND):
                        with m.If(~found):
                            answer(StatusShape.UNKNOWN_REQUEST)
                        with m.Elif(arg == 0):
                            answer(StatusShape.BAD_LENGTH)
                        with m.Elif(new_len > c.max_tokens):
                            answer(StatusShape.PAST_END)
                        with m.Elif(need > count):
                            answer(StatusShape.OUT_OF_CHUNKS)
                        with m.Else():
                            m.d.sync += [length[slot].eq(new_len), have[0][slot].eq(want[0]),
                                         have[1][slot].eq(want[1])]
                            with m.If(need == 0):
                                answer(StatusShape.OK)
                            with m.Else():
                                start_cursor(slot, have[0][slot], want[0], have[1][slot], want[1])
                                m.next = "ALLOC"
                    with m.Case(DpaOp.CLOSE):
                        with m.If(~found):
                            answer(StatusShape.UNKNOWN_REQUEST)
                        with m.Else():
                            m.d.sync += valid[slot].eq(0)
                            start_cursor(slot, 0, have[0][slot], 0, have[1][slot])
                            m.next = "FREE"
                    with m.Case(DpaOp.TRANSLATE):
                        with m.If(~found):
                            answer(StatusShape.UNKNOWN_REQUEST)
                        with m.Elif((arg >= length[slot]) | (req.segment >= S)):
                            answer(StatusShape.PAST_END)
                        with m.Else():
                            m.d.comb += [va_r.en.eq(1), va_r.addr.eq(va_addr(
                                slot, req.kv, req.segment, Mux(req.kv, arg >> lvt, arg >> lkt)))]
                            m.d.sync += resp.payload.offset.eq(
                                Mux(req.kv, arg[:lvt] if lvt else 0, arg[:lkt] if lkt else 0))
                            m.next = "TRANSLATE"
                    with m.Case(DpaOp.RUN):
                        with m.If(~found):
                            answer(StatusShape.UNKNOWN_REQUEST)
                        with m.Elif(req.segment >= S):
                            answer(StatusShape.PAST_END)
                        with m.Elif(~complete):
                            answer(StatusShape.BAD_PROGRAM)
                        with m.Else():
                            m.d.sync += [run_slot.eq(slot), run_seg.eq(req.segment), run_len.eq(length[slot]),
                                         f_run.eq(1), pc.eq(0), r.eq(0), t0.eq(0),
                                         t1.eq(Mux(length[slot] < block, length[slot], block)),
                                         f_phase.eq(Mux(marks[0] == 0, Phase.QK, Phase.PROLOGUE)),
                                         kacc.eq(0), vb.eq(0), b_valid.eq(0)]
                            m.d.sync += [s.eq(0) for s in (*rs, *vr)]
                            m.next = "RUN"
                    with m.Case(DpaOp.PROGRAM):
                        with m.If(arg == 0):
                            answer(StatusShape.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [loading.eq(1), entries.eq(0), loops.eq(0), pend.eq(0), words.eq(0),
                                         block.eq(Mux(arg > c.max_tokens, c.max_tokens, arg))]
                            answer(StatusShape.OK)
                    with m.Case(DpaOp.LOAD):
                        with m.If(~loading | bad_word):
                            answer(StatusShape.BAD_PROGRAM)
                        with m.Elif(w_op == Opcode.DYN_LOOP):
                            with m.If(bad_loop):
                                answer(StatusShape.BAD_PROGRAM)
                            with m.Else():
                                m.d.sync += [loops.eq(loops + 1), words.eq(0),
                                             Array(marks)[w_kind].eq(entries),
                                             Array(loop_words)[w_kind].eq(word.gpr),
                                             Array(loop_rt)[w_kind].eq(word.row * LOOP_ROW_UNIT),
                                             Array(loop_mask)[w_kind].eq(word.ch_mask)]
                                with m.If(w_kind == 1):
                                    for k in range(max_ns.bit_length()):
                                        with m.If(v_ns == 1 << k):
                                            m.d.sync += lns.eq(k)
                                answer(StatusShape.OK)
                        with m.Elif(w_op == Opcode.DYN_MODI):
                            with m.If(bad_modi):
                                answer(StatusShape.BAD_PROGRAM)
                            with m.Else():
                                m.d.sync += [pend.eq(1), words.eq(words + 1)]
                                with m.Switch(word.gbuf):
                                    with m.Case(Modi.ROW):
                                        m.d.sync += pend_row.eq(1)
                                    with m.Case(Modi.GPR):
                                        m.d.sync += pend_stride.eq(pend_stride + word.row)
                                    with m.Case(Modi.GUARD):
                                        m.d.sync += pend_guard.eq(word.row)
                                answer(StatusShape.OK)
                        with m.Elif(entries == P):
                            answer(StatusShape.PROGRAM_FULL)
                        with m.Else():
                            m.d.comb += [ib_w.addr.eq(entries), ib_w.en.eq(1), ib_w.data.ins.eq(word),
                                         ib_w.data.rowm.eq(pend_row), ib_w.data.stride.eq(pend_stride),
                                         ib_w.data.guard.eq(pend_guard)]
                            m.d.sync += [entries.eq(entries + 1), words.eq(words + 1), pend.eq(0),
                                         pend_row.eq(0), pend_stride.eq(0), pend_guard.eq(0)]
                            answer(StatusShape.OK)
                    with m.Default():
                        answer(StatusShape.BAD_OP)

            with m.State("ALLOC"):
                # pop the free list's head for the cursor's entry; write it into VA2PA a cycle later
                with m.If(pending):
                    m.d.comb += [va_w.addr.eq(pending_addr), va_w.data.eq(free_r.data), va_w.en.eq(1)]
                m.d.sync += pending.eq(more)
                with m.If(more):
                    m.d.comb += [free_r.addr.eq(head), free_r.en.eq(1)]
                    m.d.sync += [head.eq(wrap(head)), count.eq(count - 1),
                                 pending_addr.eq(va_addr(cur_slot, cur_kv, cur_seg, cur_vc))]
                    step_cursor()
                with m.Elif(~pending):
                    answer(StatusShape.OK)
                    m.next = "IDLE"

            with m.State("FREE"):
                # read the cursor's VA2PA entry; push it onto the free list's tail a cycle later
                with m.If(pending):
                    m.d.comb += [free_w.addr.eq(tail), free_w.data.eq(va_r.data), free_w.en.eq(1)]
                m.d.sync += pending.eq(more)
                m.d.sync += [tail.eq(Mux(pending, wrap(tail), tail)),
                             count.eq(count + pending)]
                with m.If(more):
                    m.d.comb += [va_r.addr.eq(va_addr(cur_slot, cur_kv, cur_seg, cur_vc)), va_r.en.eq(1)]
                    step_cursor()
                with m.Elif(~pending):
                    answer(StatusShape.OK)
                    m.next = "IDLE"

            with m.State("TRANSLATE"):
                m.d.sync += [resp.valid.eq(1), resp.payload.status.eq(StatusShape.OK),
                             resp.payload.chunk.eq(va_r.data), resp.payload.free.eq(count)]
                m.next = "IDLE"

            with m.State("RUN"):
                # -- fetch: the first pipeline stage ----------------------------------------------
                vrow = Mux(f_kind, vr[1], vr[0])
                m.d.comb += [ib_r.addr.eq(pc), ib_r.en.eq(advance),
                             va_r.addr.eq(va_addr(run_slot, f_kind, run_seg, vrow >> lrpc)),
                             va_r.en.eq(advance)]
                with m.If(advance):
                    m.d.sync += [b_valid.eq(f_run), b_phase.eq(f_phase), b_r.eq(r), b_t1.eq(t1), b_v.eq(vrow),
                                 b_kacc.eq(kacc), b_vb.eq(vb)]
                last = pc + 1 == sec_end
                t0n = t0 + block

                def next_row(kind):
                    m.d.sync += [rs[kind].eq(rs[kind] + loop_rt[kind]), vr[kind].eq(vr[kind] + 1)]
                    m.d.sync += (kacc.eq(kacc + kstep) if kind == 0 else vb.eq(vb + bpr))

                with m.If(advance & f_run):
                    with m.If(~last):
                        m.d.sync += pc.eq(pc + 1)
                    with m.Elif(f_phase == Phase.PROLOGUE):
                        m.d.sync += [f_phase.eq(Phase.QK), pc.eq(marks[0]), r.eq(0)]
                    with m.Elif(f_phase == Phase.QK):
                        with m.If(rs[0] + loop_rt[0] < t1):
                            next_row(0)
                            m.d.sync += [r.eq(r + 1), pc.eq(marks[0])]
                        with m.Else():
                            m.d.sync += [f_phase.eq(Phase.SV), pc.eq(marks[1]), r.eq(0)]
                    with m.Else():
                        with m.If(rs[1] + loop_rt[1] < t1):
                            next_row(1)
                            m.d.sync += [r.eq(r + 1), pc.eq(marks[1])]
                        with m.Elif(t0n < run_len):
                            m.d.sync += [t0.eq(t0n), t1.eq(Mux(t0n + block < run_len, t0n + block, run_len)), pc.eq(0),
                                         r.eq(0), f_phase.eq(Mux(marks[0] == 0, Phase.QK, Phase.PROLOGUE))]
                            for kind in range(2):
                                with m.If(rs[kind] + loop_rt[kind] <= t0n):
                                    next_row(kind)
                        with m.Else():
                            m.d.sync += f_run.eq(0)
                with m.If(~f_run & ~b_valid & (~out.valid | out.ready)):     # the last one leaves now
                    answer(StatusShape.OK)
                    m.next = "IDLE"
        return m
