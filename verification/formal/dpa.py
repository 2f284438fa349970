"""Property harness of the DPA controller (:class:`pimphony.rtl.dpa.DpaController`).

The harness drives the shipped block from free inputs (any operation, any back-pressure on both
output streams, any reset) and assumes only the stream protocol on ``mgmt``: an operation offered and
not taken stays offered, unchanged. Its monitor is a reference of the operations' meaning, kept from
the ports and keyed by request id (the block keys by config-buffer slot):

* each request's **length** (what OPEN and APPEND admitted) and whether it is open,
* a **free list** of chunk numbers in order (first allocated first, returned at the tail), and the
  chunk it handed to every virtual chunk,
* the **program loader**'s state (loading, loops seen, words since the last DYN_LOOP, the
  DYN_LOOPs' word counts, entries, a pending DYN_MODI),
* the chunk every TRANSLATE answered, per virtual chunk,

and states the block's promises over them, in groups:

``status``
    every operation gets the status the operation's rules give (the order of the checks included),
    with a zero chunk and offset unless it is a successful TRANSLATE. The reference changes only on
    success, so a failing operation that changed the block's state shows up as a later wrong answer;
``conservation``
    every chunk is free or mapped, exactly once: the free count each response reports is the pool
    minus what the open requests hold, a translated chunk lies in the pool, two live virtual chunks
    never translate to the same physical chunk, and a virtual chunk keeps its chunk;
``translate``
    TRANSLATE returns the chunk that OPEN or APPEND allocated to that virtual chunk, from the head of
    the free list, in (kv, segment, chunk) order, CLOSE returning them at its tail in the same order;
``protocol``
    one operation at a time, one response each; ``mgmt.ready`` low while the free list is rebuilt
    after reset (one cycle per chunk) and high whenever no operation is outstanding after that; both
    output streams hold their payload while valid and not ready;
``run``
    instructions leave only while a RUN is outstanding, and before its response. What a RUN emits is
    checked against the golden expansion on the traces of the ``run`` Cover statements
    (:meth:`DpaHarness.check_traces`).

Cover statements: every status code is answered, an allocation wraps the free list, and RUNs that
emit K and V instructions, span two blocks and stall under back-pressure.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from amaranth import Array, Const, Elaboratable, Module, Mux, ResetSignal, Signal

from pimphony.model.dpa import ARG_BITS, DpaConfig, DpaControllerModel, DpaOp, DpaOperation
from pimphony.model.isa import ADVANCING, LOOP_ROW_UNIT, Modi, Opcode
from pimphony.model.kvcache import Status
from pimphony.rtl.dpa import DpaController
from pimphony.rtl.layouts import popcount

from .props import Properties
from .sby import read_trace

GROUPS = ("status", "conservation", "translate", "protocol", "run")
_PORTS = ("rst", "mgmt__valid", "mgmt__ready", "mgmt__payload", "resp__valid", "resp__ready", "resp__payload",
          "ins_out__valid", "ins_out__ready", "ins_out__payload")
"""The harness's ports in a trace (the replay reads them)."""


class DpaHarness(Elaboratable):
    """The DPA controller under its monitor. ``groups`` selects the property groups emitted (all by
    default); ``covers_only`` emits the Cover statements of every group and no Assert."""

    def __init__(self, config: DpaConfig, groups=None, covers_only: bool = False):
        self.config = config
        self.groups = None if groups is None else frozenset(groups)
        self.covers_only = covers_only
        self.dut = DpaController(config)
        self.properties: Properties | None = None

    def inputs(self) -> list:
        """The free inputs: any operation stream, any back-pressure on the response and instruction streams."""
        dut = self.dut
        return [dut.mgmt.valid, dut.mgmt.payload.as_value(), dut.resp.ready, dut.ins_out.ready]

    def check_traces(self, traces: list[Path]) -> list[str]:
        """Replay every operation of every trace on the golden model (:class:`DpaControllerModel`) and list
        where the block's responses or instructions differ from the model's."""
        problems = []
        for trace in traces:
            problems += [f"{trace.name} {p}" for p in self.replay(read_trace(trace, set(_PORTS)))]
        return problems

    def replay(self, steps: list[dict[str, int | None]]) -> list[str]:
        """Disagreements between the port values of ``steps`` and the golden model fed the same operations."""
        dut = self.dut
        model = DpaControllerModel(self.config)
        fmt = model.fmt
        ins_bits = fmt.instruction_bits
        responses: deque = deque()
        instructions: deque = deque()
        problems = []
        for k, v in enumerate(steps):
            if None in v.values():
                problems.append(f"step {k}: undefined port value")
                break
            if v["rst"]:
                model.reset()
                responses.clear()
                instructions.clear()
                continue
            if v["ins_out__valid"] and v["ins_out__ready"]:
                got = (v["ins_out__payload"] & ((1 << ins_bits) - 1), v["ins_out__payload"] >> ins_bits)
                want = instructions.popleft() if instructions else None
                if got != want:
                    problems.append(f"step {k}: instruction {got[0]:#x} (sv {got[1]}), golden "
                                    + ("none" if want is None else f"{want[0]:#x} (sv {want[1]})"))
            if v["resp__valid"] and v["resp__ready"]:
                r = dut.resp_layout.from_bits(v["resp__payload"])
                got = (Status(r.status.value), int(r.chunk), int(r.offset), int(r.free))
                want = responses.popleft() if responses else None
                if got != want:
                    problems.append(f"step {k}: response {got}, golden {want}")
                if instructions:
                    problems.append(f"step {k}: answered with {len(instructions)} golden instructions not emitted")
                    instructions.clear()
            if v["mgmt__valid"] and v["mgmt__ready"]:
                q = dut.req_layout.from_bits(v["mgmt__payload"])
                operation = DpaOperation(int(q.op), int(q.request), int(q.segment), int(q.kv), int(q.arg),
                                         int(q.word))
                answer, emitted = model.step(operation)
                responses.append((answer.status, answer.chunk, answer.offset, answer.free))
                instructions.extend((fmt.encode_instruction(ins), int(sv)) for ins, sv in emitted)
        return problems

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        c, lay, fmt = self.config, self.config.layout, self.dut.fmt
        R, S, V, C, P = c.max_requests, c.segments, c.max_chunks_per_segment, c.n_chunks, c.program_entries
        ids = 1 << c.request_id_bits
        kt, vt = lay.k_tokens, lay.v_tokens
        props = self.properties = Properties(m, self.groups, asserts=not self.covers_only)
        rst = ResetSignal()

        # -- environment: the stream protocol on mgmt ------------------------------------------------------
        mgmt, resp, out = dut.mgmt, dut.resp, dut.ins_out
        offered = Signal()
        offered_req = Signal.like(mgmt.payload)
        m.d.sync += [offered.eq(mgmt.valid & ~mgmt.ready), offered_req.eq(mgmt.payload)]
        props.assume(~offered | (mgmt.valid & (mgmt.payload.as_value() == offered_req.as_value())))

        req = mgmt.payload
        accept = mgmt.valid & mgmt.ready
        taken = resp.valid & resp.ready
        op, rid, seg, kv, arg = req.op, req.request, req.segment, req.kv, req.arg

        # -- the reference's requests ----------------------------------------------------------------------
        live = Array(Signal(name=f"ref_live{i}") for i in range(ids))
        length = Array(Signal(range(c.max_tokens + 1), name=f"ref_length{i}") for i in range(ids))

        def chunks_of(tokens, per):
            return (tokens + per - 1) // per

        held_total = sum(Mux(live[i], (chunks_of(length[i], kt) + chunks_of(length[i], vt)) * S, 0)
                         for i in range(ids))
        ref_free = Signal(range(C + 1))
        m.d.comb += ref_free.eq(C - held_total)
        n_live = sum((live[i] for i in range(ids)), Const(0, 1))
        is_live, cur_len = live[rid], length[rid]
        appending = op == DpaOp.APPEND
        new_len = Signal(ARG_BITS + 1)
        m.d.comb += new_len.eq(Mux(appending, cur_len + arg, arg))
        fits = Signal(range(c.max_tokens + 1))          # new_len where it fits the table (else PAST_END first)
        m.d.comb += fits.eq(new_len)
        want = [Signal(range(V + 1), name=f"ref_want_{x}") for x in "kv"]
        have = [Signal(range(V + 1), name=f"ref_have_{x}") for x in "kv"]
        m.d.comb += [want[0].eq(chunks_of(fits, kt)), want[1].eq(chunks_of(fits, vt)),
                     have[0].eq(Mux(appending, chunks_of(cur_len, kt), 0)),
                     have[1].eq(Mux(appending, chunks_of(cur_len, vt), 0))]
        need = Signal(range(2 * V * S + 1))
        m.d.comb += need.eq((want[0] - have[0] + want[1] - have[1]) * S)
        closing = [Signal(range(V + 1), name=f"ref_holds_{x}") for x in "kv"]
        m.d.comb += [closing[0].eq(chunks_of(cur_len, kt)), closing[1].eq(chunks_of(cur_len, vt))]

        # -- the reference's program loader ----------------------------------------------------------------
        loading, pend = Signal(), Signal()
        loops = Signal(range(3))
        entries = Signal(range(P + 1))
        words = Signal(16)
        marks = Array(Signal(range(P + 1), name=f"ref_mark{k}") for k in range(2))
        loop_words = Array(Signal(fmt.gpr_bits, name=f"ref_loop_words{k}") for k in range(2))
        block = Signal(ARG_BITS)
        word = dut.ins_layout(req.word)
        w_op = word.op.as_value()
        advancing = Array(Const(bool(ADVANCING[o]), 1) for o in Opcode)
        malformed = ((w_op >= len(Opcode)) | (word.ch_mask == 0)
                     | ((w_op < len(Opcode)) & ~advancing[w_op] & (word.op_size != 0)))
        kind = word.gbuf
        rows_ok = word.row * (LOOP_ROW_UNIT * lay.rows_per_chunk) == Mux(kind == 0, kt, vt)
        n_ch = popcount(word.ch_mask)
        slices = Signal(range(fmt.channels + 1))
        m.d.comb += slices.eq(n_ch // c.slice_channels)
        bad_loop = ((kind != loops) | (loops == 2) | pend | ~rows_ok
                    | ((loops == 1) & ((words != loop_words[0]) | (entries == marks[0])))
                    | ((kind == 1) & ((n_ch % c.slice_channels != 0) | ((slices & (slices - 1)) != 0))))
        complete = loading & (loops == 2) & ~pend & (words == loop_words[1]) & (entries != marks[1])

        # -- the expected response -------------------------------------------------------------------------
        status = Signal(range(max(Status) + 1))

        def cases(*checks):
            """``status`` is the first failing check's, else OK."""
            with m.If(checks[0][0]):
                m.d.comb += status.eq(checks[0][1])
            for cond, st in checks[1:]:
                with m.Elif(cond):
                    m.d.comb += status.eq(st)
            with m.Else():
                m.d.comb += status.eq(Status.OK)

        with m.Switch(op):
            with m.Case(DpaOp.OPEN):
                cases((is_live, Status.DUPLICATE_REQUEST), (arg == 0, Status.BAD_LENGTH),
                      (arg > c.max_tokens, Status.PAST_END), (n_live >= R, Status.TABLE_FULL),
                      (need > ref_free, Status.OUT_OF_CHUNKS))
            with m.Case(DpaOp.APPEND):
                cases((~is_live, Status.UNKNOWN_REQUEST), (arg == 0, Status.BAD_LENGTH),
                      (new_len > c.max_tokens, Status.PAST_END), (need > ref_free, Status.OUT_OF_CHUNKS))
            with m.Case(DpaOp.CLOSE):
                cases((~is_live, Status.UNKNOWN_REQUEST))
            with m.Case(DpaOp.TRANSLATE):
                cases((~is_live, Status.UNKNOWN_REQUEST), ((arg >= cur_len) | (seg >= S), Status.PAST_END))
            with m.Case(DpaOp.RUN):
                cases((~is_live, Status.UNKNOWN_REQUEST), (seg >= S, Status.PAST_END), (~complete, Status.BAD_PROGRAM))
            with m.Case(DpaOp.PROGRAM):
                cases((arg == 0, Status.BAD_LENGTH))
            with m.Case(DpaOp.LOAD):
                with m.If(malformed | ~loading):
                    m.d.comb += status.eq(Status.BAD_PROGRAM)
                with m.Elif(w_op == Opcode.DYN_LOOP):
                    m.d.comb += status.eq(Mux(bad_loop, Status.BAD_PROGRAM, Status.OK))
                with m.Elif(w_op == Opcode.DYN_MODI):
                    m.d.comb += status.eq(Mux((loops == 0) | (word.gbuf > max(Modi)), Status.BAD_PROGRAM, Status.OK))
                with m.Else():
                    m.d.comb += status.eq(Mux(entries == P, Status.PROGRAM_FULL, Status.OK))
            with m.Default():
                m.d.comb += status.eq(Status.BAD_OP)
        ok = accept & (status == Status.OK)

        # -- the reference's free list and VA2PA map -------------------------------------------------------
        def entry(i, k, s, v):
            """The VA2PA entry of request id ``i``'s virtual chunk ``v`` of segment ``s``, K (0) or V (1)."""
            return ((i * 2 + k) * S + s) * V + v

        n_va = ids * 2 * S * V
        va_chunk = Array(Signal(range(C), name=f"ref_va{e}") for e in range(n_va))
        fifo = Array(Signal(range(C), init=i, name=f"ref_free{i}") for i in range(C))
        f_head, f_tail = Signal(range(C)), Signal(range(C))

        def wrap(x):
            return Mux(x >= C, x - C, x)

        token = Signal(range(c.max_tokens))              # arg where TRANSLATE succeeds (below the length)
        m.d.comb += token.eq(arg)
        vc = Mux(kv, token // vt, token // kt)
        va = Signal(range(n_va))
        m.d.comb += va.eq(entry(rid, kv, seg, vc))
        with m.If(ok & ((op == DpaOp.OPEN) | appending)):
            m.d.sync += f_head.eq(wrap(f_head + need))
            for k in range(2):
                base = 0 if k == 0 else (want[0] - have[0]) * S
                for s in range(S):
                    for v in range(V):
                        rank = base + s * (want[k] - have[k]) + (v - have[k])
                        with m.If((v >= have[k]) & (v < want[k])):
                            m.d.sync += va_chunk[entry(rid, k, s, v)].eq(fifo[wrap(f_head + rank)])
        with m.If(ok & (op == DpaOp.CLOSE)):
            m.d.sync += f_tail.eq(wrap(f_tail + (closing[0] + closing[1]) * S))
            for k in range(2):
                base = 0 if k == 0 else closing[0] * S
                for s in range(S):
                    for v in range(V):
                        with m.If(v < closing[k]):
                            m.d.sync += fifo[wrap(f_tail + base + s * closing[k] + v)].eq(
                                va_chunk[entry(rid, k, s, v)])

        # -- reference updates -----------------------------------------------------------------------------
        with m.If(ok), m.Switch(op):
            with m.Case(DpaOp.OPEN):
                m.d.sync += [live[rid].eq(1), length[rid].eq(arg)]
            with m.Case(DpaOp.APPEND):
                m.d.sync += length[rid].eq(new_len)
            with m.Case(DpaOp.CLOSE):
                m.d.sync += live[rid].eq(0)
            with m.Case(DpaOp.PROGRAM):
                m.d.sync += [loading.eq(1), loops.eq(0), pend.eq(0), words.eq(0), entries.eq(0), block.eq(arg)]
            with m.Case(DpaOp.LOAD):
                with m.If(w_op == Opcode.DYN_LOOP):
                    m.d.sync += [marks[kind].eq(entries), loop_words[kind].eq(word.gpr), loops.eq(loops + 1),
                                 words.eq(0)]
                with m.Elif(w_op == Opcode.DYN_MODI):
                    m.d.sync += [pend.eq(1), words.eq(words + 1)]
                with m.Else():
                    m.d.sync += [entries.eq(entries + 1), words.eq(words + 1), pend.eq(0)]

        # -- the operation in flight and its expected answer -----------------------------------------------
        outstanding = Signal()
        q_op = Signal.like(op)
        q_status = Signal.like(status)
        q_translate = Signal()
        q_chunk, q_offset = Signal(range(C)), Signal.like(resp.payload.offset)
        q_va = Signal.like(va)
        q_len, q_block = Signal.like(length[0]), Signal.like(block)
        offset = Mux(kv, token % vt, token % kt)
        with m.If(accept):
            m.d.sync += [outstanding.eq(1), q_op.eq(op), q_status.eq(status), q_va.eq(va), q_len.eq(cur_len),
                         q_block.eq(block), q_translate.eq((op == DpaOp.TRANSLATE) & (status == Status.OK)),
                         q_chunk.eq(va_chunk[va]), q_offset.eq(Mux(op == DpaOp.TRANSLATE, offset, 0))]
        with m.Elif(taken):
            m.d.sync += outstanding.eq(0)
        got = resp.payload
        props.implies("status", "status-as-specified", taken, got.status.as_value() == q_status)
        props.implies("status", "chunk-and-offset-only-from-TRANSLATE", taken & ~q_translate,
                      (got.chunk == 0) & (got.offset == 0))
        props.implies("status", "offset-of-the-token", taken & q_translate, got.offset == q_offset)

        # -- conservation: what the translations show --------------------------------------------------------
        seen = Array(Signal(name=f"seen{e}") for e in range(n_va))
        seen_chunk = Array(Signal(range(C), name=f"seen_chunk{e}") for e in range(n_va))
        good = taken & q_translate
        with m.If(good):
            m.d.sync += [seen[q_va].eq(1), seen_chunk[q_va].eq(got.chunk)]
        with m.If(ok & (op == DpaOp.CLOSE)):
            m.d.sync += [seen[entry(rid, k, s, v)].eq(0) for k in range(2) for s in range(S) for v in range(V)]
        props.implies("conservation", "free-count-is-pool-minus-held", taken, got.free == ref_free)
        props.implies("conservation", "translated-chunk-in-pool", good, got.chunk < C)
        props.implies("conservation", "a-virtual-chunk-keeps-its-chunk", good & seen[q_va],
                      got.chunk == seen_chunk[q_va])
        shared = Const(0, 1)
        for e in range(n_va):
            shared = shared | ((q_va != e) & seen[e] & (seen_chunk[e] == got.chunk))
        props.implies("conservation", "no-chunk-mapped-twice", good, ~shared)
        props.implies("translate", "TRANSLATE-returns-the-allocated-chunk", good, got.chunk == q_chunk)

        # -- protocol --------------------------------------------------------------------------------------
        since_reset = Signal(range(C + 1))
        with m.If(since_reset != C):
            m.d.sync += since_reset.eq(since_reset + 1)
        props.implies("protocol", "response-only-to-an-operation", resp.valid, outstanding)
        props.implies("protocol", "one-operation-at-a-time", mgmt.ready, ~outstanding | taken)
        props.implies("protocol", "not-ready-while-the-free-list-is-rebuilt", since_reset < C, ~mgmt.ready)
        props.implies("protocol", "ready-when-nothing-is-outstanding", (since_reset == C) & ~outstanding, mgmt.ready)
        for name, stream in (("resp", resp), ("ins_out", out)):
            held = Signal(name=f"{name}_held")
            held_payload = Signal.like(stream.payload, name=f"{name}_held_payload")
            m.d.sync += [held.eq(stream.valid & ~stream.ready), held_payload.eq(stream.payload)]
            props.implies("protocol", f"{name}-valid-holds-until-ready", held & ~rst, stream.valid)
            props.implies("protocol", f"{name}-payload-stable-while-held", held & ~rst,
                          stream.payload.as_value() == held_payload.as_value())

        # -- run -------------------------------------------------------------------------------------------
        running = outstanding & (q_op == DpaOp.RUN)
        props.implies("run", "instructions-only-during-a-RUN-before-its-answer", out.valid, running & ~resp.valid)
        sent = [Signal(name=f"run_sent_{x}") for x in ("k", "v")]
        stalled = Signal()
        with m.If(accept):
            m.d.sync += [s.eq(0) for s in (*sent, stalled)]
        with m.Elif(out.valid):
            with m.If(out.ready):
                m.d.sync += Array(sent)[out.payload.sv].eq(1)
            with m.Else():
                m.d.sync += stalled.eq(1)
        run_done = taken & running & (got.status.as_value() == Status.OK)
        props.cover("run", "RUN-emits-K-and-V", run_done & sent[0] & sent[1])
        props.cover("run", "RUN-over-two-blocks", run_done & (q_len > q_block))
        props.cover("run", "RUN-stalled-by-back-pressure", run_done & stalled)
        for st in Status:
            props.cover("status", st.name, taken & (got.status.as_value() == st))
        allocating = ok & ((op == DpaOp.OPEN) | appending)
        props.cover("translate", "allocation-wraps-the-free-list", allocating & (f_head + need > C))
        return m
