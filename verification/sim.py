"""Drive the RTL blocks in amaranth.sim: a :class:`~pimphony.rtl.dcs.DcsQueue` with a command stream, a
:class:`~pimphony.rtl.dpa.DpaController` or a :class:`~pimphony.rtl.hub.PimHub` with management operations."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from pimphony.model.dpa import DpaOperation, DpaResponse
from pimphony.model.isa import CHANNEL_OPCODES, Command, Instruction, Opcode
from pimphony.model.kvcache import Status
from pimphony.rtl.dcs import DcsQueue
from pimphony.rtl.dpa import DpaController
from pimphony.rtl.hub import PimHub
from pimphony.rtl.layouts import OpcodeShape


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


@dataclass
class DpaSimResult:
    """Per operation: its response, the instructions RUN emitted (with the SV flag), the cycles from
    offering the operation to taking its response, and the cycle of its first instruction (-1: none),
    counted from the cycle the operation was accepted."""

    responses: list[DpaResponse]
    emitted: list[list[tuple[Instruction, bool]]]
    cycles: list[int]
    first_out: list[int]
    init_cycles: int


def simulate_dpa(dut: DpaController, ops: list[DpaOperation], ready_pattern=None,
                 max_cycles: int = 10_000_000) -> DpaSimResult:
    """Issue ``ops`` one after another (each after the previous response) and collect what comes back.

    ``ready_pattern(cycle) -> bool`` drives ``ins_out.ready`` and ``resp.ready`` (always ready by
    default). ``init_cycles`` counts the cycles until ``mgmt.ready`` first rises after reset.
    """
    fmt = dut.fmt
    res = DpaSimResult([], [], [], [], 0)

    async def bench(ctx):
        cycle = 0
        while not ctx.get(dut.mgmt.ready):
            await ctx.tick()
            cycle += 1
        res.init_cycles = cycle
        for op in ops:
            start, sent, emitted, response, accepted, first = cycle, False, [], None, 0, -1
            while response is None:
                if cycle > max_cycles:
                    raise TimeoutError(f"no response to {op} within {max_cycles} cycles")
                ready = True if ready_pattern is None else bool(ready_pattern(cycle))
                ctx.set(dut.ins_out.ready, int(ready))
                ctx.set(dut.resp.ready, int(ready))
                if not sent:
                    ctx.set(dut.mgmt.payload, {**vars(op), "op": int(op.op)})
                    ctx.set(dut.mgmt.valid, 1)
                    if ctx.get(dut.mgmt.ready):
                        sent, accepted = True, cycle
                else:
                    ctx.set(dut.mgmt.valid, 0)
                if ready and ctx.get(dut.ins_out.valid):
                    first = cycle - accepted if first < 0 else first
                    out = ctx.get(dut.ins_out.payload)
                    emitted.append((fmt.decode_instruction(out.ins.as_value().value), bool(out.sv)))
                if ready and ctx.get(dut.resp.valid):
                    r = ctx.get(dut.resp.payload)
                    response = DpaResponse(Status[r.status.name], int(r.chunk), int(r.offset), int(r.free))
                await ctx.tick()
                cycle += 1
            ctx.set(dut.mgmt.valid, 0)
            res.responses.append(response)
            res.emitted.append(emitted)
            res.cycles.append(cycle - start)
            res.first_out.append(first)

    sim = Simulator(dut)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return res


@dataclass
class HubSimResult:
    """Per operation its response; per channel the issued commands as (cycle, seq, command, refresh);
    the cycles at which each phase barrier was passed; the total cycles; per operation the cycle it
    was first offered and the cycle after it finished (answered and the hub idle)."""

    responses: list[DpaResponse]
    issued: list[list[tuple[int, int, Command, bool]]]
    syncs: list[tuple[int, int]]
    cycles: int
    spans: list[tuple[int, int]] = field(default_factory=list)


def simulate_hub(hub: PimHub, ops: list[DpaOperation], mode: int, epu_cycles: int = 0,
                 max_cycles: int = 10_000_000, hooks=None) -> HubSimResult:
    """Issue ``ops`` one after another; after each, wait until the hub is idle. Every phase barrier
    is acknowledged ``epu_cycles`` cycles after it is offered (the EPU's work).

    ``hooks`` (optional) is called as the host and the channels would see it: ``before(op)`` before
    an operation is offered, ``on_command(channel, cmd)`` for every issued command (refreshes
    included) in issue order, ``on_sync(sv)`` when a barrier is acknowledged, ``after(op)`` once the
    operation is answered and the hub idle (e.g. :class:`pimphony.verification.env.hub.AttentionOnHub`).
    """
    fmt, n = hub.fmt, hub.fmt.channels
    res = HubSimResult([], [[] for _ in range(n)], [], 0)

    async def bench(ctx):
        ctx.set(hub.mode, int(mode))
        for c in range(n):
            ctx.set(hub.cmd_out[c].ready, 1)
        ctx.set(hub.resp.ready, 1)
        cycle, waiting_sync = 0, 0
        for op in ops:
            sent, answered, begun = False, False, cycle
            if hooks is not None:
                hooks.before(op)
            while not (answered and ctx.get(hub.idle)):
                if cycle > max_cycles:
                    raise TimeoutError(f"{op} did not finish within {max_cycles} cycles")
                if not sent:
                    ctx.set(hub.mgmt.payload, {**vars(op), "op": int(op.op)})
                    ctx.set(hub.mgmt.valid, 1)
                    sent = bool(ctx.get(hub.mgmt.ready))
                else:
                    ctx.set(hub.mgmt.valid, 0)
                if ctx.get(hub.sync.valid):
                    waiting_sync += 1
                    ack = waiting_sync > epu_cycles
                    ctx.set(hub.sync.ready, int(ack))
                    if ack:
                        sv = int(ctx.get(hub.sync.payload).sv)
                        res.syncs.append((cycle, sv))
                        waiting_sync = 0
                        if hooks is not None:
                            hooks.on_sync(sv)
                else:
                    ctx.set(hub.sync.ready, 0)
                for c in range(n):
                    if ctx.get(hub.cmd_out[c].valid):
                        out = ctx.get(hub.cmd_out[c].payload)
                        word = out.cmd.as_value().value
                        cmd = fmt.decode_command(word)
                        res.issued[c].append((cycle, int(out.seq), cmd, bool(out.refresh)))
                        if hooks is not None:
                            hooks.on_command(c, cmd)
                if ctx.get(hub.resp.valid):
                    r = ctx.get(hub.resp.payload)
                    res.responses.append(DpaResponse(Status[r.status.name], int(r.chunk), int(r.offset),
                                                     int(r.free)))
                    answered = True
                await ctx.tick()
                cycle += 1
            ctx.set(hub.mgmt.valid, 0)
            res.spans.append((begun, cycle))
            if hooks is not None:
                hooks.after(op)
        res.cycles = cycle

    sim = Simulator(hub)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return res
