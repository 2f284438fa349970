"""cocotb system tests of the hub (top ``pim_hub``, built with
:func:`pimphony.verification.configs.hub_testbench_config`: 4 channels). ``PIMPHONY_SEED`` (default:
random, printed) seeds the data and the back-pressure."""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock

from pimphony.model.config import DEFAULT_TIMING, ModelConfig, TimingPreset
from pimphony.model.queue import Policy, QueueConfig
from pimphony.rtl.hub import PimHub
from pimphony.verification.configs import hub_testbench_config
from pimphony.verification.env import coverage
from pimphony.verification.env.hub import AttentionOnHub, HubBench, HubLayouts, PlainAttentionOnHub, reset_hub
from pimphony.verification.env.stats import cycles_target, record

SEED = int(os.environ.get("PIMPHONY_SEED") or np.random.SeedSequence().entropy % (1 << 31))
CONFIG = hub_testbench_config()
AIM = TimingPreset.load(DEFAULT_TIMING)
QUEUE = QueueConfig.rtl_default(CONFIG.org)
_HUB = PimHub(CONFIG, AIM, QUEUE)
LAYOUTS = HubLayouts.of(_HUB)


def layer(heads: int, kv_heads: int) -> ModelConfig:
    return ModelConfig.from_mapping({"name": f"h{heads}-kv{kv_heads}", "values": {
        "layers": 1, "heads": heads, "kv_heads": kv_heads, "head_dim": CONFIG.head_dim, "context": 1 << 16}},
        "hub testbench")


async def attention(dut, heads: int, kv_heads: int, policy: Policy, backpressure: float,
                    partition: str = "tcp-dpa", lengths: tuple[int, ...] = (301, 1029), steps: int = 1) -> int:
    """Two requests of odd lengths. ``tcp-dpa``: through the DPA controller, with decode steps and an
    APPEND between rounds of RUNs; ``hfp`` or ``tcp``: the plain lowering through the ``ins`` port."""
    await reset_hub(dut, CONFIG.org.channels, policy)
    rng = np.random.default_rng(SEED)
    if partition == "tcp-dpa":
        work = AttentionOnHub(layer(heads, kv_heads), CONFIG, list(lengths), steps=steps, seed=SEED)
    else:
        work = PlainAttentionOnHub(layer(heads, kv_heads), CONFIG.org, list(lengths), SEED, partition)
    bench = HubBench(dut, work, LAYOUTS, AIM, QUEUE.obuf_dual_port, rng, backpressure=backpressure)
    cycles = await bench.run(work.operations())
    ratios = work.error_ratios()
    label = f"h={heads} kv={kv_heads} {partition} {policy.name}"
    dut._log.info(f"{label}: seed {SEED}, {cycles} cycles, {bench.commands} commands, error/bound "
                  f"{max(ratios):.3g}, {work.mismatches()} outputs differ from the golden model, "
                  f"{len(bench.errors + work.errors)} errors")
    coverage.export()
    problems = bench.errors + work.errors
    assert not problems, f"{label} (replay with PIMPHONY_SEED={SEED}):\n" + "\n".join(problems[:20])
    assert all(r["status"] == 0 for r in bench.responses), f"{label}: an operation failed"
    assert work.mismatches() == 0, f"{label}: {work.mismatches()} outputs differ from the golden model's"
    assert max(ratios) <= 1.0, f"{label}: outputs outside the error bound ({ratios})"
    return cycles


@cocotb.test()
async def gqa_attention_every_policy(dut):
    """GQA (g = 2) decode attention through the hub under static, ping-pong and DCS issue: outputs of
    both decode steps within the bound of the float64 reference, every command legal, DCS faster than
    ping-pong and ping-pong no slower than static; the cycles of all three are logged."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    cycles = {p: await attention(dut, 4, 2, p, 0.0) for p in Policy}
    dut._log.info("cycles: " + ", ".join(f"{p.name} {c}" for p, c in cycles.items())
                  + f"; DCS speed-up over static {cycles[Policy.STATIC] / cycles[Policy.DCS]:.2f}x")
    assert cycles[Policy.DCS] < cycles[Policy.PINGPONG] <= cycles[Policy.STATIC], cycles


@cocotb.test()
async def mha_attention_with_backpressure(dut):
    """MHA decode attention through the hub under DCS with 30% back-pressure on every channel."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await attention(dut, 2, 2, Policy.DCS, 0.3)


@cocotb.test()
async def hfp_and_tcp_on_the_same_workload(dut):
    """GQA (g = 2) decode attention, head-first (plain instructions on ``ins``) under static and DCS
    issue, and token-centric (DPA) under DCS, on the same requests: every output bit-exact against the
    golden model and within the bound; TCP, which keeps every channel busy, is the fastest."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    lengths = (301, 517)
    cycles = {(part, p): await attention(dut, 4, 2, p, 0.0, part, lengths, steps=0)
              for part, p in (("hfp", Policy.STATIC), ("hfp", Policy.DCS), ("tcp-dpa", Policy.DCS))}
    dut._log.info("cycles: " + ", ".join(f"{part} {p.name} {c}" for (part, p), c in cycles.items())
                  + f"; TCP+DCS over HFP+static {cycles['hfp', Policy.STATIC] / cycles['tcp-dpa', Policy.DCS]:.2f}x")
    assert cycles["hfp", Policy.DCS] < cycles["hfp", Policy.STATIC]
    assert cycles["tcp-dpa", Policy.DCS] < cycles["hfp", Policy.DCS]


@cocotb.test(skip=not cycles_target())
async def stress(dut):
    """Random decode-attention workloads through the hub until ``PIMPHONY_CYCLES`` cycles have run (the
    stress suite): after a reset each, MHA or GQA, one or two requests of random lengths, zero or one
    decode step, a random policy and back-pressure, all drawn from the seed. Every command is checked
    against the rules on its channel, every response and output against the golden model."""
    target = cycles_target()
    rng = np.random.default_rng(SEED)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    totals = dict.fromkeys(("cycles", "commands", "responses", "resets", "illegal"), 0)
    errors: list[str] = []
    runs = 0
    while totals["cycles"] < target and len(errors) < 20:
        policy = Policy(int(rng.integers(0, len(Policy))))
        await reset_hub(dut, CONFIG.org.channels, policy)
        totals["resets"] += 1
        heads, kv_heads = [(2, 1), (2, 2), (4, 2), (4, 1)][int(rng.integers(0, 4))]
        lengths = [int(x) for x in rng.integers(16, 700, size=int(rng.integers(1, 3)))]
        seed = int(rng.integers(1 << 31))
        work = AttentionOnHub(layer(heads, kv_heads), CONFIG, lengths, steps=int(rng.integers(0, 2)), seed=seed)
        bench = HubBench(dut, work, LAYOUTS, AIM, QUEUE.obuf_dual_port, np.random.default_rng(seed),
                         backpressure=float(rng.uniform(0, 0.4)))
        totals["cycles"] += await bench.run(work.operations())
        problems = bench.errors + work.errors
        problems += [f"operation {i} failed" for i, r in enumerate(bench.responses) if r["status"] != 0]
        if work.mismatches():
            problems.append(f"{work.mismatches()} outputs differ from the golden model")
        if max(work.error_ratios()) > 1.0:
            problems.append(f"outputs outside the error bound ({max(work.error_ratios()):.3g})")
        totals["commands"] += bench.commands
        totals["responses"] += len(bench.responses)
        totals["illegal"] += len(problems)
        errors += [f"run {runs} (h={heads} kv={kv_heads} {lengths} {policy.name}): {p}" for p in problems]
        runs += 1
    record(**totals)
    coverage.export()
    dut._log.info(f"stress: seed {SEED}, {runs} workloads, " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    assert not errors, f"stress (replay with PIMPHONY_SEED={SEED}):\n" + "\n".join(errors[:20])
