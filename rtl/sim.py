"""Drive a :class:`~pimphony.rtl.dcs.DcsQueue` in amaranth.sim with a command stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from pimphony.model.isa import CHANNEL_OPCODES, Opcode

from .dcs import DcsQueue
from .layouts import OpcodeShape


@dataclass
class SimResult:
    """What the queue issued: cycle, sequence number and opcode of each issue, in issue order."""

    cycles: list[int]
    seqs: list[int]
    ops: list[int]
    refresh: list[bool]
    counters: dict[str, int]


def simulate_queue(dut: DcsQueue, stream: np.ndarray, mode: int, ready_pattern=None, max_cycles: int = 1_000_000,
                   vcd: str | None = None) -> SimResult:
    """Feed ``stream`` (one command offered per cycle, as soon as accepted) and collect the issues.

    ``ready_pattern(cycle) -> bool`` drives ``cmd_out.ready`` (always ready by default). Cycle 0 is
    the first clock cycle after reset, in which the first command is offered.
    """
    n = len(stream)
    fields = [name for name in stream.dtype.names if name != "op"]
    res = SimResult([], [], [], [], {})

    async def bench(ctx):
        ctx.set(dut.mode, int(mode))
        p, issued, cycle = 0, 0, 0
        while issued < n and cycle < max_cycles:
            if p < n:
                rec = stream[p]
                ctx.set(dut.cmd_in.payload, {"op": OpcodeShape[Opcode(int(rec["op"])).name],
                                             **{f: int(rec[f]) for f in fields}})
                ctx.set(dut.cmd_in.valid, 1)
            else:
                ctx.set(dut.cmd_in.valid, 0)
            ready = True if ready_pattern is None else bool(ready_pattern(cycle))
            ctx.set(dut.cmd_out.ready, int(ready))
            if p < n and ctx.get(dut.cmd_in.ready):
                p += 1
            if ctx.get(dut.cmd_out.valid) and ready:
                out = ctx.get(dut.cmd_out.payload)
                is_ref = bool(out.refresh)
                res.cycles.append(cycle)
                res.seqs.append(int(out.seq))
                res.ops.append(int(Opcode[out.cmd.op.name]))
                res.refresh.append(is_ref)
                issued += 0 if is_ref else 1
            await ctx.tick()
            cycle += 1
        res.counters = {"refreshes": ctx.get(dut.refreshes),
                        **{k: ctx.get(getattr(dut.stall, k)) for k in ("idle", "dependency", "timing", "backpressure")},
                        **{f"issued_{Opcode(k).name}": ctx.get(dut.issued[k]) for k in range(CHANNEL_OPCODES)}}

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return res
