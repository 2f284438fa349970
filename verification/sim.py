"""Drive the RTL blocks in amaranth.sim: a :class:`~pimphony.rtl.dcs.DcsQueue` with a command stream, a
:class:`~pimphony.rtl.dpa.DpaController` or a :class:`~pimphony.rtl.hub.PimHub` with management operations."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from pimphony.model.dpa import DpaOperation, DpaResponse
from pimphony.model.isa import CHANNEL_OPCODES, Command, Instruction, Opcode
from pimphony.model.kvcache import Status
from pimphony.model.perf.hub import EPU_CYCLES
from pimphony.rtl.dcs import DcsQueue
from pimphony.rtl.dpa import DpaController
from pimphony.rtl.hub import PimHub
from pimphony.rtl.layouts import OpcodeShape

from .env.host import HostDriver, encode_operation
from .env.stream import SimPort, Sink, Source


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

    source = Source(SimPort(dut.cmd_in), encode=lambda rec: {"op": OpcodeShape[Opcode(int(rec["op"])).name],
                                                             **{f: int(rec[f]) for f in fields}})
    for rec in stream:
        source.send(rec)
    sink = Sink(SimPort(dut.cmd_out), ready=ready_pattern)

    async def bench(ctx):
        ctx.set(dut.mode, int(mode))
        issued, cycle = 0, 0
        while issued < n and cycle < max_cycles:
            source.step(ctx, cycle)
            out = sink.step(ctx, cycle)
            if out is not None:
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
    mgmt = Source(SimPort(dut.mgmt), encode=encode_operation)
    ins = Sink(SimPort(dut.ins_out), ready=ready_pattern)
    resp = Sink(SimPort(dut.resp), ready=ready_pattern)

    async def bench(ctx):
        cycle = 0
        while not ctx.get(dut.mgmt.ready):
            await ctx.tick()
            cycle += 1
        res.init_cycles = cycle
        for op in ops:
            start, emitted, response, accepted, first = cycle, [], None, 0, -1
            mgmt.send(op)
            while response is None:
                if cycle > max_cycles:
                    raise TimeoutError(f"no response to {op} within {max_cycles} cycles")
                out = ins.step(ctx, cycle)
                if out is not None:
                    first = cycle - accepted if first < 0 else first
                    emitted.append((fmt.decode_instruction(out.ins.as_value().value), bool(out.sv)))
                r = resp.step(ctx, cycle)
                if r is not None:
                    response = DpaResponse(Status[r.status.name], int(r.chunk), int(r.offset), int(r.free))
                if mgmt.step(ctx, cycle) is not None:      # after resp.ready: mgmt.ready follows it
                    accepted = cycle
                await ctx.tick()
                cycle += 1
            mgmt.step(ctx, cycle)                   # nothing left to offer: valid falls
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


class _HubRecorder:
    """A :class:`~.env.host.HostListener` that records a :class:`HubSimResult` and passes the run on to
    ``hooks`` (see :func:`simulate_hub`)."""

    def __init__(self, hub: PimHub, hooks=None):
        self.fmt, self.hooks = hub.fmt, hooks
        self.res = HubSimResult([], [[] for _ in range(hub.fmt.channels)], [], 0)

    def before(self, op) -> None:
        if self.hooks is not None:
            self.hooks.before(op)

    def command(self, channel: int, out, cycle: int) -> None:
        cmd = self.fmt.decode_command(out.cmd.as_value().value)
        self.res.issued[channel].append((cycle, int(out.seq), cmd, bool(out.refresh)))
        if self.hooks is not None:
            self.hooks.on_command(channel, cmd)

    def sync(self, payload, cycle: int) -> None:
        self.res.syncs.append((cycle, int(payload.sv)))
        if self.hooks is not None:
            self.hooks.on_sync(int(payload.sv))

    def response(self, r, cycle: int) -> None:
        self.res.responses.append(DpaResponse(Status[r.status.name], int(r.chunk), int(r.offset), int(r.free)))

    def after(self, op) -> None:
        if self.hooks is not None:
            self.hooks.after(op)


def simulate_hub(hub: PimHub, ops: list[DpaOperation], mode: int, epu_cycles: int = EPU_CYCLES,
                 max_cycles: int = 10_000_000, hooks=None) -> HubSimResult:
    """Issue ``ops`` one after another through the :class:`~.env.host.HostDriver`; each is finished
    when answered and the hub idle. Every phase barrier is acknowledged ``epu_cycles`` cycles after it
    is offered (the EPU's work).

    ``hooks`` (optional) is called as the host and the channels would see it: ``before(op)`` before
    an operation is offered, ``on_command(channel, cmd)`` for every issued command (refreshes
    included) in issue order, ``on_sync(sv)`` when a barrier is acknowledged, ``after(op)`` once the
    operation is answered and the hub idle (e.g. :class:`pimphony.verification.env.hub.AttentionOnHub`).
    """
    recorder = _HubRecorder(hub, hooks)
    driver = HostDriver(SimPort(hub.mgmt), SimPort(hub.ins), SimPort(hub.resp), SimPort(hub.sync),
                        [SimPort(port) for port in hub.cmd_out], idle=lambda ctx: bool(ctx.get(hub.idle)),
                        epu_cycles=epu_cycles)

    async def bench(ctx):
        ctx.set(hub.mode, int(mode))

        async def settle():
            pass

        recorder.res.spans = await driver.run(ctx, ops, recorder, settle, ctx.tick, max_cycles)
        driver.stop(ctx)
        recorder.res.cycles = driver.cycle

    sim = Simulator(hub)
    sim.add_clock(1e-9)
    sim.add_testbench(bench)
    sim.run()
    return recorder.res
