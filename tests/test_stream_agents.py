"""The stream agents of ``verification/env/stream.py``: a source and a sink around a FIFO in amaranth.sim
keep the stream rules under seeded idle and back-pressure patterns; the cocotb binding packs and
unpacks payloads with the port's layout."""

from __future__ import annotations

import itertools

import pytest
from amaranth.lib import data
from amaranth.lib.fifo import SyncFIFO
from amaranth.sim import Simulator

from pimphony.verification.env.stream import CocotbPort, EpuBarrier, Gaps, SimPort, Sink, Source


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_source_and_sink_move_every_item_in_order_under_gaps(seed):
    """40 items through a 4-deep FIFO with idle cycles at the source and back-pressure at the sink: all
    arrive in order, and the source never drops valid or changes the payload while an item waits."""
    fifo = SyncFIFO(width=8, depth=4)
    source = Source(SimPort(fifo.w_stream), idle=Gaps(0.3, seed, log=None))
    sink = Sink(SimPort(fifo.r_stream), ready=Gaps(0.5, seed + 100, log=None))
    for item in range(40):
        source.send(item)
    got, offers = [], []

    async def bench(ctx):
        for cycle in range(400):
            taken = source.step(ctx, cycle)
            offers.append((ctx.get(fifo.w_stream.valid), ctx.get(fifo.w_stream.payload), taken is not None))
            item = sink.step(ctx, cycle)
            if item is not None:
                got.append(item)
            await ctx.tick()

    sim = Simulator(fifo)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == list(range(40))
    for (valid, payload, taken), (next_valid, next_payload, _) in itertools.pairwise(offers):
        if valid and not taken:
            assert next_valid and next_payload == payload        # held until taken


def test_gaps_are_replayable_and_log_their_seed():
    lines = []
    a = Gaps(0.4, log=lines.append, name="idle")
    b = Gaps(0.4, seed=a.seed, log=None)
    assert [a(c) for c in range(200)] == [b(c) for c in range(200)]
    assert lines == [f"idle: rate 0.4, seed {a.seed}"]
    assert 40 < sum(a(c) for c in range(200)) < 120
    with pytest.raises(ValueError, match=r"^rate must be in \[0, 1\), got 1$"):
        Gaps(1)


class _Handle:
    def __init__(self):
        self.value = 0


class _Top:
    """Stands in for a cocotb top: the three signals of one stream port."""

    def __init__(self, name: str):
        for part in ("valid", "ready", "payload"):
            setattr(self, f"{name}__{part}", _Handle())


def test_cocotb_binding_packs_and_unpacks_with_the_layout():
    layout = data.StructLayout({"a": 3, "b": 5, "c": 1})
    top = _Top("cmd")
    port = CocotbPort(top, "cmd", layout)
    source = Source(port)
    source.send({"a": 5, "b": 17, "c": 1})
    top.cmd__ready.value = 1
    assert source.step(None, 0) == {"a": 5, "b": 17, "c": 1}
    assert top.cmd__valid.value == 1 and top.cmd__payload.value == 5 | 17 << 3 | 1 << 8
    sink = Sink(port)
    assert sink.step(None, 0) == {"a": 5, "b": 17, "c": 1}


def test_epu_barrier_takes_a_barrier_after_the_epu_cycles():
    barrier = EpuBarrier(2)
    assert [barrier.step(o) for o in (False, True, True, True, True, False, True)] == \
        [False, False, False, True, False, False, False]


def test_bench_patterns_and_a_cleared_source():
    """The benches' patterns: none at rate 0, a seeded one otherwise (ready is the complement of the
    stalled cycles); a cleared source drops what it offered and lowers valid."""
    import numpy as np

    from pimphony.verification.env.stream import idle_pattern, ready_pattern

    rng = np.random.default_rng(7)
    assert idle_pattern(0, rng) is None and ready_pattern(0, rng) is None
    ready = ready_pattern(0.25, rng)
    assert 130 < sum(ready(c) for c in range(200)) < 170
    top = _Top("cmd")
    source = Source(CocotbPort(top, "cmd", data.StructLayout({"a": 4})))
    source.send({"a": 1})
    source.send({"a": 2})
    assert source.step(None, 0) is None and top.cmd__valid.value == 1        # not ready: held
    source.clear()
    source.drive(None, 1)
    assert top.cmd__valid.value == 0 and not source.busy
