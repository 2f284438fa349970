"""cocotb tests of the DCS queue (top ``dcs_queue``). Parameters come from the environment:
``PIMPHONY_SEED`` (default: random, printed) and ``PIMPHONY_SCALE`` (stream length factor)."""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from pimphony.model.config import DEFAULT_MODULE, DEFAULT_TIMING, ModuleOrg, TimingPreset
from pimphony.model.isa import Command, Opcode, channel_stream, from_commands
from pimphony.model.policies import issue_cycles
from pimphony.model.queue import Policy, QueueConfig
from pimphony.scheduler.dcs_experiments import attention_program
from pimphony.scheduler.lower import command_streams, lower_gemv
from pimphony.verification.env import coverage
from pimphony.verification.env.dcs import DcsBench, Workload
from pimphony.verification.env.reset import hold_reset
from pimphony.verification.env.stats import RESET_INTERVAL, cycles_target, record

ORG = ModuleOrg.load(DEFAULT_MODULE)
AIM = TimingPreset.load(DEFAULT_TIMING)
SEED = int(os.environ.get("PIMPHONY_SEED") or np.random.SeedSequence().entropy % (1 << 31))
SCALE = int(os.environ.get("PIMPHONY_SCALE", "1"))


async def start(dut, policy: Policy = Policy.DCS) -> None:
    """Start the clock and reset."""
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await reset(dut, policy)


async def reset(dut, policy: Policy = Policy.DCS) -> None:
    """Drive every input to a defined value and hold reset for 3 cycles; return right after the last
    reset edge, so that the next cycle is cycle 0 of the reference engine (its refresh timer starts
    there)."""
    await hold_reset(dut, {"mode": int(policy), "cmd_in__valid": 0, "cmd_in__payload": 0, "cmd_out__ready": 0})


def report(dut, bench: DcsBench, label: str) -> None:
    errors = bench.scoreboard.final()
    dut._log.info(f"{label}: seed {SEED}, {bench.scoreboard.issued} commands, {bench.scoreboard.refreshes} refreshes, "
                  f"{len(errors)} errors")
    coverage.export()
    assert not errors, f"{label} (replay with PIMPHONY_SEED={SEED}):\n" + "\n".join(errors[:20])


def random_stream(rng: np.random.Generator, chains: int) -> np.ndarray:
    """Accumulation chains on random OBuf entries over random GBuf entries; some writes are overwritten
    before they are read (a WAW on the entry), some GBuf entries are reused without a new write."""
    cmds = [Command(Opcode.ACT, row=7)]
    for _ in range(chains):
        e = int(rng.integers(0, ORG.obuf_entries))
        if rng.random() < 0.15:
            cmds.append(Command(Opcode.WR_BIAS, obuf=e, gpr=int(rng.integers(1, 200))))
        cmds.append(Command(Opcode.WR_BIAS, obuf=e, gpr=0))
        for _ in range(int(rng.integers(1, 6))):
            g = int(rng.integers(0, ORG.gbuf_entries))
            if rng.random() < 0.7:
                if rng.random() < 0.15:
                    cmds.append(Command(Opcode.WR_INP, gbuf=g, gpr=int(rng.integers(1, 200))))
                cmds.append(Command(Opcode.WR_INP, gbuf=g, gpr=int(rng.integers(1, 200))))
            cmds.append(Command(Opcode.MAC, row=7, col=int(rng.integers(0, 64)), gbuf=g, obuf=e))
        cmds.append(Command(Opcode.RD_OUT, obuf=e, gpr=int(rng.integers(200, 400))))
        if rng.random() < 0.1:
            cmds += [Command(Opcode.PRE), Command(Opcode.ACT, row=7)]
    cmds.append(Command(Opcode.PRE))
    return from_commands(cmds)


def channel0(instructions) -> np.ndarray:
    return channel_stream(instructions, 0)


def attention_head(length: int) -> np.ndarray:
    """Channel 0's share of one GQA (g=4) attention head, QK^T and SV."""
    return command_streams(attention_program(ORG, 4, length, ORG.obuf_entries), ORG.channels)[0]


@cocotb.test()
async def attention_head_cycle_exact(dut):
    """An attention head through the queue (DCS, no idle, no back-pressure): data equal the in-order
    golden channel and every command issues on the reference engine's cycle."""
    await start(dut)
    stream = attention_head(2000 * SCALE)
    bench = DcsBench(dut, ORG, AIM, Policy.DCS, Workload(ORG, stream, SEED), SEED)
    await bench.run(max_cycles=2_000_000)
    report(dut, bench, "attention head")
    cfg = QueueConfig.rtl_default(ORG)
    ref = issue_cycles(stream["op"], stream["gbuf"], stream["obuf"], AIM, cfg)
    assert bench.cycles == sorted(ref.cycles.tolist()), "RTL and reference engine issue on different cycles"


@cocotb.test()
async def gemv_every_policy(dut):
    """A 256 x 256 GEMV under static, ping-pong and DCS, each after a reset, equals the in-order result."""
    stream = channel0(lower_gemv(ORG, 256, 256, ORG.obuf_entries))
    cycles = {}
    await start(dut)
    for policy in Policy:
        await reset(dut, policy)
        bench = DcsBench(dut, ORG, AIM, policy, Workload(ORG, stream, SEED), SEED)
        cycles[policy] = await bench.run(max_cycles=1_000_000)
        report(dut, bench, f"GEMV {policy.name}")
    assert cycles[Policy.DCS] < cycles[Policy.STATIC]


@cocotb.test()
async def random_traffic_with_idle_and_backpressure(dut):
    """Random chains under every policy, twice: 30% idle input cycles and 40% back-pressure (the queues
    fill), then 85% idle input cycles (they run nearly empty); static issue a third time with 97% idle
    cycles, so that its one queue also issues MACs and RD-OUTs it holds alone (it waits for every
    command to complete, so at 85% its queue still fills behind an ACT)."""
    rng = np.random.default_rng(SEED)
    await start(dut)
    for policy in Policy:
        sparse = [(6, 0.97, 0.0)] if policy == Policy.STATIC else []
        for chains, idle, backpressure in [(60, 0.3, 0.4), (15, 0.85, 0.0), *sparse]:
            await reset(dut, policy)
            stream = random_stream(rng, chains * SCALE)
            bench = DcsBench(dut, ORG, AIM, policy, Workload(ORG, stream, SEED), SEED + int(policy), idle=idle,
                             backpressure=backpressure)
            await bench.run(max_cycles=2_000_000)
            report(dut, bench, f"random traffic {policy.name}, {idle:.0%} idle")


@cocotb.test()
async def reset_in_mid_stream(dut):
    """Reset while commands are queued and in flight; nothing from before the reset comes out after it,
    and a new stream then runs clean."""
    await start(dut)
    rng = np.random.default_rng(SEED + 1)
    first = DcsBench(dut, ORG, AIM, Policy.DCS, Workload(ORG, random_stream(rng, 40), SEED), SEED, idle=0.1)
    await first.run(max_cycles=100_000, stop_after=150)
    assert 0 < first.scoreboard.issued < first.scoreboard.n, "the reset must land mid-stream"
    await reset(dut)
    await ReadOnly()
    assert int(dut.cmd_out__valid.value) == 0, "the queue must be empty after reset"
    await RisingEdge(dut.clk)
    second = DcsBench(dut, ORG, AIM, Policy.DCS, Workload(ORG, random_stream(rng, 40), SEED + 2), SEED + 2,
                      backpressure=0.2)
    await second.run(max_cycles=200_000)
    report(dut, second, "after reset")


@cocotb.test(skip=not cycles_target())
async def stress(dut):
    """Random streams until ``PIMPHONY_CYCLES`` cycles have run (the stress suite): every stream starts
    after a reset, half of them are cut by a reset at a random cycle, no stretch between resets is
    longer than RESET_INTERVAL cycles; policy, stream (random chains, or an attention head of random
    length and group), idle and back-pressure are drawn from the seed. Every issued command is checked
    against the rules, the hazards and its queue's order; a finished stream also for nothing lost and
    for its data."""
    target = cycles_target()
    rng = np.random.default_rng(SEED)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    totals = dict.fromkeys(("cycles", "commands", "resets", "lost", "duplicated", "illegal"), 0)
    errors: list[str] = []
    streams = 0
    while totals["cycles"] < target and len(errors) < 20:
        policy = Policy(int(rng.integers(0, len(Policy))))
        await reset(dut, policy)
        totals["resets"] += 1
        totals["cycles"] += 3
        if rng.random() < 0.2:
            group = int(rng.choice([1, 2, 4, 8]))
            stream = command_streams(attention_program(ORG, group, int(rng.integers(16, 3000)), ORG.obuf_entries),
                                     ORG.channels)[0]
        else:
            stream = random_stream(rng, int(rng.integers(5, 150)))
        seed = int(rng.integers(1 << 31))
        bench = DcsBench(dut, ORG, AIM, policy, Workload(ORG, stream, seed), seed, idle=float(rng.uniform(0, 0.85)),
                         backpressure=float(rng.uniform(0, 0.5)))
        budget = min(RESET_INTERVAL - 3, target - totals["cycles"] + 1)
        cut = int(rng.integers(1, budget)) if rng.random() < 0.5 else None
        totals["cycles"] += await bench.run(max_cycles=budget, stop_after=cut)
        sb = bench.scoreboard
        finished = sb.issued == sb.n
        found = sb.final() if finished else list(sb.errors)
        errors += [f"stream {streams} ({policy.name}): {e}" for e in found]
        totals["commands"] += sb.issued
        totals["illegal"] += sb.illegal
        totals["duplicated"] += sb.duplicated
        totals["lost"] += sb.lost if finished else 0
        streams += 1
    record(**totals)
    coverage.export()
    dut._log.info(f"stress: seed {SEED}, {streams} streams, " + ", ".join(f"{k} {v}" for k, v in totals.items()))
    assert not errors, f"stress (replay with PIMPHONY_SEED={SEED}):\n" + "\n".join(errors[:20])
