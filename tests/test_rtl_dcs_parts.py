# amaranth: UnusedElaboratable=no
"""The DCS queue's components alone, in amaranth.sim, as LiteDRAM tests its timers: per-cycle input
strings in, per-cycle output strings compared (character ``i`` is clock cycle ``i``, sampled before its
edge)."""

from __future__ import annotations

import collections

import numpy as np
import pytest
from amaranth.lib import data
from amaranth.sim import Simulator
from helpers import run_cycles as run

from pimphony.rtl.dcs import (
    DEPENDENCY,
    CompletionWait,
    DependencyTable,
    InFlightTable,
    InOrderQueue,
    RefreshTimer,
    TimingCounters,
)
from pimphony.rtl.layouts import OpcodeShape


def op(k: int):
    return OpcodeShape(k)


def test_in_order_queue_is_a_fifo_with_a_registered_head():
    """Depth 4: a push into the empty queue is the head two cycles later (the RAM's registered read of
    what was written); ready is low while 4 are held (a pop frees a place from the next cycle); entries
    leave in order, each the head in the cycle after its predecessor's pop."""
    dut = InOrderQueue(data.ArrayLayout(8, 1), 4)
    pushes = "1111110000000"
    pops = "0000011110000"
    got = run(dut, {"push.valid": pushes, "push.payload": lambda c: [10 + c], "pop": pops},
              {"ready": lambda ctx: ctx.get(dut.push.ready), "valid": lambda ctx: ctx.get(dut.head_valid),
               "count": lambda ctx: ctx.get(dut.count),
               "head": lambda ctx: chr(ord("a") + ctx.get(dut.head)[0] - 10) if ctx.get(dut.head_valid) else "."},
              13)
    assert got["ready"] == "1111001111111"
    assert got["count"] == "0123443210000"
    assert got["valid"] == "0011111110000"
    assert got["head"] == "..aaaabcd...."        # e and f (cycles 4, 5) were refused: the queue was full


@pytest.mark.parametrize("depth", [2, 4])
def test_in_order_queue_matches_a_fifo_under_random_push_and_pop(depth):
    """Seeded random pushes and pops (pops only of a shown head): the head equals a Python deque's
    every cycle it is shown, it is shown whenever an entry was held after the previous cycle's pop,
    ``ready`` is "fewer than ``depth`` held", and the look-ahead is right: ``holds`` is "shown and not
    popped", and otherwise ``following`` is the next cycle's head."""
    dut = InOrderQueue(data.ArrayLayout(8, 1), depth)
    rng = np.random.default_rng(depth)
    seen = []

    async def bench(ctx):
        fifo: collections.deque[int] = collections.deque()
        shown, expected = False, None
        for cycle in range(400):
            assert ctx.get(dut.head_valid) == shown, cycle
            assert ctx.get(dut.push.ready) == (len(fifo) < depth), cycle
            if shown:
                assert ctx.get(dut.head)[0] == fifo[0], cycle
            if expected is not None:
                assert ctx.get(dut.head)[0] == expected, cycle
            push, pop = bool(rng.random() < 0.6), shown and bool(rng.random() < 0.5)
            ctx.set(dut.push.valid, push)
            ctx.set(dut.push.payload, [cycle % 256])
            ctx.set(dut.pop, pop)
            assert ctx.get(dut.holds) == (shown and not pop), cycle
            expected = None if ctx.get(dut.holds) else ctx.get(dut.following)[0]
            room = len(fifo) < depth                    # slots are counted at the start of the cycle
            if pop:
                seen.append(fifo.popleft())
            shown = bool(fifo)                          # held before this cycle's push: read at its edge
            if push and room:
                fifo.append(cycle % 256)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    assert len(seen) > 100


def test_in_order_queue_depth_error():
    with pytest.raises(ValueError, match=r"^depth must be a power of two and at least 2, got 3$"):
        InOrderQueue(data.ArrayLayout(8, 1), 3)


@pytest.mark.parametrize(("mode", "seen"), [(2, "0100"),     # DCS: one region per entry
                                          (1, "0110"),     # ping-pong: entries 2 and 3 are one half
                                          (0, "0000")])    # static: nothing is tracked
def test_dependency_table_regions_by_mode(mode, seen):
    """Entry 2 gets its writer in cycle 0; cycles 1, 2 and 3 look up entries 2, 3 and 0."""
    dut = DependencyTable(4, 2)
    got = run(dut, {"mode": lambda c: mode, "write": "1000", "uses": lambda c: 1,
                    "index": lambda c: (2, 2, 3, 0)[c], "seq": lambda c: 7, "cls": lambda c: 1},
              {"dep": lambda ctx: ctx.get(dut.dep.valid)}, 4)
    assert got["dep"] == seen


def test_dependency_table_records_and_scrubs():
    """A write fills its entry; the scrubber reads the entries round robin, one per cycle from entry 0,
    shows each on ``scrub`` the cycle after, and clears it at the edge after the one at the end of the
    cycle the parent says its command has completed."""
    dut = DependencyTable(4, 2)
    got = run(dut, {"mode": lambda c: 2, "write": "1000000000", "uses": lambda c: 1, "index": lambda c: 1,
                    "seq": lambda c: 7, "cls": lambda c: 1, "scrub_free": "0000001000"},
              {"dep": lambda ctx: ctx.get(dut.dep.seq) if ctx.get(dut.dep.valid) else ".",
               "scrub": lambda ctx: "v" if ctx.get(dut.scrub.valid) else "."}, 10)
    assert got == {"scrub": "..v...v...", "dep": ".7777777.."}
    assert DependencyTable.storage_bits(4) == 4 * DEPENDENCY.size


def test_dependency_table_scrub_spares_an_entry_written_meanwhile():
    """Entry 1 is written in cycle 0 and again in cycle 1, the cycle the scrubber reads it: the read is
    shown invalid. Read again in cycle 5, it is freed in cycle 6, but a write in cycle 6 replaces it:
    the free is dropped and the new accessor stays."""
    dut = DependencyTable(4, 2)
    got = run(dut, {"mode": lambda c: 2, "write": "1100001000", "uses": lambda c: 1, "index": lambda c: 1,
                    "seq": lambda c: c, "cls": lambda c: 1, "scrub_free": lambda c: 1},
              {"dep": lambda ctx: ctx.get(dut.dep.seq) if ctx.get(dut.dep.valid) else ".",
               "scrub": lambda ctx: "v" if ctx.get(dut.scrub.valid) else "."}, 10)
    assert got == {"scrub": "......v...", "dep": ".011111666"}


def test_dependency_table_size_error():
    with pytest.raises(ValueError, match=r"^entries \(5\) must equal 2\^2$"):
        DependencyTable(5, 2)


def test_in_flight_table_holds_a_command_for_its_latency():
    """Latencies (1, 4, 2): an opcode-1 command (seq 1) issued in cycle 1 is in flight in cycles 2 to 4
    (``busy``); ``pending`` looks one cycle ahead, so it is high in cycles 2 and 3 (in cycle 1 the
    command is issuing, not in a slot); an opcode-0 command (latency 1) is never pending. The compares
    are made a cycle ahead: query 0 names seq 1 throughout (kept), query 2 loads seq 1 in every cycle,
    query 1 names seq 4 until it loads seq 1 in cycle 2 (so it names it from cycle 3: pending in 3); a
    probe, compared in the cycle, names seq 1 from cycle 3 (pending in 3) and seq 4 before."""
    dut = InFlightTable([1, 4, 2], queries=3, probes=1)
    got = run(dut, {"issue.valid": "0100100", "issue.op": lambda c: op(1) if c == 1 else op(0),
                    "issue.seq": lambda c: c, "offer[0]": lambda c: c,
                    "query[0]": lambda c: 1, "keep[0]": lambda c: 1,
                    "query[1]": lambda c: 1 if c >= 3 else 4, "load[1]": lambda c: 1 if c >= 2 else 4,
                    "query[2]": lambda c: 1 if c >= 1 else 0, "load[2]": lambda c: 1,
                    "probe[0]": lambda c: 1 if c >= 3 else 4},
              {"q0": lambda ctx: ctx.get(dut.pending[0]), "q1": lambda ctx: ctx.get(dut.pending[1]),
               "q2": lambda ctx: ctx.get(dut.pending[2]), "p0": lambda ctx: ctx.get(dut.probe_pending[0]),
               "busy": lambda ctx: ctx.get(dut.busy)}, 7)
    assert got == {"q0": "0011000", "q1": "0001000", "q2": "0011000", "p0": "0001000", "busy": "0011100"}
    assert InFlightTable.storage_bits([1, 3, 2]) == 2 * (16 + 2)


def test_timing_counters_keep_each_gap():
    """gap = [[2, 3], [1, 4]]: after opcode 0 issues in cycle 1 (offered in cycle 0), opcode 0 may issue
    again in cycle 3 and opcode 1 in cycle 4; a later issue only raises a counter. ``ready_next`` says so
    a cycle ahead, of the opcode offered: one candidate offering opcode 0 and then opcode 1, and both
    opcodes offered as candidates with ``issue.which`` choosing."""
    dut = TimingCounters([[2, 3], [1, 4]])
    got = run(dut, {"issue.valid": "0100010000", "offer[0]": lambda c: op(0) if c == 0 else op(1)},
              {"n0": lambda ctx: ctx.get(dut.ready_next[0])}, 10)
    assert got == {"n0": "1001100011"}
    two = TimingCounters([[2, 3], [1, 4]], candidates=2)           # both offered; issue.which picks
    got = run(two, {"issue.valid": "0100010000", "issue.which": "0000010000", "offer[0]": lambda c: op(0),
                    "offer[1]": lambda c: op(1)},
              {"n0": lambda ctx: ctx.get(two.ready_next[0]), "n1": lambda ctx: ctx.get(two.ready_next[1])}, 10)
    assert got == {"n0": "1011111111", "n1": "1001100011"}


def test_completion_wait_and_refresh_timer():
    """The static gap after an opcode whose blocking time is 3 cycles; a refresh falls due every 4 cycles
    and is pending from the first PRE after that until the REF."""
    wait = CompletionWait([1, 3], candidates=2)        # candidate 0 offers opcode 0, candidate 1 opcode 1
    got = run(wait, {"issue.valid": "0100000", "issue.op": lambda c: op(1), "offer[0]": lambda c: op(0),
                     "offer[1]": lambda c: op(1)},
              {"done": lambda ctx: ctx.get(wait.done), "if0": lambda ctx: ctx.get(wait.done_after[0]),
               "if1": lambda ctx: ctx.get(wait.done_after[1]), "none": lambda ctx: ctx.get(wait.done_after[2])}, 7)
    assert got == {"done": "1100111", "if0": "1111111", "if1": "0000000", "none": "1101111"}
    timer = RefreshTimer(4)
    got = run(timer, {"pre": "0010001000000", "refreshed": "0000000001000"},
              {"pending": lambda ctx: ctx.get(timer.pending)}, 13)
    assert got["pending"] == "0000000111000"        # due from cycle 4; the PRE in cycle 2 was too early
