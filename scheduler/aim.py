"""The ``aim`` issue policy: aim_simulator's in-order AiM controller, command for command.

The public AiM simulator (arkhadem/aim_simulator at 0f28a07, a Ramulator 2.0 fork) is the baseline
controller of SK hynix AiM that PIMphony's DCS replaces. This module reproduces what it issues on one
channel, cycle for cycle, from an ISR trace (:class:`~pimphony.model.aimtrace.AimTrace`); a test holds
it equal to the simulator's recorded outputs (``tests/data/aim``). What it models, with the simulator
file each rule comes from:

* **Frontend** (``frontend/impl/memory_trace/aim_trace.cpp``): one ISR enters the DMA's queue per
  cycle; comments cost nothing.
* **DMA** (``memory_system/impl/aim_DRAM_system.cpp``): decodes the oldest ISR once nothing blocks,
  unrolled into one request per op-size step; a request the controller cannot take waits and is
  offered again each cycle, and the next ISR is decoded one cycle after the last is taken. A blocking
  ISR (RD_MAC; EOC on all 32 channels) stops decoding until the controller calls every request back.
* **Controller** (``dram_controller/impl/AiM_dram_controller.cpp``): a 33-request AiM buffer, served
  strictly in order. The head's command is its final command or the row command it needs first
  (``lambdas/preq.h`` ``RequireAllRowsOpen``: PREA if another row is open, ACT16 if rows are closed);
  it issues when every timing rule allows it. On every switch between a register command (WRGB,
  WRMAC16, RDMAC16: ``request.h`` ``require_reg_RW_mod``) and a bank command, a TMOD issues instead in
  the cycle the command would have, and nothing follows it for nMODCH cycles. A RD_MAC calls back
  nCLREG + nBL after it issues (one read call-back per cycle); the EOC calls back once every write has
  completed. The run ends in the cycle of the EOC's call-back, which is aim_simulator's
  ``memory_system_cycles``.
* **Timing**: the rule table of :mod:`pimphony.model.timing` with AiM's single-ported output registers,
  plus TMOD -> any command = nMODCH (``dram/impl/GDDR6.cpp``).
* **Refresh** (``--refresh on``): aim_simulator's all-bank refresh manager queues a REFab every nREFI
  cycles in a priority buffer that blocks the AiM buffer until the REFab issues (PREA first if a row
  is open). In the simulator it never fires (GDDR6 has no rank level and the manager loops over ranks),
  so the comparison runs with refresh off; ``on`` shows what a working refresh would cost.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from pimphony.model.aimtrace import AimTrace, Isr, from_stream, to_stream
from pimphony.model.compiled import compiled
from pimphony.model.config import ModelConfig, ModuleOrg, TimingPreset
from pimphony.model.dpa import DpaConfig, DpaControllerModel, DpaOp, DpaOperation
from pimphony.model.isa import CHANNEL_OPCODES, Instruction, Opcode, channel_stream
from pimphony.model.perf.channel import breakdown as channel_breakdown
from pimphony.model.perf.channel import run_channel
from pimphony.model.perf.hub import EPU_CYCLES, phases_of
from pimphony.model.policies import issuer
from pimphony.model.queue import QueueConfig
from pimphony.model.timing import REGISTER_MODE, gap_matrix, latency_table

from .lower import AttentionLowering, lower_gemv
from .partition import make_partition

COMMANDS = ("ACT16", "PREA", "REFab", "WRGB", "WRMAC16", "MAC16", "RDMAC16", "TMOD")
"""aim_simulator's names of the commands the controller issues; codes 0..6 are our channel opcodes
(ACT, PRE, REF, WR_INP, WR_BIAS, MAC, RD_OUT), 7 is the mode switch."""
TMOD = len(COMMANDS) - 1
assert all(COMMANDS.index(n) == int(op) for n, op in
           (("ACT16", Opcode.ACT), ("PREA", Opcode.PRE), ("REFab", Opcode.REF), ("WRGB", Opcode.WR_INP),
            ("WRMAC16", Opcode.WR_BIAS), ("MAC16", Opcode.MAC), ("RDMAC16", Opcode.RD_OUT)))
assert TMOD == CHANNEL_OPCODES

BUFFER_SLOTS = 33
"""The controller's AiM buffer takes a request while it holds at most ``max_size`` = 32
(``ReqBuffer::enqueue``: ``size() <= max_size``)."""
CHANNELS = 32
"""An EOC goes to all 32 channels of the simulator and blocks until each calls back."""


def gap_table(timing: TimingPreset) -> np.ndarray:
    """``G[prev, next]`` over :data:`COMMANDS`: the rule table with AiM's output registers, and a TMOD
    blocking every other command for nMODCH."""
    g = np.zeros((len(COMMANDS), len(COMMANDS)), dtype=np.int64)
    g[:TMOD, :TMOD] = gap_matrix(timing, obuf_dual_port=False)
    g[TMOD, :TMOD] = timing.nMODCH
    return g


@dataclass
class ControllerState:
    """What a run leaves in the controller for the next one: the open row (-1: none), register mode,
    and the cycle from which each command's timing rules allow it (absolute cycles)."""

    open_row: int = -1
    register_mode: bool = False
    ready: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(len(COMMANDS), dtype=np.int64))


@dataclass
class AimRun:
    """The commands one channel issued (``cycle``, ``command`` code into :data:`COMMANDS`, ``row``: -1
    for commands without one) and the run's length in aim_simulator's ``memory_system_cycles``
    (counted from the run's ``start``), with the state it leaves."""

    cycle: np.ndarray
    command: np.ndarray
    row: np.ndarray
    total_cycles: int
    channel: int = 0
    state: ControllerState = dataclasses.field(default_factory=ControllerState)
    start: int = 0

    @property
    def macs(self) -> int:
        return int((self.command == Opcode.MAC).sum())

    def mac_utilisation(self, timing: TimingPreset) -> float:
        """MAC-busy cycles (nCCDS per MAC16) over the run."""
        return self.macs * timing.nCCDS / self.total_cycles if self.total_cycles else 0.0

    def counts(self) -> dict[str, int]:
        n = np.bincount(self.command, minlength=len(COMMANDS))
        return {name: int(n[k]) for k, name in enumerate(COMMANDS)}

    def breakdown(self, timing: TimingPreset) -> dict[str, int]:
        """Cycles per cause, in the categories of :func:`pimphony.model.perf.channel.breakdown` (TMODs as
        ``mode switch``)."""
        tmod = self.command == TMOD
        return channel_breakdown(self.command[~tmod], self.cycle[~tmod] - self.start, timing, self.total_cycles,
                                 mode_switches=self.cycle[tmod] - self.start)

    def csv_lines(self) -> list[str]:
        """``cycle,channel,command,row`` lines, as the corpus records aim_simulator's commands."""
        names = np.array(COMMANDS)[self.command]
        return ["cycle,channel,command,row"] + [f"{c},{self.channel},{n},{r}" for c, n, r in
                                                zip(self.cycle.tolist(), names.tolist(), self.row.tolist(),
                                                    strict=True)]


def _requests(trace: AimTrace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One request per op-size step: final command, row, and each ISR's first request."""
    body = trace.kind != Isr.EOC
    code = np.array([int(Opcode.WR_INP), int(Opcode.WR_BIAS), int(Opcode.MAC), int(Opcode.RD_OUT)], dtype=np.int64)
    cmd = np.repeat(code[trace.kind[body]], trace.opsize[body])
    row = np.repeat(trace.row[body], trace.opsize[body])
    first = np.cumsum(trace.opsize[body]) - trace.opsize[body]
    return cmd, row, first, trace.opsize[body]


def run(trace: AimTrace, timing: TimingPreset, refresh: bool = False, start: int = 0,
        state: ControllerState | None = None) -> AimRun:
    """Issue ``trace`` on aim_simulator's AiM controller (see the module docstring). A fresh simulator
    starts at cycle 0 with every row closed; a run that continues an earlier one on the same channel
    (the next phase of a kernel) gives its ``start`` cycle and the ``state`` the earlier run left, so
    rows, mode, timing rules and the refresh schedule carry over."""
    cmd, row, first, size = _requests(trace)
    lat = np.append(latency_table(timing), 1)
    reg = np.zeros(len(COMMANDS), dtype=np.int64)
    for op in REGISTER_MODE:
        reg[int(op)] = 1
    state = state or ControllerState()
    ready = state.ready.astype(np.int64).copy()
    cycle, command, rows, n, end, open_row, mode = _engine(
        cmd, row, first, size, gap_table(timing), lat, reg, int(Opcode.RD_OUT), int(Opcode.ACT), int(Opcode.PRE),
        int(Opcode.MAC), int(Opcode.REF), TMOD, BUFFER_SLOTS, CHANNELS, timing.nREFI if refresh else 0, int(start),
        int(state.open_row), int(state.register_mode), ready)
    return AimRun(cycle[:n].copy(), command[:n].copy(), rows[:n].copy(), int(end - start), trace.channel,
                  ControllerState(int(open_row), bool(mode), ready), int(start))


def _engine_py(cmd, row, first, size, gap, lat, reg, rd_op, act_op, pre_op, mac_op, ref_op, tmod, slots, channels,
               n_refi, start, open_row, reg_mode, ready):
    """The cycle loop of the module docstring. ``m`` counts the simulator's memory-system ticks; the
    controller and the DRAM run at clock ``c = start + m + 1`` within tick ``m``. ``ready`` (the
    timing rules' state) is updated in place."""
    n_req = cmd.shape[0]
    n_isr = first.shape[0]
    cap = 3 * n_req + 16
    out_c = np.empty(cap, dtype=np.int64)
    out_k = np.empty(cap, dtype=np.int64)
    out_r = np.empty(cap, dtype=np.int64)
    n_out = 0
    # requests [buf_head, buf_tail) sit in the controller, [buf_tail, decoded) wait in the DMA; index
    # n_req is the EOC
    buf_head = 0
    buf_tail = 0
    decoded = 0
    isr = 0                         # the DMA's oldest ISR (index n_isr = EOC)
    stalled = 0
    read_depart = -1                # the pending blocking read's call-back cycle (-1: none)
    eoc_found = -1                  # the cycle our channel's EOC left the buffer
    others_back = -1                # the cycle the other channels' EOCs call back
    last_write = -1
    ref_pending = False
    next_ref = n_refi * (start // n_refi + 1) if n_refi > 0 else 0
    m = 0
    while True:
        c = start + m + 1
        # -- DMA: offer waiting requests, then pop or decode the oldest ISR --------------------------
        was_waiting = buf_tail < decoded
        while buf_tail < decoded and buf_tail - buf_head < slots:
            buf_tail += 1
        still_waiting = buf_tail < decoded
        if stalled == 0:
            if was_waiting:
                if not still_waiting:
                    isr += 1
            elif isr <= m and isr <= n_isr:
                if isr == n_isr:                          # EOC: one request to every channel
                    decoded = n_req + 1
                    stalled += channels
                    others_back = c + 1
                    if buf_tail - buf_head < slots:
                        buf_tail += 1
                else:
                    decoded = first[isr] + size[isr]
                    while buf_tail < decoded and buf_tail - buf_head < slots:
                        buf_tail += 1
                    if cmd[first[isr]] == rd_op:
                        stalled += size[isr]
                    if stalled == 0 and buf_tail == decoded:
                        isr += 1
        # -- controller tick at clock c: one call-back, refresh, then one command ------------------
        if read_depart >= 0 and read_depart <= c:
            read_depart = -1
            stalled -= 1
            if stalled == 0:
                isr += 1
        elif eoc_found >= 0 and eoc_found <= c and last_write < c:
            stalled -= 1
            eoc_found = -2
        if others_back == c:
            stalled -= channels - 1
        if eoc_found == -2 and stalled == 0:
            return out_c, out_k, out_r, n_out, c, open_row, reg_mode
        if n_refi > 0 and c == next_ref:
            next_ref += n_refi
            ref_pending = True
        issue = -1
        final = False
        req_reg = 0
        if ref_pending:
            k = pre_op if open_row >= 0 else ref_op
            if c >= ready[k]:
                issue = k
                final = k == ref_op
        elif buf_tail > buf_head:
            i = buf_head
            if i == n_req:                                # our EOC
                if eoc_found == -1:
                    eoc_found = c
                    buf_head += 1
            else:
                k = cmd[i]
                if k == mac_op and open_row != row[i]:
                    k = pre_op if open_row >= 0 else act_op
                if c >= ready[k]:
                    issue = k
                    final = k == cmd[i]
                    req_reg = reg[cmd[i]]
        if issue >= 0:
            if n_out == out_c.shape[0]:
                out_c = _grow(out_c)
                out_k = _grow(out_k)
                out_r = _grow(out_r)
            if req_reg != reg_mode:
                issue = tmod
                final = False
                reg_mode = req_reg
            for j in range(gap.shape[0]):
                if c + gap[issue, j] > ready[j]:
                    ready[j] = c + gap[issue, j]
            out_c[n_out] = c
            out_k[n_out] = issue
            out_r[n_out] = row[buf_head] if issue in (act_op, mac_op) else -1
            n_out += 1
            if issue == act_op:
                open_row = row[buf_head]
            elif issue == pre_op:
                open_row = -1
            if ref_pending and issue == ref_op:
                ref_pending = False
            elif final:
                if issue == rd_op:
                    read_depart = c + lat[issue]
                elif c + lat[issue] > last_write:
                    last_write = c + lat[issue]
                buf_head += 1
        m += 1


def _grow_py(a):
    out = np.empty(2 * a.shape[0], dtype=a.dtype)
    out[:a.shape[0]] = a
    return out


_grow = compiled(_grow_py)
_engine = compiled(_engine_py)


def run_stream(stream: np.ndarray, timing: TimingPreset, refresh: bool = True, channel: int = 0, start: int = 0,
               state: ControllerState | None = None) -> AimRun:
    """The ``aim`` policy on a command stream (:data:`~pimphony.model.isa.COMMAND_DTYPE`, one channel,
    program order): its ISRs (:func:`~pimphony.model.aimtrace.from_stream`) through :func:`run`."""
    return run(from_stream(stream, channel), timing, refresh, start, state)


def predict_run(emitted: list[tuple[Instruction, bool]], channels: int, timing: TimingPreset,
                epu_cycles: int = EPU_CYCLES,
                barrier: int = 1, refresh: bool = True, start: int = 0) -> int:
    """Cycles of one hub RUN (the DPA dispatcher's ``emitted`` instructions, each tagged with its phase)
    on AiM's controllers: each phase is one aim kernel per channel, ended by its EOC; the next phase
    starts ``epu_cycles + barrier`` cycles after the slowest channel's EOC, as in the hub model
    (:func:`pimphony.model.perf.hub.predict_run`); each channel's rows, mode, timing and refresh carry
    over between phases."""
    states = [ControllerState() for _ in range(channels)]
    begin = end = start
    for phase in phases_of(emitted):
        streams = {ch: channel_stream([i for i in phase if i is not None], ch) for ch in range(channels)}
        end = begin
        for ch, stream in streams.items():
            if len(stream):
                r = run_stream(stream, timing, refresh, ch, begin, states[ch])
                states[ch] = r.state
                end = max(end, begin + r.total_cycles)
        begin = end + epu_cycles + barrier
    return end - start


def time_trace(trace: AimTrace, policy: str, timing: TimingPreset, queue: QueueConfig | None = None,
               refresh: bool = False) -> AimRun:
    """Time an ISR trace under ``policy``: ``aim`` (:func:`run`) or one of :class:`Policy` run on the
    trace's commands (:func:`~pimphony.model.aimtrace.to_stream`) with ``queue``'s buffers. Results
    use aim_simulator's numbering: the first command can issue at cycle 1, and the total is the cycle in
    which the last command completes (for ``aim``, the EOC's call-back)."""
    if policy == "aim":
        return run(trace, timing, refresh)
    if queue is None:
        raise ValueError("a queue configuration is needed for the static, ping-pong and DCS policies")
    if not refresh:
        timing = dataclasses.replace(timing, nREFI=NO_REFRESH)
    stream = to_stream(trace, queue.gbuf_entries)
    ran = run_channel(stream, timing, issuer(queue), check=False)
    ops = np.concatenate([stream["op"].astype(np.int64), np.full(len(ran.refresh), int(Opcode.REF))])
    cycles = np.concatenate([ran.cycles, ran.refresh])
    rows = np.concatenate([np.where(np.isin(stream["op"], [int(Opcode.ACT), int(Opcode.MAC)]), stream["row"], -1),
                           np.full(len(ran.refresh), -1)]).astype(np.int64)
    order = np.argsort(cycles, kind="stable")
    return AimRun(cycles[order] + 1, ops[order], rows[order], ran.total_cycles + 1, trace.channel)


NO_REFRESH = next(f for f in dataclasses.fields(TimingPreset) if f.name == "nREFI").metadata["range"][1]
"""The largest nREFI a preset allows: refresh off for the policies that refresh on their own."""


def attention_stream(model: ModelConfig, org: ModuleOrg, lengths: list[int], channel: int, partition: str = "tcp",
                     phase: str = "both", pair: bool = False) -> np.ndarray:
    """What our lowering issues to ``channel`` for one decode-attention layer of ``model`` over requests
    of ``lengths`` (every KV head; ``pair``: only the first (request, KV head) pair), in program order;
    ``phase`` keeps the QK^T or the SV instructions only."""
    part = make_partition(partition, org, model.head_dim)
    placements = part.place(np.array(lengths), model.kv_heads)
    if pair:
        placements = placements[:1]
    program = AttentionLowering(part, model.group, org.obuf_entries).lower(placements)[0]
    return channel_stream(program.instructions(phase), channel)


def gemv_stream(org: ModuleOrg, n_in: int, n_out: int, channel: int = 0) -> np.ndarray:
    """A GEMV ``y = W x`` (``W``: n_out x n_in) on one channel, as :func:`~pimphony.scheduler.lower.lower_gemv`
    lowers it for AiM's output registers."""
    return channel_stream(lower_gemv(org, n_in, n_out, org.outreg_entries, channel), channel)



def predict_operations(operations: list[DpaOperation], config: DpaConfig, timing: TimingPreset,
                       epu_cycles: int = EPU_CYCLES, refresh: bool = True) -> int:
    """The RUN cycles of a hub workload (DPA operations, as ``pimphony run`` offers them) on AiM's
    controllers: each RUN's instructions from the golden DPA controller through :func:`predict_run`,
    one after another with each channel's refresh schedule kept. The management operations (program
    load, OPEN, CLOSE) cost nothing here: aim_simulator has no such path."""
    golden = DpaControllerModel(config)
    total = 0
    for op in operations:
        _, emitted = golden.step(op)
        if op.op == DpaOp.RUN and emitted:
            total += predict_run(emitted, config.org.channels, timing, epu_cycles, refresh=refresh, start=total)
    return total
