"""Verification environment of the DCS queue: driver, back-pressure, monitor, BFM and scoreboard.

All components are stepped once per clock cycle by :class:`DcsBench`: drive inputs just after the
rising edge, sample handshakes at ``ReadOnly``. Random choices come from one seeded generator whose
seed is printed, so every run can be replayed.

The scoreboard checks each issued command as it appears: it was offered and not issued before
(nothing duplicated), it obeys every timing rule (the model's :class:`TimingChecker`), it waits for its
true hazards (issue + latency of every dependency), queues stay in order; at the end, every command
was issued (nothing lost) and the golden-channel BFM, which executed every command in issue order
with its data, holds exactly what an in-order golden channel computes.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.lib.data import Layout, StructLayout
from cocotb.triggers import ReadOnly, RisingEdge

from pimphony.model.config import ModuleOrg, TimingPreset
from pimphony.model.hub import PimHub
from pimphony.model.isa import IO_OPCODES, Format, Opcode, to_commands
from pimphony.model.numerics import bf16_bits, to_bf16
from pimphony.model.policies import dependencies
from pimphony.model.queue import Policy, QueueConfig
from pimphony.model.timing import TimingChecker, latency_table
from pimphony.rtl.dcs import SEQ_BITS
from pimphony.rtl.layouts import command_layout

from . import coverage
from .stream import CocotbPort, Sink, Source, idle_pattern, ready_pattern

SEQ_MASK = (1 << SEQ_BITS) - 1
ENOUGH_ERRORS = 20
"""A run stops once its scoreboard has found this many errors (a broken design fails fast)."""


class GoldenChannelBfm:
    """A golden PIM channel (channel 0 of a :class:`~pimphony.model.hub.PimHub`) with the HUB's GPR file:
    executes each command as it is issued, data included."""

    def __init__(self, org: ModuleOrg, rows: dict[int, np.ndarray], gpr: np.ndarray):
        self.hub = PimHub(org, scale=1.0)
        for row, data in rows.items():
            self.hub.channels.write_rows(np.array([0]), row, data[None, None])
        self.hub.gpr.data[:len(gpr)] = gpr
        self.entries = len(gpr)

    def execute(self, cmd) -> None:
        self.hub.execute_command(0, cmd)

    @property
    def gpr(self) -> np.ndarray:
        """The GPR entries the workload uses."""
        return self.hub.gpr.data[:self.entries]


class Workload:
    """A command stream with the data it needs: bank rows and initial GPR contents."""

    def __init__(self, org: ModuleOrg, stream: np.ndarray, seed: int):
        self.org = org
        self.stream = stream
        rng = np.random.default_rng(seed)
        rows = sorted({int(r) for r in stream["row"][stream["op"] == Opcode.ACT]})
        self.rows = {r: bf16_bits(rng.standard_normal((org.banks, org.columns))) for r in rows}
        gpr = to_bf16(rng.standard_normal((int(stream["gpr"].max()) + 1, org.burst_elements)))
        gpr[0] = 0.0                         # GPR 0 is the zero bias, as in the lowering
        self.gpr = gpr

    def golden(self) -> np.ndarray:
        """GPR contents after executing the stream in program order."""
        bfm = GoldenChannelBfm(self.org, self.rows, self.gpr)
        for cmd in to_commands(self.stream):
            bfm.execute(cmd)
        return bfm.gpr


def _layouts(fmt: Format) -> tuple[Layout, Layout]:
    """The payloads of ``cmd_in`` and ``cmd_out``, from the RTL's layouts."""
    cmd = command_layout(fmt)
    return cmd, StructLayout({"cmd": cmd, "seq": SEQ_BITS, "refresh": 1})


class Scoreboard:
    """Checks every issued command against the stream, the timing table, the hazards and the data."""

    def __init__(self, workload: Workload, timing: TimingPreset, policy: Policy, cfg: QueueConfig):
        self.workload = workload
        stream = workload.stream
        self.ops = stream["op"].astype(np.int64)
        self.n = len(stream)
        self.policy = policy
        dcs_cfg = QueueConfig(policy=Policy.DCS, gbuf_entries=cfg.gbuf_entries, obuf_entries=cfg.obuf_entries)
        self.deps = dependencies(self.ops, stream["gbuf"], stream["obuf"], dcs_cfg)
        self.lat = latency_table(timing)
        self.checker = TimingChecker(timing, cfg.obuf_dual_port)
        self.bfm = GoldenChannelBfm(workload.org, workload.rows, workload.gpr)
        self.issue_cycle = np.full(self.n, -1, dtype=np.int64)
        self.accept_cycle = np.full(self.n, -1, dtype=np.int64)      # set by the bench (for coverage)
        self.base = 0                                  # seq offset of this stream (after a reset: new run)
        self.errors: list[str] = []
        self.last_in_queue = {0: -1, 1: -1}
        self.refreshes = 0
        self.issued = 0
        self.illegal = 0
        self.duplicated = 0

    def observe(self, cycle: int, seq: int, cmd, refresh: bool) -> None:
        broken = self.checker.observe(cmd.op, cycle, -1 if refresh else seq)
        self.illegal += len(broken)
        self.errors += broken
        if refresh:
            self.refreshes += 1
            if cmd.op != Opcode.REF:
                self.errors.append(f"cycle {cycle}: refresh flag on {cmd}")
            return
        i = (seq - self.base) & SEQ_MASK
        if i >= self.n or self.issue_cycle[i] >= 0:
            self.duplicated += 1
            self.errors.append(f"cycle {cycle}: seq {seq} ({cmd}) issued twice or never offered")
            return
        expected = to_commands(self.workload.stream[i:i + 1])[0]
        if cmd != expected:
            self.errors.append(f"cycle {cycle}: seq {seq} issued as {cmd}, offered as {expected}")
        queue = 0 if self.policy == Policy.STATIC or cmd.op in IO_OPCODES else 1
        if i < self.last_in_queue[queue]:
            self.errors.append(f"cycle {cycle}: seq {seq} overtook command {self.last_in_queue[queue]} in its queue")
        self.last_in_queue[queue] = i
        for buffer, dep in zip(("gbuf", "obuf"), self.deps, strict=True):
            d = int(dep[i])
            if d < 0:
                continue
            done = self.issue_cycle[d] + self.lat[self.ops[d]]
            if self.issue_cycle[d] < 0 or cycle < done:
                self.illegal += 1
                self.errors.append(f"cycle {cycle}: {cmd} (seq {seq}) issued across a hazard on command {d}")
            elif self.accept_cycle[i] < done:          # the queue held it back: a live hazard
                coverage.sample_hazard(self.ops[d], self.ops[i], buffer, self.policy)
        self.issue_cycle[i] = cycle
        self.issued += 1
        self.bfm.execute(cmd)

    def final(self) -> list[str]:
        """End-of-run checks (nothing lost, data equal to the in-order golden channel)."""
        out = list(self.errors)
        missing = np.nonzero(self.issue_cycle < 0)[0]
        self.lost = int(missing.size)
        if missing.size:
            out.append(f"{missing.size} commands never issued, first seq {int(missing[0])}")
        golden = self.workload.golden()
        differ = np.nonzero((self.bfm.gpr != golden).any(axis=1))[0]
        if differ.size:
            out.append(f"{differ.size} GPR entries differ from the in-order golden result, "
                       f"first entry {int(differ[0])}")
        return out


class DcsBench:
    """Steps driver, back-pressure, monitor and scoreboard each clock cycle."""

    def __init__(self, dut, org: ModuleOrg, timing: TimingPreset, policy: Policy, workload: Workload,
                 seed: int, idle: float = 0.0, backpressure: float = 0.0):
        self.dut = dut
        self.fmt = Format.for_org(org)
        self.rng = np.random.default_rng(seed)
        cfg = dataclasses.replace(QueueConfig.rtl_default(org), policy=policy)
        cmd_layout, out_layout = _layouts(self.fmt)
        self.driver = Source(CocotbPort(dut, "cmd_in", cmd_layout), idle=idle_pattern(idle, self.rng))
        for cmd in to_commands(workload.stream):
            self.driver.send(self.fmt.encode_command(cmd))
        self.accepted = 0
        self.ready = Sink(CocotbPort(dut, "cmd_out", out_layout), ready=ready_pattern(backpressure, self.rng))
        self.scoreboard = Scoreboard(workload, timing, policy, cfg)
        self.cycles: list[int] = []
        self.policy = policy
        self.depth = (cfg.io_depth, cfg.compute_depth)
        self.occupancy = [0, 0]

    def queue_of(self, op: int) -> int:
        """0: the I/O queue (every command under static), 1: the compute queue."""
        return 0 if self.policy == Policy.STATIC or op in IO_OPCODES else 1

    async def run(self, max_cycles: int, stop_after: int | None = None) -> int:
        """Run until every command issued (or ``stop_after`` cycles, or the scoreboard holds
        :data:`ENOUGH_ERRORS` errors); returns the cycles used."""
        self.dut.mode.value = int(self.policy)
        cycle = 0
        while (self.scoreboard.issued < self.scoreboard.n and cycle < max_cycles
               and len(self.scoreboard.errors) < ENOUGH_ERRORS):
            if stop_after is not None and cycle >= stop_after:
                break
            self.driver.drive(None, cycle)
            self.ready.drive(None, cycle)
            await ReadOnly()
            accepted = None
            if self.driver.taken(None) is not None:
                accepted, self.accepted = self.accepted, self.accepted + 1
            out = self.ready.sample(None)
            got = None if out is None else (cycle, out["seq"], self.fmt.decode_command(out["cmd"]),
                                             bool(out["refresh"]))
            if got is not None:
                op, refresh = got[2].op, got[3]
                q = self.queue_of(op)
                coverage.sample_issue(op, self.policy, self.occupancy[q], self.depth[q], refresh)
                self.scoreboard.observe(*got)
                if not refresh:
                    self.cycles.append(cycle)
                    self.occupancy[q] -= 1
            if accepted is not None:
                self.scoreboard.accept_cycle[accepted] = cycle
                self.occupancy[self.queue_of(int(self.scoreboard.ops[accepted]))] += 1
            await RisingEdge(self.dut.clk)
            cycle += 1
        self.dut.cmd_in__valid.value = 0
        return cycle
