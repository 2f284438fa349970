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
else the older of the ready queue heads. Whether a head is ready is computed one cycle ahead and
registered (the engine's *pipeline* rule), so the choice is a few gates deep and the queue's RAM read,
the hazard compares and the rule table sit in separate cycles from it: one queue issues at most every
other cycle, the two together one command per cycle.
"""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
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

    ``push.ready`` is high while fewer than ``depth`` entries are held (``count``; it does not depend
    on ``push.valid``). ``head`` is the oldest entry while ``head_valid``; ``pop`` (only while
    ``head_valid``) removes it at the clock edge, and the next entry is the head in the next cycle.
    The RAM's read port is registered, with an enable, and not transparent: ``head`` is a register
    loaded from the RAM's read of a registered address (the slot behind the head, or the head's own
    while none is shown) when the head is popped or not shown, so the pop only enables the register.
    The price: an entry pushed while the queue is empty (after this cycle's pop) is the head two
    cycles later, not one (``head_valid`` is low for a cycle while ``count`` is 1). ``holds`` says that
    the head keeps its value into the next cycle, ``following`` is the entry it takes otherwise (what
    ``head`` will be then): a second registered read port, addressed a cycle ahead (with the address
    the head's port takes next) and transparent for the write port, so it shows in this cycle what the
    head's port reads at its end.

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
            "head_valid": Out(1),
            "pop": In(1),
            "count": Out(range(depth + 1)),
            "holds": Out(1),
            "following": Out(layout),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.ram = ram = Memory(shape=self.head.shape(), depth=self.depth, init=[])
        wp = ram.write_port()
        rp = ram.read_port()
        ahead = ram.read_port(transparent_for=(wp,))
        head_ptr = Signal(range(self.depth))
        tail_ptr = Signal(range(self.depth))
        pushing = self.push.valid & self.push.ready
        room = Signal(init=1)                                  # registered: fewer than depth held
        m.d.comb += self.push.ready.eq(room)
        m.d.comb += [wp.addr.eq(tail_ptr), wp.en.eq(pushing), wp.data.eq(self.push.payload)]
        with m.If(pushing):
            m.d.sync += tail_ptr.eq(tail_ptr + 1)
        # the pop (the controller's choice) arrives last: every sum and compare below is made from the
        # registers beside it, and the pop only selects
        head_next = Signal(range(self.depth))                 # wraps: depth is a power of two
        m.d.comb += head_next.eq(Mux(self.pop, head_ptr + 1, head_ptr))
        m.d.sync += head_ptr.eq(head_next)
        count_next = Signal(range(self.depth + 1))
        m.d.comb += count_next.eq(self.count + pushing - self.pop)
        below = [self.count < self.depth - k for k in (0, 1)]          # room now; room after a push
        m.d.sync += [self.count.eq(count_next),
                     room.eq(Mux(self.pop, ~pushing | below[0], Mux(pushing, below[1], below[0])))]
        valid_next = Mux(self.pop, self.count != 1, self.count != 0)    # written before this cycle: read now
        m.d.sync += self.head_valid.eq(valid_next)
        # the slot to read next: behind a shown head, else the head's own; a register, so the RAM is
        # read from a register's address and the choice (pop) only enables the head register
        rd_addr, rd_next = Signal(range(self.depth)), Signal(range(self.depth))
        after = [head_ptr + k for k in (0, 1, 2)]
        m.d.comb += rd_next.eq(Mux(self.pop, Mux(self.count != 1, after[2], after[1]),
                                   Mux(self.count != 0, after[1], after[0])))
        m.d.sync += rd_addr.eq(rd_next)
        m.d.comb += [rp.addr.eq(rd_addr), rp.en.eq(self.pop | ~self.head_valid), self.head.eq(rp.data),
                     ahead.addr.eq(rd_next), self.following.eq(ahead.data), self.holds.eq(self.head_valid & ~self.pop)]
        return m


class DependencyTable(wiring.Component):
    """D-Table of one buffer: for each tracked region, the last queued command that accesses it.

    Regions are the buffer's entries under DCS, its two halves under ping-pong (the index's top bit);
    static tracks nothing. Every cycle the command on ``cmd_in`` looks up its region (``index``, when
    ``uses``): ``dep`` is that region's entry (``valid`` low when nothing is tracked). When ``write`` is
    high the command enters a queue and becomes the region's last accessor (``seq``, ``cls``) at the
    clock edge. A scrubber visits one entry per cycle, round robin: the entry it read in the previous
    cycle is on ``scrub`` (``valid`` low if a write replaced it meanwhile); the parent sets
    ``scrub_free`` when that command will have completed by the next cycle, and the entry is
    invalidated at the next clock edge but one (unless a write replaces it before), so that a sequence
    number is never compared after it wraps. The scrubber is a pipeline: the entry multiplexer, the
    parent's completion check and the invalidation sit in separate cycles.

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
        onehot = Signal(self.entries, init=1, name="scrub_onehot")       # bit scrub_ptr: an AND-OR read
        visited = Signal(range(self.entries), name="scrub_visited")     # the entry now on self.scrub
        read = Signal(DEPENDENCY, name="scrub_read")
        writing = self.write & self.uses & ~static
        entry = Const(0, DEPENDENCY.size)
        for i in range(self.entries):
            entry = entry | Mux(onehot[i], regs[i].as_value(), 0)
        m.d.sync += [scrub.eq(scrub + 1), onehot.eq(onehot.rotate_left(1)), visited.eq(scrub),
                     read.eq(entry)]                                   # entries is a power of two: wraps
        m.d.sync += read.valid.eq(data.View(DEPENDENCY, entry).valid & ~(writing & (region == scrub)))
        m.d.comb += self.scrub.eq(read)
        freeing = Signal(name="scrub_freeing")        # the entry visited in the previous cycle is freed now
        freed = Signal(range(self.entries), name="scrub_freed")
        m.d.sync += [freeing.eq(self.scrub_free & read.valid & ~(writing & (region == visited))), freed.eq(visited)]
        with m.If(freeing):
            m.d.sync += regs[freed].valid.eq(0)
        with m.If(writing):
            m.d.sync += [regs[region].valid.eq(1), regs[region].seq.eq(self.seq), regs[region].cls.eq(self.cls)]
        return m


class InFlightTable(wiring.Component):
    """S-Table: the issued commands whose latency has not passed yet.

    A shift register of ``max(latency) - 1`` slots, one per cycle since issue: an issued command
    (``issue.valid``; the controller's own REF is not offered) enters slot 0 with its latency less
    one, which counts down as it moves along. ``pending[i]`` is high while the command named by
    ``query[i]`` will still be in a slot with time left in the *next* cycle (the controller decides
    one cycle ahead; the command issuing in this cycle is not in a slot yet, the parent accounts for
    it); ``busy`` while any slot has time left now.

    The sequence-number compares are made a cycle ahead and registered (one bit per query and slot),
    so ``pending`` is an AND-OR of registers: the parent says what each query will be in the next
    cycle (``keep[i]``: the same, else ``load[i]``), and the candidates' sequence numbers (``offer``,
    ``which`` the one issuing: ``issue.seq`` is ``offer[which]``) name what enters slot 0. While a query
    is kept its compares move along with the slots. ``probe[j]`` is looked up like a query but compared
    in the cycle (``probe_pending[j]``), for a sequence number the parent does not know a cycle ahead.

    Parameters
    ----------
    latencies:
        Cycles from issue to completion, per opcode.
    queries:
        Sequence numbers looked up every cycle, known a cycle ahead.
    probes:
        Sequence numbers looked up every cycle, compared in the cycle.
    candidates:
        Commands that may issue in a cycle.
    """

    def __init__(self, latencies: list[int], queries: int, probes: int = 0, candidates: int = 1):
        self.lat = latencies
        self.window = self.window_for(latencies)
        self.slot = self.slot_layout(latencies)
        super().__init__({
            "issue": In(ISSUE),
            "offer": In(data.ArrayLayout(SEQ_BITS, candidates)),
            "which": In(range(candidates)),
            "query": In(data.ArrayLayout(SEQ_BITS, queries)),
            "keep": In(queries),
            "load": In(data.ArrayLayout(SEQ_BITS, queries)),
            "pending": Out(queries),
            "probe": In(data.ArrayLayout(SEQ_BITS, probes)),
            "probe_pending": Out(probes),
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
        """Bits of the table's slots (the registered compares aside: they are derived from the slots)."""
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
        live = Cat(s.rem > 1 for s in slots)
        for i in range(len(self.pending)):
            match = Signal(self.window, name=f"match{i}")      # bit k: slot k holds query i's command
            query, load, keep = self.query[i], self.load[i], self.keep[i]
            entering = Mux(keep, Array(query == o for o in self.offer)[self.which],
                           Array(load == o for o in self.offer)[self.which])
            moved = [Mux(keep, match[k - 1], slots[k - 1].seq == load) for k in range(1, self.window)]
            m.d.sync += match.eq(Cat(entering, *moved))
            m.d.comb += self.pending[i].eq((match & live).any())
        for j, probe in enumerate(self.probe):
            m.d.comb += self.probe_pending[j].eq((Cat(s.seq == probe for s in slots) & live).any())
        m.d.comb += self.busy.eq(Cat(s.rem != 0 for s in slots).any())
        return m


class TimingCounters(wiring.Component):
    """Per opcode, the cycles until every timing rule lets it issue (one down-counter per opcode).

    ``offer[c]`` is the opcode candidate ``c`` offers in this cycle (a queue head, a refresh).
    ``issue.valid`` says that a candidate issues in this cycle, ``issue.which`` which one, and it
    issues the opcode it offered in the *previous* cycle (the controller issues only a head that was
    already the head a cycle before). An issue of opcode ``p`` raises each opcode ``k``'s counter to at
    least ``gap[p][k]``; every counter then counts down one per cycle, and an opcode whose counter is
    zero breaks no rule by issuing. ``ready_next[c]`` says whether ``offer[c]`` may issue in the *next*
    cycle, after this cycle's issue: its counter is at most 1 now, and the issued opcode imposes no gap
    above 1 on it.
    ``ready_after[c]`` gives that answer for every outcome of this cycle before it is known (bit ``j``:
    candidate ``j`` issues; the last bit: nothing issues), from registers only, so a parent can put its
    choice last.

    Since an issued opcode was offered a cycle earlier, the rule table is looked up then and its row
    registered per candidate (with each gap less one): in the cycle of the issue a counter's next value
    is a compare of two registers beside a decrement, and the choice only selects among candidates.

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
        super().__init__({"offer": In(data.ArrayLayout(OpcodeShape, candidates)),
                          "issue": In(data.StructLayout({"valid": 1, "which": range(candidates)})),
                          "ready_after": Out(data.ArrayLayout(candidates + 1, candidates)),
                          "ready_next": Out(candidates)})

    def elaborate(self, platform):
        m = Module()
        n_ops, cnt_width = self.n_ops, self.width
        allow = [Signal(cnt_width, name=f"wait_{Opcode(k).name.lower()}") for k in range(n_ops)]
        offered = [Signal(OpcodeShape, name=f"offered_{c}") for c in range(len(self.offer))]   # last cycle's
        m.d.sync += [offered[c].eq(o) for c, o in enumerate(self.offer)]

        def count_down(value):
            return Mux(value == 0, 0, value - 1)

        for k in range(n_ops):
            name = Opcode(k).name.lower()
            row = Array(Const(int(self.gap[p][k]), cnt_width) for p in range(n_ops))
            row_less = Array(Const(max(0, g.value - 1), cnt_width) for g in row)
            after = []                                # the counter's next value if candidate c issues
            for c, o in enumerate(self.offer):
                imposed = Signal(cnt_width, name=f"gap_{name}_{c}")
                imposed_less = Signal(cnt_width, name=f"gap1_{name}_{c}")
                m.d.sync += [imposed.eq(row[o.as_value()]), imposed_less.eq(row_less[o.as_value()])]
                nxt = Signal(cnt_width, name=f"next_{name}_{c}")     # count_down(max(allow, imposed))
                m.d.comb += nxt.eq(Mux(allow[k] > imposed, count_down(allow[k]), imposed_less))
                after.append(nxt)
            m.d.sync += allow[k].eq(Mux(self.issue.valid, Array(after)[self.issue.which], count_down(allow[k])))
        soon = Array(allow[k] <= 1 for k in range(n_ops))           # zero in the next cycle, without an issue
        holds = Array(Const(sum(1 << k for k in range(n_ops) if self.gap[p][k] > 1), n_ops) for p in range(n_ops))
        n = len(self.offer)
        for c, o in enumerate(self.offer):
            held_by = Signal(n, name=f"held_by_{c}")    # bit j: candidate j's issue holds it
            for j, issuing in enumerate(offered):
                m.d.comb += held_by[j].eq(holds[issuing.as_value()].bit_select(o.as_value(), 1))
            soon_c = soon[o.as_value()]
            m.d.comb += self.ready_after[c].eq(Cat(*(soon_c & ~held_by[j] for j in range(n)), soon_c))
            m.d.comb += self.ready_next[c].eq(Mux(self.issue.valid, self.ready_after[c].bit_select(self.issue.which, 1),
                                                  self.ready_after[c][n]))
        return m


class CompletionWait(wiring.Component):
    """The static policy's gap: the cycles until the last issued command (``issue``) lets the next one
    go (:func:`~pimphony.model.timing.blocking_table`: its latency, or a RD-OUT's trip to the HUB).
    ``done`` is high when it has passed. ``done_after`` says whether it will have passed in the next
    cycle, for every outcome of this cycle: bit ``c`` if candidate ``c`` (offering opcode ``offer[c]``)
    issues, the last bit if no command issues; from registers only, so the parent's choice selects last.

    Parameters
    ----------
    block:
        Blocking cycles per opcode.
    candidates:
        How many opcodes are offered per cycle.
    """

    def __init__(self, block: list[int], candidates: int = 1):
        self.block = block
        super().__init__({"issue": In(ISSUE), "offer": In(data.ArrayLayout(OpcodeShape, candidates)),
                          "done": Out(1), "done_after": Out(candidates + 1)})

    def elaborate(self, platform):
        m = Module()
        static_wait = Signal(range(max(self.block) + 1))
        lat_arr = Array(Const(max(1, x) - 1, static_wait.shape()) for x in self.block)
        with m.If(self.issue.valid):
            m.d.sync += static_wait.eq(lat_arr[self.issue.op.as_value()])
        with m.Elif(static_wait != 0):
            m.d.sync += static_wait.eq(static_wait - 1)
        m.d.comb += self.done.eq(static_wait == 0)
        quick = Const(sum(1 << p for p, x in enumerate(self.block) if x <= 1), len(self.block))
        m.d.comb += self.done_after.eq(Cat(*(quick.bit_select(o.as_value(), 1) for o in self.offer), static_wait <= 1))
        return m


class RefreshTimer(wiring.Component):
    """Refresh of the channel: a refresh falls due every ``n_refi`` cycles from reset; it becomes
    ``pending`` at the next issued PRE (``pre``: all rows are closed then) and stays pending until the
    controller's REF issues (``refreshed``); ``pending_next`` is what ``pending`` will be in the next
    cycle.

    Parameters
    ----------
    n_refi:
        Cycles between refreshes.
    """

    def __init__(self, n_refi: int):
        self.n_refi = n_refi
        super().__init__({"pre": In(1), "refreshed": In(1), "pending": Out(1), "pending_next": Out(1)})

    def elaborate(self, platform):
        m = Module()
        n_refi = self.n_refi
        ref_timer = Signal(range(n_refi))
        ref_due = Signal()
        m.d.sync += ref_timer.eq(Mux(ref_timer == n_refi - 1, 0, ref_timer + 1))
        m.d.sync += ref_due.eq((ref_timer == n_refi - 1) | (ref_due & ~self.refreshed))
        m.d.comb += self.pending_next.eq((self.pre & ref_due) | (self.pending & ~self.refreshed))
        m.d.sync += self.pending.eq(self.pending_next)
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
        accepted command may issue two cycles later at the earliest (it is its queue's head for a
        cycle before it is ready).
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
        hazard), ``timing`` (heads wait for a timing rule, the static gap, a pending refresh or the
        decision pipeline: a head shown in this cycle is considered in the next), ``backpressure``
        (``cmd_out.ready`` low).

    Storage: each queue is an :class:`InOrderQueue`, a :class:`~amaranth.lib.memory.Memory` with registered
    read ports (block RAM on the iCE40, LUT RAM and registers on the ECP5).

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
        occupied = [q.count != 0 for q in queues]
        visible = [q.head_valid for q in queues]          # shown: two cycles after a push into an empty queue
        timers = m.submodules.timing = TimingCounters(self.gap, candidates=3)     # the heads, a refresh
        wait = m.submodules.completion = CompletionWait(self.block, candidates=2)       # the heads
        refresh = m.submodules.refresh = RefreshTimer(self.timing.nREFI)
        dg = m.submodules.dtable_gbuf = DependencyTable(self.config.gbuf_entries, self.fmt.gbuf_bits)
        do = m.submodules.dtable_obuf = DependencyTable(self.config.obuf_entries, self.fmt.obuf_bits)
        looked_up = [heads[0].dg, heads[0].do, heads[1].dg, heads[1].do, dg.scrub, do.scrub]
        inflight = m.submodules.stable = InFlightTable(self.lat, queries=4, probes=2, candidates=2)
        for i, q in enumerate(queues):                  # the heads' dependencies, known a cycle ahead
            for j, name in enumerate(("dg", "do")):
                m.d.comb += [inflight.query[2 * i + j].eq(heads[i][name].seq), inflight.keep[2 * i + j].eq(q.holds),
                             inflight.load[2 * i + j].eq(q.following[name].seq)]
        m.d.comb += [inflight.probe[0].eq(dg.scrub.seq), inflight.probe[1].eq(do.scrub.seq)]
        pending = [*inflight.pending, *inflight.probe_pending]        # by looked_up's index

        # -- the choice: among registered readiness bits ------------------------------------------------
        ready = Signal(2)             # computed in the previous cycle: head q may issue in this one
        dep_wait = Signal(2)          # ... or waits for a dependency
        older = Signal()              # head 1 is older than head 0 (valid while both heads are ready)
        ref_now = Signal()            # a refresh is pending and its rules allow it (registered)
        held = Signal()
        held_sel = Signal(2)          # 0, 1: queue; 2: refresh
        sel = Signal(2)
        valid = Signal()
        with m.If(held):
            m.d.comb += [sel.eq(held_sel), valid.eq(1)]
        with m.Elif(ref_now):
            m.d.comb += [sel.eq(2), valid.eq(1)]
        with m.Elif(ready[0] & ready[1]):
            m.d.comb += [sel.eq(older), valid.eq(1)]
        with m.Elif(ready[0]):
            m.d.comb += [sel.eq(0), valid.eq(1)]
        with m.Elif(ready[1]):
            m.d.comb += [sel.eq(1), valid.eq(1)]
        fire = valid & self.cmd_out.ready

        # -- readiness for the next cycle ----------------------------------------------------------------
        # Each head's readiness is computed from registers for every outcome of this cycle's choice (the
        # other head issues, the refresh issues, nothing issues); the choice selects among them last, so
        # the hazard compares and the rule lookups do not wait for it. A head that issues leaves a
        # successor that is not ready (it is shown in the next cycle and considered in the one after).
        quick = Const(sum(1 << k for k, x in enumerate(self.lat) if x <= 1), CHANNEL_OPCODES)
        quick_head = [quick.bit_select(heads[q].cmd.op.as_value(), 1) for q in range(2)]
        fires = [fire & (sel == c) for c in range(3)]        # queue 0, queue 1, the refresh

        def completed_next(i, issuing, own=None):
            """Dependency ``looked_up[i]`` has issued and completed by the next cycle when the head of queue
            ``issuing`` (None: no head) issues now: it issued before this cycle and is not pending next
            cycle, or it is that head and its latency is 1.

            For the head of queue ``own``: a dependency in that queue has issued (the queue is in
            order), and one in the other queue has not while it is at or behind that queue's shown head
            (an entry not shown yet was queued in the previous cycle, after the head that depends on
            it). For a D-Table entry the scrubber visits (``own`` None): a queue with an entry not
            shown yet counts as holding it, and the parent asks with no head issuing (a command issuing
            now is freed at a later visit: the scrub does not wait for the choice, and it changes no
            cycle of issue, only when a stale entry is forgotten)."""
            d = looked_up[i]

            def waits(q):
                return seq_ge(d.seq, heads[q].seq)

            def now(q):
                return (d.seq == heads[q].seq) & quick_head[q] if q == issuing else Const(0, 1)

            if own is None:
                waiting = Mux(d.cls, occupied[1] & (~visible[1] | waits(1)), occupied[0] & (~visible[0] | waits(0)))
                issuing_now = Mux(d.cls, now(1), now(0))
            else:
                other = 1 - own
                waiting, issuing_now = (d.cls == other) & visible[other] & waits(other), now(other)
            return ~d.valid | ((~waiting | issuing_now) & ~pending[i])

        nothing = (len(timers.offer), len(wait.offer))       # the "no candidate issues" bit of each
        for q in range(2):
            other = 1 - q
            after = {}
            for c in (other, 2, None):                       # the other head, the refresh, nothing issues
                head = other if c == other else None
                deps_ok = static | (completed_next(2 * q, head, q) & completed_next(2 * q + 1, head, q))
                timing_ok = (timers.ready_after[q][nothing[0] if c is None else c]
                             & (~static | wait.done_after[other if c == other else nothing[1]]))
                after[c] = Cat(visible[q] & deps_ok & timing_ok, visible[q] & ~deps_ok)
            chosen_after = Mux(fires[q], 0, Mux(fires[other], after[other], Mux(fires[2], after[2], after[None])))
            m.d.sync += Cat(ready[q], dep_wait[q]).eq(chosen_after)
        m.d.sync += older.eq(seq_ge(heads[0].seq, heads[1].seq))
        m.d.sync += ref_now.eq(refresh.pending_next & timers.ready_next[2])

        out = self.cmd_out.payload
        chosen = Signal(self.entry)
        m.d.comb += chosen.eq(Mux(sel == 1, heads[1], heads[0]))
        is_ref = sel == 2
        with m.If(is_ref):
            m.d.comb += [out.cmd.op.eq(OpcodeShape.REF), out.refresh.eq(1)]
        with m.Else():
            m.d.comb += [out.cmd.eq(chosen.cmd), out.seq.eq(chosen.seq)]
        m.d.comb += self.cmd_out.valid.eq(valid)
        m.d.sync += held.eq(valid & ~self.cmd_out.ready)
        with m.If(valid & ~self.cmd_out.ready):
            m.d.sync += held_sel.eq(sel)
        op = out.cmd.op.as_value()

        # -- effects of an issue --------------------------------------------------------------------
        m.d.comb += [timers.offer[0].eq(heads[0].cmd.op), timers.offer[1].eq(heads[1].cmd.op),
                     timers.offer[2].eq(OpcodeShape.REF), timers.issue.valid.eq(fire), timers.issue.which.eq(sel),
                     wait.offer[0].eq(heads[0].cmd.op), wait.offer[1].eq(heads[1].cmd.op)]
        for part in (wait, inflight):
            m.d.comb += [part.issue.valid.eq(fire & ~is_ref), part.issue.op.eq(out.cmd.op),
                         part.issue.seq.eq(chosen.seq)]
        m.d.comb += [inflight.offer[0].eq(heads[0].seq), inflight.offer[1].eq(heads[1].seq), inflight.which.eq(sel[0])]
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
                         table.scrub_free.eq(table.scrub.valid & completed_next(first, None))]
        for q, queue in enumerate(queues):
            m.d.comb += [queue.push.valid.eq(self.cmd_in.valid & (cls == q)),
                         queue.push.payload.cmd.eq(inp), queue.push.payload.seq.eq(seq),
                         queue.push.payload.dg.eq(dg.dep), queue.push.payload.do.eq(do.dep),
                         queue.pop.eq(fire & (sel == q))]
        with m.If(push):
            m.d.sync += seq.eq(seq + 1)

        blocked = static & ~wait.done               # a blocking RD-OUT's data is still on its way
        m.d.comb += self.idle.eq(~occupied[0] & ~occupied[1] & ~held & ~inflight.busy & ~blocked)

        # -- performance counters -------------------------------------------------------------------
        with m.If(fire & is_ref):
            m.d.sync += self.refreshes.eq(self.refreshes + 1)
        for k in range(CHANNEL_OPCODES):            # one enable per counter: no 32-bit multiplexer behind the choice
            with m.If(fire & ~is_ref & (op == k)):
                m.d.sync += self.issued[k].eq(self.issued[k] + 1)
        anything = occupied[0] | occupied[1] | refresh.pending
        with m.If(~fire):
            with m.If(~anything):
                m.d.sync += self.stall.idle.eq(self.stall.idle + 1)
            with m.Elif(valid):
                m.d.sync += self.stall.backpressure.eq(self.stall.backpressure + 1)
            with m.Elif(dep_wait.any()):
                m.d.sync += self.stall.dependency.eq(self.stall.dependency + 1)
            with m.Else():
                m.d.sync += self.stall.timing.eq(self.stall.timing + 1)
        return m
