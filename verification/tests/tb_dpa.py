"""cocotb tests of the DPA controller (top ``dpa_controller``, built with
:func:`pimphony.verification.configs.dpa_testbench_config`). Parameters come from the environment:
``PIMPHONY_SEED`` (default: random, printed) and ``PIMPHONY_SCALE`` (operations per random run / 300)."""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from pimphony.model.dpa import DpaConfig, DpaOp, DpaOperation, load_program
from pimphony.model.isa import LOOP_ROW_UNIT, Format
from pimphony.model.kvcache import Status
from pimphony.model.perf.hub import HubPipeline
from pimphony.rtl.dpa import DpaController
from pimphony.verification.configs import dpa_testbench_config
from pimphony.verification.env import coverage
from pimphony.verification.env.dpa import DpaBench, OperationSource, error_cases, fetched_entries, testbench_program
from pimphony.verification.env.reset import hold_reset
from pimphony.verification.env.stats import RESET_INTERVAL, cycles_target, record

SEED = int(os.environ.get("PIMPHONY_SEED") or np.random.SeedSequence().entropy % (1 << 31))
SCALE = int(os.environ.get("PIMPHONY_SCALE", "1"))
CONFIG: DpaConfig = dpa_testbench_config()
_RTL = DpaController(CONFIG)
LAYOUTS = (_RTL.req_layout, _RTL.resp_layout, _RTL.ins_out.payload.shape())
FMT = Format.for_org(CONFIG.org)
PROGRAM = testbench_program(CONFIG)


async def start(dut) -> None:
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut)


async def reset(dut) -> None:
    """Drive every input to a defined value and hold reset for 3 cycles."""
    await hold_reset(dut, {"mgmt__valid": 0, "mgmt__payload": 0, "resp__ready": 0, "ins_out__ready": 0})
    await RisingEdge(dut.clk)


def report(dut, bench: DpaBench, label: str) -> None:
    sb = bench.scoreboard
    errors = sb.errors + ([f"{len(sb.expected)} operations never answered"] if sb.expected else [])
    dut._log.info(f"{label}: seed {SEED}, {len(sb.responses)} responses, {sb.instructions} instructions, "
                  f"{len(errors)} errors")
    coverage.export()
    assert not errors, f"{label} (replay with PIMPHONY_SEED={SEED}):\n" + "\n".join(errors[:20])


async def no_leak(dut, bench: DpaBench, source: OperationSource) -> None:
    """Close every request; the free list must then hold every chunk, exactly once. Shown at the pins:
    the response's free count is the pool, and requests that take the whole pool again translate
    their virtual chunks to a permutation of all physical chunks."""
    await bench.run(source.close_all())
    assert bench.scoreboard.responses[-1].free == CONFIG.n_chunks, "chunks leaked: the free count is short"
    lay = CONFIG.layout
    per_request = 2 * CONFIG.segments * CONFIG.max_chunks_per_segment
    takers = CONFIG.n_chunks // per_request
    ops = [DpaOperation(DpaOp.OPEN, 100 + i, arg=CONFIG.max_tokens) for i in range(takers)]
    ops += [DpaOperation(DpaOp.TRANSLATE, 100 + i, seg, kv, vc * (lay.k_tokens if kv == 0 else lay.v_tokens))
            for i in range(takers) for seg in range(CONFIG.segments) for kv in range(2)
            for vc in range(CONFIG.max_chunks_per_segment)]
    start = len(bench.scoreboard.responses)
    await bench.run(ops)
    got = bench.scoreboard.responses[start:]
    assert all(r.status == Status.OK for r in got), "the pool could not be taken whole again"
    chunks = sorted(r.chunk for r in got[takers:])
    assert chunks == list(range(CONFIG.n_chunks)), "a chunk is missing or held twice"
    await bench.run([DpaOperation(DpaOp.CLOSE, 100 + i) for i in range(takers)])
    assert bench.scoreboard.responses[-1].free == CONFIG.n_chunks


@cocotb.test()
async def every_error_status(dut):
    """Each error path answers the status the specification gives, and changes no state."""
    await start(dut)
    bench = DpaBench(dut, CONFIG, LAYOUTS, np.random.default_rng(SEED), idle=0.2, backpressure=0.3)
    await bench.wait_ready(4 * CONFIG.n_chunks)
    cases = error_cases(CONFIG)
    await bench.run([op for op, _ in cases])
    report(dut, bench, "error paths")
    got = [r.status for r in bench.scoreboard.responses]
    assert got == [s for _, s in cases], f"statuses {got}"
    for prev, (r, (op, _)) in zip(bench.scoreboard.responses, zip(bench.scoreboard.responses[1:], cases[1:],
                                                                   strict=True), strict=False):
        assert r.status == Status.OK or r.free == prev.free, f"{op} failed but changed the free list"


@cocotb.test()
async def random_operations_with_idle_and_backpressure(dut):
    """Random open / append / close / translate / run over many requests: at least 300 operations and
    until the table has been full, the pool exhausted and a length refused; 20% idle operation slots,
    30% back-pressure; then the no-leak check."""
    await start(dut)
    rng = np.random.default_rng(SEED)
    bench = DpaBench(dut, CONFIG, LAYOUTS, rng, idle=0.2, backpressure=0.3)
    init = await bench.wait_ready(4 * CONFIG.n_chunks)
    # reset() returns one cycle after reset falls; the free list is rebuilt in one cycle per chunk
    assert init + 1 == CONFIG.n_chunks, f"the free list took {init + 1} cycles to rebuild"
    source = OperationSource(CONFIG, rng)
    await bench.run(load_program(PROGRAM, FMT))
    wanted = {Status.OK, Status.OUT_OF_CHUNKS, Status.UNKNOWN_REQUEST, Status.TABLE_FULL, Status.PAST_END}
    ops = 0
    while ops < 300 * SCALE or (not wanted <= {r.status for r in bench.scoreboard.responses} and ops < 2000 * SCALE):
        await bench.run([source.next() for _ in range(50)])                # until every wanted status came
        ops += 50
    missing = wanted - {r.status for r in bench.scoreboard.responses}
    assert not missing, f"{ops} random operations never answered {sorted(s.name for s in missing)}"
    await no_leak(dut, bench, source)
    report(dut, bench, "random operations")


@cocotb.test()
async def every_run_ends_answered_under_heavy_idle(dut):
    """The bench's end of run: with the host idle in 90% of the cycles and 50% back-pressure, every run
    of one to three operations returns only when each was taken and answered (a run that ended with
    its last operation still waiting in an idle gap dropped it; the random tests hit that rarely)."""
    await start(dut)
    rng = np.random.default_rng(SEED + 2)
    bench = DpaBench(dut, CONFIG, LAYOUTS, rng, idle=0.9, backpressure=0.5)
    await bench.wait_ready(4 * CONFIG.n_chunks)
    sb = bench.scoreboard
    for i in range(40):
        ops = [DpaOperation(DpaOp.OPEN, i, arg=1 + int(rng.integers(CONFIG.layout.k_tokens))),
               DpaOperation(DpaOp.TRANSLATE, i, 0, 0, 0), DpaOperation(DpaOp.CLOSE, i)][:1 + int(rng.integers(3))]
        answered = len(sb.responses)
        accepted = await bench.run(ops)
        assert accepted == len(ops) and len(sb.responses) - answered == len(ops) and not sb.expected, (
            f"run {i}: {len(ops)} operations, {accepted} taken, {len(sb.responses) - answered} answered "
            f"(replay with PIMPHONY_SEED={SEED})")
        await bench.run([DpaOperation(DpaOp.CLOSE, i)] if len(ops) < 3 else [])
    report(dut, bench, "runs under heavy idle")


@cocotb.test()
async def reset_in_mid_stream(dut):
    """Resets land while a RUN streams instructions and while chunks are being allocated; the controller
    comes back empty (every chunk free, no program) and runs clean, leaking nothing."""
    await start(dut)
    rng = np.random.default_rng(SEED + 1)
    bench = DpaBench(dut, CONFIG, LAYOUTS, rng, backpressure=0.2)
    await bench.wait_ready(4 * CONFIG.n_chunks)
    sb = bench.scoreboard
    long_run = [*load_program(PROGRAM, FMT), DpaOperation(DpaOp.OPEN, 1, arg=3 * CONFIG.layout.k_tokens),
                DpaOperation(DpaOp.RUN, 1)]
    cuts = (("a RUN", long_run, lambda: sb.instructions >= 50),                          # instructions flowing
            ("an OPEN", [DpaOperation(DpaOp.OPEN, 2, arg=CONFIG.max_tokens)],
             lambda: sb.expected and bench.cycle - bench.accept_cycle >= 4))               # chunks being taken
    for label, ops, stop in cuts:
        sb.instructions = 0
        accepted = await bench.run(ops, stop=stop)
        assert accepted == len(ops) and sb.expected, f"the reset must land inside {label}"
        await reset(dut)
        await ReadOnly()
        assert not int(dut.ins_out__valid.value) and not int(dut.resp__valid.value), "outputs must clear on reset"
        sb.reset()
        await RisingEdge(dut.clk)
        await bench.wait_ready(4 * CONFIG.n_chunks)
        await bench.run([DpaOperation(DpaOp.RUN, 1), DpaOperation(DpaOp.OPEN, 3, arg=5)])
        assert [r.status for r in sb.responses[-2:]] == [Status.UNKNOWN_REQUEST, Status.OK], \
            f"after a reset inside {label}: requests must not survive, the pool must be whole"
        assert sb.responses[-1].free == CONFIG.n_chunks - 2 * CONFIG.segments
        await bench.run([DpaOperation(DpaOp.CLOSE, 3)])
    source = OperationSource(CONFIG, rng)
    await bench.run([*load_program(PROGRAM, FMT), *(source.next() for _ in range(60 * SCALE))])
    await no_leak(dut, bench, source)
    report(dut, bench, "reset in mid-stream")


def guard_lengths(config: DpaConfig) -> list[int]:
    """Request lengths at the Dyn-Loop guards' edges: one below, at and above multiples of a bank's
    tokens (the K guard: a channel's first token against the end), of a burst (the V guard) and of a
    loop row's tokens, up to two chunks."""
    org, row = config.org, PROGRAM.qk[0].row * LOOP_ROW_UNIT
    steps = sorted({org.banks, org.burst_elements, org.banks * org.channels, row})
    edges = {n * k + d for n in steps for k in (1, 2, 3, 7) for d in (-1, 0, 1)}
    return sorted(x for x in edges if 0 < x <= 2 * config.layout.k_tokens)


@cocotb.test()
async def run_at_guard_edges(dut):
    """RUN requests whose lengths sit at the edges of the K and V guards (:func:`guard_lengths`), with
    30% back-pressure: every instruction's channel mask and size equal the golden decoder's."""
    await start(dut)
    bench = DpaBench(dut, CONFIG, LAYOUTS, np.random.default_rng(SEED), backpressure=0.3)
    await bench.wait_ready(4 * CONFIG.n_chunks)
    await bench.run(load_program(PROGRAM, FMT))
    lengths = guard_lengths(CONFIG)
    for n in lengths:
        await bench.run([DpaOperation(DpaOp.OPEN, 1, arg=n), DpaOperation(DpaOp.RUN, 1, segment=n % CONFIG.segments),
                         DpaOperation(DpaOp.CLOSE, 1)])
    assert [r.status for r in bench.scoreboard.responses[-3 * len(lengths):]] == [Status.OK] * 3 * len(lengths)
    report(dut, bench, f"guard edges ({len(lengths)} lengths)")


@cocotb.test()
async def run_sustains_one_entry_per_cycle(dut):
    """A long RUN with ``ready`` high decodes one buffer entry per cycle: the response comes ``fetched``
    cycles plus the controller's documented pipeline (:class:`~pimphony.model.perf.hub.HubPipeline`:
    to the first fetch, from a fetch to the output, the answer) after the operation is offered."""
    await start(dut)
    bench = DpaBench(dut, CONFIG, LAYOUTS, np.random.default_rng(SEED))
    await bench.wait_ready(4 * CONFIG.n_chunks)
    length = 3 * CONFIG.layout.k_tokens + 5
    await bench.run([*load_program(PROGRAM, FMT), DpaOperation(DpaOp.OPEN, 1, arg=length)])
    start_cycle = bench.cycle
    await bench.run([DpaOperation(DpaOp.RUN, 1)])
    fetched = fetched_entries(PROGRAM, PROGRAM.block_tokens, length)
    pipe = HubPipeline()
    expected = fetched + pipe.run_to_fetch + pipe.fetch_to_present + 1
    assert bench.cycle - start_cycle == expected, f"{bench.cycle - start_cycle} cycles for {fetched} entries"
    report(dut, bench, "throughput")


@cocotb.test(skip=not cycles_target())
async def stress(dut):
    """Random operation streams until ``PIMPHONY_CYCLES`` cycles have run (the stress suite). Each
    stream follows a reset (the free list rebuilds), with idle and back-pressure drawn from the seed;
    half are cut by a reset at a random cycle (inside a RUN or an allocation as it falls), the others
    close every request and must find the whole pool free (leaked chunks are counted). No stretch
    between resets is longer than RESET_INTERVAL cycles."""
    target = cycles_target()
    rng = np.random.default_rng(SEED)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    totals = dict.fromkeys(("cycles", "responses", "resets", "lost", "duplicated", "illegal", "leaked"), 0)
    errors: list[str] = []
    streams = 0
    while totals["cycles"] < target and len(errors) < 20:
        await reset(dut)
        totals["resets"] += 1
        bench = DpaBench(dut, CONFIG, LAYOUTS, rng, idle=float(rng.uniform(0, 0.6)),
                         backpressure=float(rng.uniform(0, 0.5)))
        await bench.wait_ready(4 * CONFIG.n_chunks)
        source = OperationSource(CONFIG, rng)
        ops = [*load_program(PROGRAM, FMT), *(source.next() for _ in range(int(rng.integers(20, 400))))]
        limit = min(RESET_INTERVAL // 2, target - totals["cycles"] + 1)
        cut = int(rng.integers(1, limit)) if rng.random() < 0.5 else limit
        await bench.run(ops, stop=lambda b=bench, c=cut: b.cycle >= c)
        sb = bench.scoreboard
        finished = bench.cycle < cut
        if finished:
            await bench.run(source.close_all(), max_cycles=RESET_INTERVAL // 2)
            if sb.responses:
                totals["leaked"] += CONFIG.n_chunks - sb.responses[-1].free
            totals["lost"] += len(sb.expected)
        duplicated = sum(e.endswith("to no operation") for e in sb.errors)
        totals["duplicated"] += duplicated
        totals["illegal"] += len(sb.errors) - duplicated
        totals["responses"] += len(sb.responses)
        totals["cycles"] += bench.cycle + 3
        errors += [f"stream {streams}: {e}" for e in sb.errors]
        if finished and totals["leaked"]:
            errors.append(f"stream {streams}: {totals['leaked']} chunks leaked")
        streams += 1
    record(**totals)
    coverage.export()
    dut._log.info(f"stress: seed {SEED}, {streams} streams, " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    assert not errors, f"stress (replay with PIMPHONY_SEED={SEED}):\n" + "\n".join(errors[:20])
