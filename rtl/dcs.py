"""``DcsQueue``: a PIM channel controller's command queue with dynamic command scheduling.

One design runs the three policies of :mod:`pimphony.model.queue` (the ``mode`` input): static
in-order, ping-pong and DCS. It is cycle-exact to the reference engine
:func:`pimphony.model.policies.issue_cycles` (tested in amaranth.sim), whose docstring defines
the cycle semantics; the structures below are that engine in hardware.
"""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from pimphony.model.config import TimingPreset, index_bits
from pimphony.model.isa import CHANNEL_OPCODES, IO_OPCODES, Format, Opcode
from pimphony.model.queue import GBUF_USERS, OBUF_USERS, Policy, QueueConfig
from pimphony.model.timing import blocking_table, gap_matrix, latency_table

from .layouts import OpcodeShape, command_layout, opcode_in

SEQ_BITS = 16
"""Width of the program-order sequence numbers that name commands (compared modulo 2^16)."""

STALL_CAUSES = ("idle", "dependency", "timing", "backpressure")


def _dep_layout() -> data.StructLayout:
    return data.StructLayout({"valid": 1, "seq": SEQ_BITS, "cls": 1})


class DcsQueue(wiring.Component):
    """Command queue of one PIM channel controller (static, ping-pong or DCS).

    Ports
    -----
    cmd_in : In(stream of command)
        Channel commands in program order. ``ready`` is high when the queue that the command goes
        to (I/O: WR_INP, WR_BIAS, RD_OUT; compute: MAC, ACT, PRE, REF; static: I/O for all) has a
        free slot at the start of the cycle; it depends on ``payload.op`` combinationally. An
        accepted command may issue from the next cycle.
    cmd_out : Out(stream of {cmd, seq, refresh})
        Issued commands, at most one per cycle, each legal under every timing rule when it is
        transferred. ``seq`` is the command's position in program order (mod 2^16); ``refresh`` marks
        an all-bank REF the controller inserted itself (its ``seq`` is 0). Once ``valid`` is high the
        payload holds until ``ready``; a cycle with ``ready`` low issues nothing (timing counters
        keep counting, so a later issue is still legal).
    mode : In(2)
        The policy (:class:`~pimphony.model.queue.Policy` encoding); change it only while idle.
    issued : Out(ArrayLayout(32, 7))
        Commands issued per opcode; ``refreshes`` counts inserted REFs.
    idle : Out(1)
        Nothing is queued or being offered, and every issued command has completed (its latency has
        passed; under static, a RD-OUT's data has reached the HUB): a phase boundary may proceed.
    stall : Out(StructLayout of 32-bit counters)
        Cycles without an issue: ``idle`` (nothing queued), ``dependency`` (a head waits for a
        hazard), ``timing`` (heads wait for a timing rule, the static gap or a pending refresh),
        ``backpressure`` (``cmd_out.ready`` low).

    Storage: each queue is a :class:`~amaranth.lib.memory.Memory` with a synchronous read port
    addressed by the *next* head pointer and transparent for the queue's write port, so the head is a
    registered read that maps to block RAM, and a command written into an empty queue in cycle ``t`` is
    its head in ``t + 1``, as with a combinational read.

    Parameters
    ----------
    fmt:
        Field widths (from the module organisation).
    timing:
        Timing preset; the timing counters are generated from its rule table.
    config:
        Queue depths (powers of two, at least 2), buffer sizes and the OBuf porting (which selects
        the timing rules); ``config.policy`` is ignored (the ``mode`` port chooses).
    """

    def __init__(self, fmt: Format, timing: TimingPreset, config: QueueConfig):
        for name in ("io_depth", "compute_depth"):
            depth = getattr(config, name)
            if depth < 2 or depth & (depth - 1):
                raise ValueError(f"{name} must be a power of two and at least 2, got {depth}")
        for name, bits in (("gbuf_entries", fmt.gbuf_bits), ("obuf_entries", fmt.obuf_bits)):
            entries = getattr(config, name)
            if entries != 1 << bits:
                raise ValueError(f"{name} ({entries}) must equal the command format's 2^{bits} entries")
        self.fmt = fmt
        self.timing = timing
        self.config = config
        self.gap = gap_matrix(timing, config.obuf_dual_port)
        self.lat = latency_table(timing).tolist()
        self.block = blocking_table(timing).tolist()
        self.cmd_layout = command_layout(fmt)
        out_layout = data.StructLayout({"cmd": self.cmd_layout, "seq": SEQ_BITS, "refresh": 1})
        stall = data.StructLayout(dict.fromkeys(STALL_CAUSES, 32))
        super().__init__({
            "cmd_in": In(stream.Signature(self.cmd_layout)),
            "cmd_out": Out(stream.Signature(out_layout)),
            "mode": In(2),
            "issued": Out(data.ArrayLayout(32, CHANNEL_OPCODES)),
            "refreshes": Out(32),
            "idle": Out(1),
            "stall": Out(stall),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, fmt = self.config, self.fmt
        dep = _dep_layout()
        entry = data.StructLayout({"cmd": self.cmd_layout, "seq": SEQ_BITS, "dg": dep, "do": dep})
        static = self.mode == Policy.STATIC
        dcs = self.mode == Policy.DCS

        def seq_ge(a, b):
            """a >= b in program order (differences below 2^15)."""
            return ((a - b)[:SEQ_BITS])[SEQ_BITS - 1] == 0

        # -- the two in-order queues -----------------------------------------------------------------
        depths = [cfg.io_depth, cfg.compute_depth]
        heads, nonempty, counts, wps, head_ptr, tail_ptr, read_addr = [], [], [], [], [], [], []
        for q, depth in enumerate(depths):
            mem = Memory(shape=entry, depth=depth, init=[])
            m.submodules[f"queue{q}"] = mem
            wp = mem.write_port()
            rp = mem.read_port(transparent_for=(wp,))
            hp = Signal(range(depth), name=f"head{q}")
            tp = Signal(range(depth), name=f"tail{q}")
            cnt = Signal(range(depth + 1), name=f"count{q}")
            heads.append(rp.data)
            read_addr.append(rp.addr)
            nonempty.append(cnt != 0)
            counts.append(cnt)
            wps.append(wp)
            head_ptr.append(hp)
            tail_ptr.append(tp)

        # -- S-Table: commands issued in the last cycles that have not completed yet ----------------
        window_len = max(1, max(self.lat) - 1)
        slot_layout = data.StructLayout({"seq": SEQ_BITS, "rem": index_bits(max(self.lat) + 1)})
        slots = [Signal(slot_layout, name=f"inflight{k}") for k in range(window_len)]

        def incomplete(seq):
            hit = Const(0, 1)
            for s in slots:
                hit = hit | ((s.rem != 0) & (s.seq == seq))
            return hit

        def unissued(d):
            head_seq = Mux(d.cls, heads[1].seq, heads[0].seq)
            present = Mux(d.cls, nonempty[1], nonempty[0])
            return present & seq_ge(d.seq, head_seq)

        def dep_ok(d):
            return ~d.valid | ~(unissued(d) | incomplete(d.seq))

        # -- timing counters generated from the rule table: cycles until each opcode may issue ------
        n_ops = CHANNEL_OPCODES
        cnt_width = index_bits(int(self.gap.max()) + 1)
        allow = [Signal(cnt_width, name=f"wait_{Opcode(k).name.lower()}") for k in range(n_ops)]
        allow_arr = Array(allow)
        static_wait = Signal(range(max(self.block) + 1))

        # -- refresh --------------------------------------------------------------------------------
        n_refi = self.timing.nREFI
        ref_timer = Signal(range(n_refi))
        ref_due = Signal()
        ref_pending = Signal()
        ref_now = ref_pending & (allow[Opcode.REF] == 0)

        # -- readiness of each head and the choice -------------------------------------------------
        ready, dep_block = [], []
        for q in range(2):
            h = heads[q]
            deps_ok = static | (dep_ok(h.dg) & dep_ok(h.do))
            timing_ok = (allow_arr[h.cmd.op.as_value()] == 0) & (~static | (static_wait == 0))
            ready.append(nonempty[q] & deps_ok & timing_ok)
            dep_block.append(nonempty[q] & ~deps_ok)

        held = Signal()
        held_sel = Signal(2)          # 0, 1: queue; 2: refresh
        sel = Signal(2)
        valid = Signal()
        with m.If(held):
            m.d.comb += [sel.eq(held_sel), valid.eq(1)]
        with m.Elif(ref_now):
            m.d.comb += [sel.eq(2), valid.eq(1)]
        with m.Elif(ready[0] & ready[1]):
            m.d.comb += [sel.eq(Mux(seq_ge(heads[0].seq, heads[1].seq), 1, 0)), valid.eq(1)]
        with m.Elif(ready[0]):
            m.d.comb += [sel.eq(0), valid.eq(1)]
        with m.Elif(ready[1]):
            m.d.comb += [sel.eq(1), valid.eq(1)]

        out = self.cmd_out.payload
        chosen = Signal(entry)
        m.d.comb += chosen.eq(Mux(sel == 1, heads[1], heads[0]))
        is_ref = sel == 2
        with m.If(is_ref):
            m.d.comb += [out.cmd.op.eq(OpcodeShape.REF), out.refresh.eq(1)]
        with m.Else():
            m.d.comb += [out.cmd.eq(chosen.cmd), out.seq.eq(chosen.seq)]
        m.d.comb += self.cmd_out.valid.eq(valid)
        fire = valid & self.cmd_out.ready
        m.d.sync += held.eq(valid & ~self.cmd_out.ready)
        with m.If(valid & ~self.cmd_out.ready):
            m.d.sync += held_sel.eq(sel)
        op = out.cmd.op.as_value()

        # -- effects of an issue --------------------------------------------------------------------
        for k in range(n_ops):
            row = Array(Const(int(self.gap[p][k]), cnt_width) for p in range(n_ops))
            imposed = Mux(fire, row[op], 0)
            worst = Mux(allow[k] > imposed, allow[k], imposed)
            m.d.sync += allow[k].eq(Mux(worst == 0, 0, worst - 1))
        lat_arr = Array(Const(max(1, x) - 1, static_wait.shape()) for x in self.block)
        with m.If(fire & ~is_ref):
            m.d.sync += static_wait.eq(lat_arr[op])
        with m.Elif(static_wait != 0):
            m.d.sync += static_wait.eq(static_wait - 1)
        lat_rem = Array(Const(x - 1, index_bits(max(self.lat) + 1)) for x in self.lat)
        m.d.sync += slots[0].seq.eq(chosen.seq)
        m.d.sync += slots[0].rem.eq(Mux(fire & ~is_ref, lat_rem[op], 0))
        for k in range(1, window_len):
            m.d.sync += [slots[k].seq.eq(slots[k - 1].seq),
                         slots[k].rem.eq(Mux(slots[k - 1].rem == 0, 0, slots[k - 1].rem - 1))]
        m.d.sync += ref_timer.eq(Mux(ref_timer == n_refi - 1, 0, ref_timer + 1))
        m.d.sync += ref_due.eq((ref_timer == n_refi - 1) | (ref_due & ~(fire & is_ref)))
        m.d.sync += ref_pending.eq((fire & ~is_ref & (out.cmd.op == OpcodeShape.PRE) & ref_due)
                                   | (ref_pending & ~(fire & is_ref)))

        # -- dispatch and the D-Table ---------------------------------------------------------------
        inp = self.cmd_in.payload
        in_io = opcode_in(inp.op, IO_OPCODES)
        cls = Signal()
        m.d.comb += cls.eq(~static & ~in_io)
        space = Mux(cls, counts[1] < depths[1], counts[0] < depths[0])
        m.d.comb += self.cmd_in.ready.eq(space)
        push = self.cmd_in.valid & space
        seq = Signal(SEQ_BITS)

        def table(entries: int, bits: int, index, uses, name: str):
            regs = Array(Signal(dep, name=f"{name}{i}") for i in range(entries))
            region = Mux(dcs, index, index >> (bits - 1))
            looked = Signal(dep, name=f"{name}_dep")
            with m.If(uses & ~static):
                m.d.comb += looked.eq(regs[region])
            scrub = Signal(range(entries), name=f"{name}_scrub")
            m.d.sync += scrub.eq(scrub + 1)           # entries is a power of two: wraps
            with m.If(regs[scrub].valid & dep_ok(regs[scrub])):
                m.d.sync += regs[scrub].valid.eq(0)
            with m.If(push & uses & ~static):
                m.d.sync += [regs[region].valid.eq(1), regs[region].seq.eq(seq), regs[region].cls.eq(cls)]
            return looked

        dg = table(cfg.gbuf_entries, fmt.gbuf_bits, inp.gbuf, opcode_in(inp.op, GBUF_USERS), "dtable_gbuf")
        do = table(cfg.obuf_entries, fmt.obuf_bits, inp.obuf, opcode_in(inp.op, OBUF_USERS), "dtable_obuf")

        for q in range(2):
            wp = wps[q]
            pushing = push & (cls == q)
            popping = fire & (sel == q)
            m.d.comb += [wp.addr.eq(tail_ptr[q]), wp.en.eq(pushing), wp.data.cmd.eq(inp), wp.data.seq.eq(seq),
                         wp.data.dg.eq(dg), wp.data.do.eq(do)]
            with m.If(pushing):
                m.d.sync += tail_ptr[q].eq(tail_ptr[q] + 1)
            head_next = Mux(popping, head_ptr[q] + 1, head_ptr[q])
            m.d.comb += read_addr[q].eq(head_next)
            m.d.sync += head_ptr[q].eq(head_next)
            with m.If(pushing & ~popping):
                m.d.sync += counts[q].eq(counts[q] + 1)
            with m.Elif(popping & ~pushing):
                m.d.sync += counts[q].eq(counts[q] - 1)
        with m.If(push):
            m.d.sync += seq.eq(seq + 1)

        in_flight = Const(0, 1)
        for slot in slots:
            in_flight = in_flight | (slot.rem != 0)
        blocked = static & (static_wait != 0)               # a blocking RD-OUT's data is still on its way
        m.d.comb += self.idle.eq(~nonempty[0] & ~nonempty[1] & ~held & ~in_flight & ~blocked)

        # -- performance counters -------------------------------------------------------------------
        with m.If(fire & is_ref):
            m.d.sync += self.refreshes.eq(self.refreshes + 1)
        with m.Elif(fire):
            m.d.sync += self.issued[op].eq(self.issued[op] + 1)
        anything = nonempty[0] | nonempty[1] | ref_pending
        with m.If(~fire):
            with m.If(~anything):
                m.d.sync += self.stall.idle.eq(self.stall.idle + 1)
            with m.Elif(valid):
                m.d.sync += self.stall.backpressure.eq(self.stall.backpressure + 1)
            with m.Elif(dep_block[0] | dep_block[1]):
                m.d.sync += self.stall.dependency.eq(self.stall.dependency + 1)
            with m.Else():
                m.d.sync += self.stall.timing.eq(self.stall.timing + 1)
        return m
