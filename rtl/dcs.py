"""``DcsQueue``: a PIM channel controller's command queue with dynamic command scheduling.

One design runs the three policies of :mod:`pimphony.model.queue` (the ``mode`` input): static
in-order, ping-pong and DCS. It is cycle-exact to the reference engine
:func:`pimphony.model.policies.issue_cycles` (tested in amaranth.sim), whose docstring defines
the cycle semantics; the structures below are that engine in hardware, each a component with its own
tests (``tests/test_rtl_dcs_parts.py``):

- :class:`InOrderQueue` x 2: the I/O and the compute queue, in block RAM;
- :class:`DependencyTable` x 2 (D-Tables): the last queued accessor of every GBuf and OBuf region;
- :class:`InFlightTable` (S-Table): the issued commands whose latency has not passed;
- :class:`TimingCounters`: per opcode, the cycles until the rule table allows it;
- :class:`CompletionWait`: the static policy's wait for the previous command;
- :class:`RefreshTimer`: when the controller inserts an all-bank REF.

:class:`DcsQueue` wires them and chooses, each cycle, what to issue: a held offer, else a due refresh,
else the older of the ready queue heads.
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

DEPENDENCY = data.StructLayout({"valid": 1, "seq": SEQ_BITS, "cls": 1})
"""A D-Table entry: the last queued accessor of a buffer region, by sequence number and queue (0: I/O,
1: compute); ``valid`` is cleared once that command has completed."""

ISSUE = data.StructLayout({"valid": 1, "op": OpcodeShape, "seq": SEQ_BITS})
"""A command transferred on ``cmd_out`` in this cycle (``valid`` high), as the timers see it."""


def seq_ge(a, b):
    """``a >= b`` in program order (sequence numbers less than 2^15 apart)."""
    return ((a - b)[:SEQ_BITS])[SEQ_BITS - 1] == 0


def _power_of_two(name: str, value: int) -> None:
    if value < 2 or value & (value - 1):
        raise ValueError(f"{name} must be a power of two and at least 2, got {value}")


class InOrderQueue(wiring.Component):
    """One in-order queue of the controller: a FIFO in block RAM whose head is a registered read.

    ``push.ready`` is high while fewer than ``depth`` entries are held (it does not depend on
    ``push.valid``); a pushed entry is the head from the next cycle if the queue was empty. ``head`` is
    valid while ``nonempty``; ``pop`` (only while ``nonempty``) removes it at the clock edge, and the
    next entry is the head in the next cycle. The RAM's read port is addressed by the *next* head
    pointer and is transparent for the write port, so the read is registered and the head still
    follows a push into an empty queue in one cycle.

    Parameters
    ----------
    layout:
        The entry.
    depth:
        Entries; a power of two, at least 2 (the pointers wrap).
    """

    def __init__(self, layout: data.Layout, depth: int):
        _power_of_two("depth", depth)
        self.depth = depth
        super().__init__({
            "push": In(stream.Signature(layout)),
            "head": Out(layout),
            "nonempty": Out(1),
            "pop": In(1),
            "count": Out(range(depth + 1)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = Memory(shape=self.head.shape(), depth=self.depth, init=[])
        wp = ram.write_port()
        rp = ram.read_port(transparent_for=(wp,))
        head_ptr = Signal(range(self.depth))
        tail_ptr = Signal(range(self.depth))
        pushing = self.push.valid & self.push.ready
        m.d.comb += self.push.ready.eq(self.count < self.depth)
        m.d.comb += [wp.addr.eq(tail_ptr), wp.en.eq(pushing), wp.data.eq(self.push.payload)]
        with m.If(pushing):
            m.d.sync += tail_ptr.eq(tail_ptr + 1)
        head_next = Mux(self.pop, head_ptr + 1, head_ptr)
        m.d.comb += rp.addr.eq(head_next)
        m.d.sync += head_ptr.eq(head_next)
        with m.If(pushing & ~self.pop):
            m.d.sync += self.count.eq(self.count + 1)
        with m.Elif(self.pop & ~pushing):
            m.d.sync += self.count.eq(self.count - 1)
        m.d.comb += [self.head.eq(rp.data), self.nonempty.eq(self.count != 0)]
        return m


class DependencyTable(wiring.Component):
    """D-Table of one buffer: for each tracked region, the last queued command that accesses it.

    Regions are the buffer's entries under DCS, its two halves under ping-pong (the index's top bit);
    static tracks nothing. Every cycle the command on ``cmd_in`` looks up its region (``index``, when
    ``uses``): ``dep`` is that region's entry (``valid`` low when nothing is tracked). When ``write`` is
    high the command enters a queue and becomes the region's last accessor (``seq``, ``cls``) at the
    clock edge. A scrubber visits one entry per cycle, round robin (``scrub``); the parent sets
    ``scrub_free`` when that entry's command has completed, and the entry is invalidated, so that a
    sequence number is never compared after it wraps.

    Parameters
    ----------
    entries:
        Entries of the buffer, ``2**bits``.
    bits:
        Width of the buffer index.
    """

    def __init__(self, entries: int, bits: int):
        if entries != 1 << bits:
            raise ValueError(f"entries ({entries}) must equal 2^{bits}")
        self.entries, self.bits = entries, bits
        super().__init__({
            "mode": In(2),
            "index": In(bits),
            "uses": In(1),
            "dep": Out(DEPENDENCY),
            "write": In(1),
            "seq": In(SEQ_BITS),
            "cls": In(1),
            "scrub": Out(DEPENDENCY),
            "scrub_free": In(1),
        })

    @staticmethod
    def storage_bits(entries: int) -> int:
        """Bits of a table of ``entries`` regions (its registers, the scrub pointer aside)."""
        return entries * DEPENDENCY.size

    def elaborate(self, platform):
        m = Module()
        regs = Array(Signal(DEPENDENCY, name=f"entry{i}") for i in range(self.entries))
        static, dcs = self.mode == Policy.STATIC, self.mode == Policy.DCS
        bits = self.bits
        region = Mux(dcs, self.index, self.index >> (bits - 1))
        with m.If(self.uses & ~static):
            m.d.comb += self.dep.eq(regs[region])
        scrub = Signal(range(self.entries), name="scrub_ptr")
        m.d.sync += scrub.eq(scrub + 1)           # entries is a power of two: wraps
        m.d.comb += self.scrub.eq(regs[scrub])
        with m.If(self.scrub_free):
            m.d.sync += regs[scrub].valid.eq(0)
        with m.If(self.write & self.uses & ~static):
            m.d.sync += [regs[region].valid.eq(1), regs[region].seq.eq(self.seq), regs[region].cls.eq(self.cls)]
        return m


class InFlightTable(wiring.Component):
    """S-Table: the issued commands whose latency has not passed yet.

    A shift register of ``max(latency) - 1`` slots, one per cycle since issue: an issued command
    (``issue.valid``; the controller's own REF is not offered) enters slot 0 with its latency less
    one, which counts down as it moves along. ``pending[i]`` is high while the command named by
    ``query[i]`` is in a slot with time left; ``busy`` while any is.

    Parameters
    ----------
    latencies:
        Cycles from issue to completion, per opcode.
    queries:
        Sequence numbers looked up every cycle.
    """

    def __init__(self, latencies: list[int], queries: int):
        self.lat = latencies
        self.window = self.window_for(latencies)
        self.slot = self.slot_layout(latencies)
        super().__init__({
            "issue": In(ISSUE),
            "query": In(data.ArrayLayout(SEQ_BITS, queries)),
            "pending": Out(queries),
            "busy": Out(1),
        })

    @staticmethod
    def window_for(latencies: list[int]) -> int:
        """Slots: a command completes at most ``max(latencies)`` cycles after its issue."""
        return max(1, max(latencies) - 1)

    @staticmethod
    def slot_layout(latencies: list[int]) -> data.StructLayout:
        return data.StructLayout({"seq": SEQ_BITS, "rem": index_bits(max(latencies) + 1)})

    @classmethod
    def storage_bits(cls, latencies: list[int]) -> int:
        """Bits of the table's slots."""
        return cls.window_for(latencies) * cls.slot_layout(latencies).size

    def elaborate(self, platform):
        m = Module()
        slots = [Signal(self.slot, name=f"slot{k}") for k in range(self.window)]
        lat_rem = Array(Const(x - 1, index_bits(max(self.lat) + 1)) for x in self.lat)
        m.d.sync += slots[0].seq.eq(self.issue.seq)
        m.d.sync += slots[0].rem.eq(Mux(self.issue.valid, lat_rem[self.issue.op.as_value()], 0))
        for k in range(1, self.window):
            m.d.sync += [slots[k].seq.eq(slots[k - 1].seq),
                         slots[k].rem.eq(Mux(slots[k - 1].rem == 0, 0, slots[k - 1].rem - 1))]
        for i in range(len(self.pending)):
            hit = Const(0, 1)
            for s in slots:
                hit = hit | ((s.rem != 0) & (s.seq == self.query[i]))
            m.d.comb += self.pending[i].eq(hit)
        busy = Const(0, 1)
        for s in slots:
            busy = busy | (s.rem != 0)
        m.d.comb += self.busy.eq(busy)
        return m


class TimingCounters(wiring.Component):
    """Per opcode, the cycles until every timing rule lets it issue (one down-counter per opcode).

    ``candidates`` are the opcodes that may issue in this cycle (the queue heads, a refresh);
    ``issue.valid`` says that one issues, ``issue.which`` which one. An issue of opcode ``p`` raises
    each opcode ``k``'s counter to at least ``gap[p][k]``; every counter then counts down one per
    cycle. ``ready`` bit ``k`` is high while opcode ``k``'s counter is zero: issuing it in this cycle
    breaks no rule. The next value of every counter is computed for each candidate beside the choice,
    which then only selects one: the choice is the controller's slowest signal, so the rule table is
    not looked up behind it.

    Parameters
    ----------
    gap:
        The minimum cycles from an issue of each opcode (row) to one of each opcode (column), from
        :func:`~pimphony.model.timing.gap_matrix`.
    candidates:
        How many opcodes are offered per cycle.
    """

    def __init__(self, gap, candidates: int = 1):
        self.gap = gap
        self.n_ops = len(gap)
        self.width = index_bits(int(max(max(row) for row in gap)) + 1)
        super().__init__({"candidates": In(data.ArrayLayout(OpcodeShape, candidates)),
                          "issue": In(data.StructLayout({"valid": 1, "which": range(candidates)})),
                          "ready": Out(self.n_ops)})

    def elaborate(self, platform):
        m = Module()
        n_ops, cnt_width = self.n_ops, self.width
        allow = [Signal(cnt_width, name=f"wait_{Opcode(k).name.lower()}") for k in range(n_ops)]

        def count_down(value):
            return Mux(value == 0, 0, value - 1)

        for k in range(n_ops):
            row = Array(Const(int(self.gap[p][k]), cnt_width) for p in range(n_ops))
            after = []                                          # the counter's next value per candidate
            for c, cand in enumerate(self.candidates):
                imposed, nxt = row[cand.as_value()], Signal(cnt_width, name=f"next_{Opcode(k).name.lower()}_{c}")
                m.d.comb += nxt.eq(count_down(Mux(allow[k] > imposed, allow[k], imposed)))
                after.append(nxt)
            m.d.sync += allow[k].eq(Mux(self.issue.valid, Array(after)[self.issue.which], count_down(allow[k])))
            m.d.comb += self.ready[k].eq(allow[k] == 0)
        return m


class CompletionWait(wiring.Component):
    """The static policy's gap: the cycles until the last issued command (``issue``) lets the next one
    go (:func:`~pimphony.model.timing.blocking_table`: its latency, or a RD-OUT's trip to the HUB).
    ``done`` is high when it has passed.

    Parameters
    ----------
    block:
        Blocking cycles per opcode.
    """

    def __init__(self, block: list[int]):
        self.block = block
        super().__init__({"issue": In(ISSUE), "done": Out(1)})

    def elaborate(self, platform):
        m = Module()
        static_wait = Signal(range(max(self.block) + 1))
        lat_arr = Array(Const(max(1, x) - 1, static_wait.shape()) for x in self.block)
        with m.If(self.issue.valid):
            m.d.sync += static_wait.eq(lat_arr[self.issue.op.as_value()])
        with m.Elif(static_wait != 0):
            m.d.sync += static_wait.eq(static_wait - 1)
        m.d.comb += self.done.eq(static_wait == 0)
        return m


class RefreshTimer(wiring.Component):
    """Refresh of the channel: a refresh falls due every ``n_refi`` cycles from reset; it becomes
    ``pending`` at the next issued PRE (``pre``: all rows are closed then) and stays pending until the
    controller's REF issues (``refreshed``).

    Parameters
    ----------
    n_refi:
        Cycles between refreshes.
    """

    def __init__(self, n_refi: int):
        self.n_refi = n_refi
        super().__init__({"pre": In(1), "refreshed": In(1), "pending": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n_refi = self.n_refi
        ref_timer = Signal(range(n_refi))
        ref_due = Signal()
        m.d.sync += ref_timer.eq(Mux(ref_timer == n_refi - 1, 0, ref_timer + 1))
        m.d.sync += ref_due.eq((ref_timer == n_refi - 1) | (ref_due & ~self.refreshed))
        m.d.sync += self.pending.eq((self.pre & ref_due) | (self.pending & ~self.refreshed))
        return m


def table_bytes(timing: TimingPreset, config: QueueConfig) -> dict[str, int]:
    """Bytes of a :class:`DcsQueue`'s dependency tracking as built, from its components' layouts: the two
    D-Tables (per GBuf and OBuf entry a valid bit, a 16-bit sequence number and a queue bit) and the
    S-Table (per cycle of the longest latency, a sequence number and its remaining cycles)."""
    d_bits = DependencyTable.storage_bits(config.gbuf_entries + config.obuf_entries)
    s_bits = InFlightTable.storage_bits(latency_table(timing).tolist())
    return {"d_table": -(-d_bits // 8), "s_table": -(-s_bits // 8), "total": -(-(d_bits + s_bits) // 8)}


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
            _power_of_two(name, getattr(config, name))
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
        self.entry = data.StructLayout({"cmd": self.cmd_layout, "seq": SEQ_BITS, "dg": DEPENDENCY, "do": DEPENDENCY})
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
        static = self.mode == Policy.STATIC
        io_q = m.submodules.io_queue = InOrderQueue(self.entry, self.config.io_depth)
        cq = m.submodules.compute_queue = InOrderQueue(self.entry, self.config.compute_depth)
        queues = [io_q, cq]
        heads = [q.head for q in queues]
        nonempty = [q.nonempty for q in queues]
        timers = m.submodules.timing = TimingCounters(self.gap, candidates=3)     # the heads, a refresh
        wait = m.submodules.completion = CompletionWait(self.block)
        refresh = m.submodules.refresh = RefreshTimer(self.timing.nREFI)
        dg = m.submodules.dtable_gbuf = DependencyTable(self.config.gbuf_entries, self.fmt.gbuf_bits)
        do = m.submodules.dtable_obuf = DependencyTable(self.config.obuf_entries, self.fmt.obuf_bits)
        looked_up = [heads[0].dg, heads[0].do, heads[1].dg, heads[1].do, dg.scrub, do.scrub]
        inflight = m.submodules.stable = InFlightTable(self.lat, len(looked_up))
        for i, d in enumerate(looked_up):
            m.d.comb += inflight.query[i].eq(d.seq)

        def unissued(d):
            head_seq = Mux(d.cls, heads[1].seq, heads[0].seq)
            present = Mux(d.cls, nonempty[1], nonempty[0])
            return present & seq_ge(d.seq, head_seq)

        def dep_ok(i):
            d, pending = looked_up[i], inflight.pending[i]
            return ~d.valid | ~(unissued(d) | pending)

        # -- readiness of each head and the choice -------------------------------------------------
        ref_now = refresh.pending & timers.ready[Opcode.REF]
        may_issue = Array(timers.ready[k] for k in range(CHANNEL_OPCODES))
        ready, dep_block = [], []
        for q in range(2):
            h = heads[q]
            deps_ok = static | (dep_ok(2 * q) & dep_ok(2 * q + 1))
            timing_ok = may_issue[h.cmd.op.as_value()] & (~static | wait.done)
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
        chosen = Signal(self.entry)
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
        m.d.comb += [timers.candidates[0].eq(heads[0].cmd.op), timers.candidates[1].eq(heads[1].cmd.op),
                     timers.candidates[2].eq(OpcodeShape.REF), timers.issue.valid.eq(fire), timers.issue.which.eq(sel)]
        for part in (wait, inflight):
            m.d.comb += [part.issue.valid.eq(fire & ~is_ref), part.issue.op.eq(out.cmd.op),
                         part.issue.seq.eq(chosen.seq)]
        m.d.comb += [refresh.pre.eq(fire & ~is_ref & (out.cmd.op == OpcodeShape.PRE)),
                     refresh.refreshed.eq(fire & is_ref)]

        # -- dispatch and the D-Tables --------------------------------------------------------------
        inp = self.cmd_in.payload
        cls = Signal()
        m.d.comb += cls.eq(~static & ~opcode_in(inp.op, IO_OPCODES))
        m.d.comb += self.cmd_in.ready.eq(Mux(cls, queues[1].push.ready, queues[0].push.ready))
        push = self.cmd_in.valid & self.cmd_in.ready
        seq = Signal(SEQ_BITS)
        for table, index, users, first in ((dg, inp.gbuf, GBUF_USERS, 4), (do, inp.obuf, OBUF_USERS, 5)):
            m.d.comb += [table.mode.eq(self.mode), table.index.eq(index), table.uses.eq(opcode_in(inp.op, users)),
                         table.write.eq(push), table.seq.eq(seq), table.cls.eq(cls),
                         table.scrub_free.eq(table.scrub.valid & dep_ok(first))]
        for q, queue in enumerate(queues):
            m.d.comb += [queue.push.valid.eq(self.cmd_in.valid & (cls == q)),
                         queue.push.payload.cmd.eq(inp), queue.push.payload.seq.eq(seq),
                         queue.push.payload.dg.eq(dg.dep), queue.push.payload.do.eq(do.dep),
                         queue.pop.eq(fire & (sel == q))]
        with m.If(push):
            m.d.sync += seq.eq(seq + 1)

        blocked = static & ~wait.done               # a blocking RD-OUT's data is still on its way
        m.d.comb += self.idle.eq(~nonempty[0] & ~nonempty[1] & ~held & ~inflight.busy & ~blocked)

        # -- performance counters -------------------------------------------------------------------
        with m.If(fire & is_ref):
            m.d.sync += self.refreshes.eq(self.refreshes + 1)
        for k in range(CHANNEL_OPCODES):            # one enable per counter: no 32-bit multiplexer behind the choice
            with m.If(fire & ~is_ref & (op == k)):
                m.d.sync += self.issued[k].eq(self.issued[k] + 1)
        anything = nonempty[0] | nonempty[1] | refresh.pending
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
