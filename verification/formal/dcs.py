"""Property harness of the DCS queue (:class:`pimphony.rtl.dcs.DcsQueue`).

The harness drives the shipped block from free inputs (any command stream, any back-pressure, any
reset, a mode chosen once) and assumes only the stream protocol on ``cmd_in``: a command offered and
not taken stays offered, unchanged. Its monitor keeps its own state from the ports:

* a **shadow queue** per queue class (what was accepted, in order, with the monitor's own program-order
  number),
* **cycles since the last issue** of each opcode, a free-running **refresh clock**, the refresh the
  controller **owes** (a PRE issued while one is due),
* per GBuf and OBuf entry, the cycles until its last issued accessor **completes**,

and states the block's promises over them, in groups:

``timing``
    every issued command keeps every rule of the timing table, named by rule (and, in static mode, the
    previous command's completion);
``order``
    per queue, commands leave in program order, each exactly once, with the payload and the sequence
    number they came with; ``cmd_in.ready`` is exactly "the command's queue has a free slot";
``hazards``
    no command issues before an older command on the same GBuf or OBuf entry has issued and completed
    (RAW, WAR, WAW);
``progress``
    in DCS mode, a queue head that its rules and hazards allow issues (no needless stall) once it has
    been shown for a cycle (the controller decides from readiness registered in the previous cycle; a
    head is shown the cycle after its predecessor left, two cycles after a push into an empty queue),
    the older of two such heads first;
``handshake``
    ``cmd_out``'s payload is stable while valid and not ready;
``idle``
    ``idle`` is high exactly when nothing is queued, held or in flight;
``refresh``
    a refresh is inserted only when owed, an owed refresh issues as soon as its rules allow (it is not
    postponed), no ACT issues while one is owed, and never more refreshes than intervals elapsed.
"""

from __future__ import annotations

from amaranth import Array, Const, Elaboratable, Module, Mux, ResetSignal, Signal
from amaranth.lib import data

from pimphony.model.config import TimingPreset
from pimphony.model.isa import CHANNEL_OPCODES, IO_OPCODES, Format, Opcode
from pimphony.model.queue import GBUF_USERS, OBUF_USERS, Policy, QueueConfig
from pimphony.model.timing import blocking_table, latency_table, rules
from pimphony.rtl.dcs import SEQ_BITS, DcsQueue
from pimphony.rtl.layouts import opcode_in

from .props import Properties

GROUPS = ("timing", "order", "hazards", "progress", "handshake", "idle", "refresh")


def _seq_older(a, b):
    """``a`` comes before ``b`` in program order (differences below 2^(SEQ_BITS-1))."""
    return ((a - b)[:SEQ_BITS])[SEQ_BITS - 1]


class DcsHarness(Elaboratable):
    """The DCS queue under its monitor. ``groups`` selects the property groups emitted (all by default);
    the free mode input takes every policy. ``dut_timing`` builds the block from another
    preset than the monitor checks against (a broken rule must give a counterexample); ``covers_only``
    emits the Cover statements of every group and no Assert."""

    def __init__(self, fmt: Format, timing: TimingPreset, config: QueueConfig, groups=None,
                 dut_timing: TimingPreset | None = None, covers_only: bool = False):
        self.fmt, self.timing, self.config = fmt, timing, config
        self.groups = None if groups is None else frozenset(groups)
        self.covers_only = covers_only
        self.dut = DcsQueue(fmt, dut_timing or timing, config)
        self.properties: Properties | None = None

    def inputs(self) -> list:
        """The free inputs: any command stream, any back-pressure, a mode."""
        dut = self.dut
        return [dut.cmd_in.valid, dut.cmd_in.payload.as_value(), dut.cmd_out.ready, dut.mode]

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        cfg, fmt = self.config, self.fmt
        props = self.properties = Properties(m, self.groups, asserts=not self.covers_only)
        rst = ResetSignal()

        # -- environment: a mode fixed after the first cycle, the stream protocol on cmd_in --------------
        mode = dut.mode
        started = Signal()
        mode_q = Signal(2)
        m.d.sync += [started.eq(1), mode_q.eq(mode)]
        props.assume(mode < len(Policy))
        props.assume(~started | (mode == mode_q))
        inp = dut.cmd_in
        props.assume(inp.payload.op.as_value() < CHANNEL_OPCODES)
        offered = Signal()
        offered_cmd = Signal.like(inp.payload)
        m.d.sync += [offered.eq(inp.valid & ~inp.ready), offered_cmd.eq(inp.payload)]
        props.assume(~offered | (inp.valid & (inp.payload.as_value() == offered_cmd.as_value())))

        static = mode == Policy.STATIC
        dcs = mode == Policy.DCS
        out = dut.cmd_out
        op = out.payload.cmd.op.as_value()
        fire = out.valid & out.ready
        refresh = out.payload.refresh
        issue = fire & ~refresh

        # -- the monitor's own program order and shadow queues ------------------------------------------
        entry = data.StructLayout({"cmd": dut.cmd_layout, "seq": SEQ_BITS})
        depths = (cfg.io_depth, cfg.compute_depth)
        shadow = [[Signal(entry, name=f"shadow{q}_{i}") for i in range(d)] for q, d in enumerate(depths)]
        count = [Signal(range(d + 1), name=f"shadow{q}_count") for q, d in enumerate(depths)]
        seq = Signal(SEQ_BITS)

        def klass(o):
            return ~static & ~opcode_in(o, IO_OPCODES)

        accept = inp.valid & inp.ready
        in_cls = klass(inp.payload.op)
        out_cls = klass(out.payload.cmd.op)
        with m.If(accept):
            m.d.sync += seq.eq(seq + 1)
        for q in range(2):
            push = accept & (in_cls == q)
            pop = issue & (out_cls == q)
            n = count[q]
            m.d.sync += n.eq(n + push - pop)
            for i, slot in enumerate(shadow[q]):
                nxt = shadow[q][i + 1] if i + 1 < depths[q] else slot
                after_pop = Mux(pop, nxt.as_value(), slot.as_value())
                at = Mux(pop, n - 1, n)
                new = Signal(entry, name=f"shadow{q}_{i}_new")
                m.d.comb += [new.cmd.eq(inp.payload), new.seq.eq(seq)]
                m.d.sync += slot.eq(Mux(push & (at == i), new.as_value(), after_pop))
        heads = [Array(s)[0] for s in shadow]
        out_head = Array(heads)[out_cls]
        out_count = Array(count)[out_cls]

        props.implies("order", "issued-command-was-queued", issue, out_count != 0)
        props.implies("order", "issued-in-program-order", issue & (out_count != 0),
                      (out.payload.cmd.as_value() == out_head.cmd.as_value()) & (out.payload.seq == out_head.seq))
        props.implies("order", "ready-iff-queue-has-room", Const(1),
                      inp.ready == Mux(in_cls, count[1] < depths[1], count[0] < depths[0]))
        props.implies("order", "refresh-is-a-bare-REF", fire & refresh,
                      (op == Opcode.REF) & (out.payload.seq == 0))

        # -- timing: cycles since each opcode's last issue ----------------------------------------------
        table = rules(self.timing, cfg.obuf_dual_port)
        longest = max([r.gap for r in table] + [int(x) for x in blocking_table(self.timing)] + [1])
        since = [Signal(range(longest + 2), name=f"since_{Opcode(k).name.lower()}") for k in range(CHANNEL_OPCODES)]
        seen = [Signal(name=f"seen_{Opcode(k).name.lower()}") for k in range(CHANNEL_OPCODES)]
        for k in range(CHANNEL_OPCODES):
            with m.If(fire & (op == k)):
                m.d.sync += [since[k].eq(1), seen[k].eq(1)]
            with m.Elif(since[k] <= longest):
                m.d.sync += since[k].eq(since[k] + 1)

        def rule_ok(rule, o):
            """``rule`` allows opcode ``o`` (a value) to issue now."""
            ok = Const(1, 1)
            gate = opcode_in(o, rule.next)
            for p in rule.prev:
                ok = ok & (~gate | ~seen[p] | (since[p] >= rule.gap))
            return ok

        for rule in table:
            props.implies("timing", rule.name, fire, rule_ok(rule, out.payload.cmd.op))

        block = blocking_table(self.timing).tolist()
        last_op = Signal(range(CHANNEL_OPCODES))
        since_any = Signal(range(max(block) + 2))
        any_seen = Signal()
        with m.If(issue):
            m.d.sync += [last_op.eq(op), since_any.eq(1), any_seen.eq(1)]
        with m.Elif(since_any <= max(block)):
            m.d.sync += since_any.eq(since_any + 1)
        block_of = Array(Const(b, range(max(block) + 1)) for b in block)
        props.implies("timing", "static-previous-complete", issue & static,
                      ~any_seen | (since_any >= block_of[last_op]))

        # -- hazards: completion of each entry's issued accessors ---------------------------------------
        lat = latency_table(self.timing).tolist()
        lat_of = Array(Const(x, range(max(lat) + 1)) for x in lat)
        buffers = {"gbuf": fmt.gbuf_bits, "obuf": fmt.obuf_bits}
        users = {"gbuf": GBUF_USERS, "obuf": OBUF_USERS}
        busy = {}
        for name, bits in buffers.items():
            regs = [Signal(range(max(lat) + 1), name=f"busy_{name}{e}") for e in range(1 << bits)]
            busy[name] = Array(regs)
            for e, reg in enumerate(regs):
                hit = issue & opcode_in(out.payload.cmd.op, users[name]) & (getattr(out.payload.cmd, name) == e)
                dec = Mux(reg == 0, 0, reg - 1)
                load = lat_of[op] - 1
                m.d.sync += reg.eq(Mux(hit & (load > dec), load, dec))

        def older_user_queued(cmd, cmd_seq, q, name):
            """An older command using ``cmd``'s ``name`` entry is still in shadow queue ``q``."""
            hit = Const(0, 1)
            for i, slot in enumerate(shadow[q]):
                hit = hit | ((count[q] > i) & opcode_in(slot.cmd.op, users[name])
                             & (getattr(slot.cmd, name) == getattr(cmd, name)) & _seq_older(slot.seq, cmd_seq))
            return hit

        def hazard_free(cmd, cmd_seq, q):
            ok = Const(1, 1)
            for name in buffers:
                uses = opcode_in(cmd.op, users[name])
                ok = ok & (~uses | ((busy[name][getattr(cmd, name)] == 0)
                                    & ~older_user_queued(cmd, cmd_seq, 1 - q, name)))
            return ok

        for name in buffers:
            uses = opcode_in(out.payload.cmd.op, users[name])
            props.implies("hazards", f"{name}-older-accessor-issued",
                          issue & uses & (out_count != 0),
                          ~Mux(out_cls, older_user_queued(out.payload.cmd, out.payload.seq, 0, name),
                               older_user_queued(out.payload.cmd, out.payload.seq, 1, name)))
            props.implies("hazards", f"{name}-older-accessor-complete", issue & uses,
                          busy[name][getattr(out.payload.cmd, name)] == 0)

        # -- handshake -----------------------------------------------------------------------------------
        held = Signal()
        held_payload = Signal.like(out.payload)
        m.d.sync += [held.eq(out.valid & ~out.ready), held_payload.eq(out.payload)]
        props.implies("handshake", "valid-holds-until-ready", held, out.valid)
        props.implies("handshake", "payload-stable-while-held", held,
                      out.payload.as_value() == held_payload.as_value())

        # -- refresh: the monitor's own interval clock ----------------------------------------------------
        n_refi = self.timing.nREFI
        clock = Signal(range(n_refi))
        due = Signal()
        owed = Signal()
        intervals = Signal(8)
        refreshes = Signal(8)
        m.d.sync += clock.eq(Mux(clock == n_refi - 1, 0, clock + 1))
        with m.If(clock == n_refi - 1):
            m.d.sync += [due.eq(1), intervals.eq(Mux(intervals == 255, 255, intervals + 1))]
        with m.Elif(fire & refresh):
            m.d.sync += due.eq(0)
        with m.If(fire & refresh):
            m.d.sync += [owed.eq(0), refreshes.eq(refreshes + 1)]
        with m.Elif(issue & (op == Opcode.PRE) & due):
            m.d.sync += owed.eq(1)
        props.implies("refresh", "refresh-only-when-owed", fire & refresh, owed)
        props.implies("refresh", "no-ACT-while-refresh-owed", issue & (op == Opcode.ACT), ~owed)
        props.check("refresh", "no-more-refreshes-than-intervals", refreshes <= intervals)

        def timing_ok(o):
            ok = Const(1, 1)
            for rule in table:
                ok = ok & rule_ok(rule, o)
            return ok

        ref_op = Const(Opcode.REF, out.payload.cmd.op.shape())
        ref_ready = owed & timing_ok(ref_op)

        # -- progress (DCS): what may issue does, the older first -----------------------------------------
        # the controller's pipeline: a head is shown the cycle after the entry ahead of it left (two
        # after a push into an empty queue) and considered one cycle after it was shown
        shown = [Signal(name=f"shown{q}") for q in range(2)]
        settled = [Signal(name=f"settled{q}") for q in range(2)]
        ready = []
        for q in range(2):
            h = heads[q]
            popped = issue & (out_cls == q)
            m.d.sync += [shown[q].eq((count[q] != 0) & ~(popped & (count[q] == 1))), settled[q].eq(shown[q] & ~popped)]
            ready.append(settled[q] & timing_ok(h.cmd.op) & hazard_free(h.cmd, h.seq, q))
        props.implies("refresh", "owed-refresh-issues-when-allowed", ref_ready & ~held,
                      out.valid & refresh)
        props.implies("progress", "allowed-head-issues", dcs & ~held & (ready[0] | ready[1]), out.valid)
        older_first = Mux(_seq_older(heads[0].seq, heads[1].seq), heads[0].seq, heads[1].seq)
        props.implies("progress", "older-ready-head-first", dcs & ~held & ~ref_ready & ready[0] & ready[1],
                      out.valid & ~refresh & (out.payload.seq == older_first))

        # -- idle -------------------------------------------------------------------------------------------
        flight = Signal(range(max(block) + 1))
        need = Mux(static, block_of[op], lat_of[op]) - 1
        dec = Mux(flight == 0, 0, flight - 1)
        m.d.sync += flight.eq(Mux(issue & (need > dec), need, dec))
        quiet = (count[0] == 0) & (count[1] == 0) & ~held & (flight == 0)
        props.check("idle", "idle-iff-nothing-queued-held-or-in-flight", dut.idle == quiet)

        # -- what the proofs must be able to reach ------------------------------------------------------------
        props.cover("order", "both-queues-full", (count[0] == depths[0]) & (count[1] == depths[1]))
        other = ~out_cls
        props.cover("progress", "younger-issues-first", issue & dcs & (Array(count)[other] != 0)
                    & _seq_older(Array(heads)[other].seq, out.payload.seq))
        props.cover("refresh", "refresh-inserted", fire & refresh & ~rst)
        props.cover("handshake", "held-under-backpressure", held & out.valid)
        props.cover("hazards", "gbuf-hazard-wait", (count[1] != 0) & opcode_in(heads[1].cmd.op, users["gbuf"])
                    & ~hazard_free(heads[1].cmd, heads[1].seq, 1) & dcs)
        return m
