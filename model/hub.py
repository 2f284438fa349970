"""Golden model of the PIM HUB: GPR file, instruction sequencer with multicast, and the EPU.

:class:`PimHub` owns one module's :class:`~pimphony.model.channel.ChannelArray` and runs
:class:`~pimphony.model.program.Program` objects. The sequencer has three equivalent modes:

* ``"compiled"`` (default): each phase of a step (its QK^T or SV instructions) runs in one call of the
  compiled loop of :mod:`~pimphony.model.kernels` (the fast path);
* ``"instructions"``: each instruction is executed at once on every channel of its mask, all op-size
  repetitions together, by the vectorised numpy kernels of
  :class:`~pimphony.model.channel.ChannelArray` (the reference the compiled loop is held to);
* ``"commands"``: each instruction is unrolled by :func:`~pimphony.model.isa.unroll` into channel
  commands that are executed one at a time on :class:`~pimphony.model.channel.PimChannel` views,
  as the RTL's channels will receive them.

All three produce bit-identical results and raise the same errors (tested).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from . import kernels, threads
from .channel import ChannelArray
from .config import ModuleOrg, ceil_div
from .isa import (
    CHANNEL_OPCODES,
    DPA_OPCODES,
    LOOP_ROW_UNIT,
    Command,
    Instruction,
    IsaError,
    Modi,
    Opcode,
    decode,
    encode,
    to_commands,
    unroll,
)
from .numerics import to_bf16
from .program import GPR_ZERO, AttentionUnit, Program


class Gpr:
    """The HUB's general-purpose registers: ``entries`` x 16 bf16 values (float32 storage)."""

    def __init__(self, org: ModuleOrg):
        self.data = np.zeros((org.gpr_entries, org.burst_elements), dtype=np.float32)

    def check(self, entries: np.ndarray, what: str) -> None:
        if entries.size and (entries.min() < 0 or entries.max() >= len(self.data)):
            bad = int(entries[(entries < 0) | (entries >= len(self.data))][0])
            raise IndexError(f"{what}: GPR entry {bad} out of range 0..{len(self.data) - 1}")

    def write(self, entries: np.ndarray, values: np.ndarray, what: str) -> None:
        self.check(entries, what)
        self.data[entries] = to_bf16(values)

    def read(self, entries: np.ndarray, what: str) -> np.ndarray:
        self.check(entries, what)
        return self.data[entries]


@dataclass
class _PairState:
    """Online-softmax state of one (request, KV head) across blocks, fp32."""

    m: np.ndarray
    total: np.ndarray
    acc: np.ndarray
    block_m: np.ndarray | None = None
    block_total: np.ndarray | None = None


@dataclass
class Epu:
    """Element processing unit: softmax in fp32 and the once-per-module SV reduction.

    Softmax is exact (max, exp, sum, scale) over the scores of a block; blocks of one pair are merged
    with the usual running-max rescaling, so the result equals one softmax over all tokens.
    """

    scale: float
    state: dict[tuple[int, int], _PairState] = field(default_factory=dict)

    def softmax_block(self, gpr: Gpr, unit: AttentionUnit) -> None:
        """Scores in GPR -> bf16 probability tiles in GPR; remembers the block's max and sum."""
        g, n = unit.group, unit.n_tokens
        s = _gather(gpr, unit.scores, g * n, "scores").reshape(g, n)
        x = s * np.float32(self.scale)
        m = x.max(axis=1)
        p = to_bf16(np.exp(x - m[:, None]))
        st = self.state.get((unit.request, unit.kv_head))
        if st is None or unit.first:
            st = _PairState(m=np.full(g, -np.inf, np.float32), total=np.zeros(g, np.float32),
                            acc=np.zeros((g, unit.head_dim), np.float32))
            self.state[(unit.request, unit.kv_head)] = st
        st.block_m, st.block_total = m, p.sum(axis=1, dtype=np.float32)
        tiles = np.zeros(unit.probs.index.shape, dtype=np.float32)
        valid = unit.probs.index >= 0
        tiles[valid] = p.reshape(-1)[unit.probs.index[valid]]
        gpr.write(unit.probs.gpr, tiles, "softmax probabilities")

    def reduce_block(self, gpr: Gpr, unit: AttentionUnit) -> np.ndarray | None:
        """Sum the SV partials of the block, merge into the pair; the output (g, d) after the last block."""
        g, d = unit.group, unit.head_dim
        st = self.state[(unit.request, unit.kv_head)]
        acc_b = np.zeros(g * d, dtype=np.float32)
        vals = gpr.read(unit.partials.gpr, "SV partials")
        valid = unit.partials.index >= 0
        np.add.at(acc_b, unit.partials.index[valid], vals[valid])
        m_new = np.maximum(st.m, st.block_m)
        old = np.exp(st.m - m_new)
        new = np.exp(st.block_m - m_new)
        st.acc = st.acc * old[:, None] + acc_b.reshape(g, d) * new[:, None]
        st.total = st.total * old + st.block_total * new
        st.m = m_new
        if not unit.last:
            return None
        del self.state[(unit.request, unit.kv_head)]
        return st.acc / st.total[:, None]


def _gather(gpr: Gpr, gmap, size: int, what: str) -> np.ndarray:
    vals = gpr.read(gmap.gpr, what)
    valid = gmap.index >= 0
    out = np.zeros(size, dtype=np.float32)
    idx = gmap.index[valid]
    out[idx] = vals[valid]
    cover = np.bincount(idx, minlength=size)
    if cover.size != size or not (cover == 1).all():
        raise RuntimeError(f"{what}: the program must deliver each of {size} elements exactly once")
    return out


class PimHub:
    """One PIM module: HUB (GPR, sequencer, EPU) and its channels.

    Parameters
    ----------
    org:
        Module organisation.
    scale:
        Softmax scale (1/sqrt(d_h)).
    obuf_entries:
        OBuf entries per bank (defaults to ``org.obuf_entries``).
    mode:
        ``"compiled"`` (one compiled loop per phase), ``"instructions"`` (vectorised multicast) or
        ``"commands"`` (one channel command at a time).
    """

    MODES = ("compiled", "instructions", "commands")

    def __init__(self, org: ModuleOrg, scale: float, obuf_entries: int | None = None,
                 mode: str = "compiled"):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {', '.join(self.MODES)}; got {mode!r}")
        self.org = org
        self.mode = mode
        self.channels = ChannelArray(org, obuf_entries)
        self.gpr = Gpr(org)
        self.epu = Epu(scale=scale)
        self.commands = np.zeros((org.channels, CHANNEL_OPCODES), dtype=np.int64)
        """Commands issued per channel and opcode."""
        self.phase_macs = {"qk": np.zeros(org.channels, np.int64), "sv": np.zeros(org.channels, np.int64)}
        """MAC commands per channel in the QK^T and SV phases of :meth:`run`."""
        w = org.burst_elements
        self._compilable = org.banks == w and w >= 2 and w & (w - 1) == 0
        """The compiled loop's shape: a WR-BIAS / RD-OUT vector is one element per bank, and the MAC tree
        halves the burst down to one (the reference path has the same requirements, and its own errors)."""

    def execute(self, ins: Instruction) -> None:
        """Run one instruction through the sequencer and multicast network."""
        chs = ins.channel_array
        if chs[-1] >= self.org.channels:
            raise IndexError(f"{ins}: channel {int(chs[-1])} not in a {self.org.channels}-channel module")
        if ins.op in DPA_OPCODES:
            raise IsaError(f"{ins}: {ins.op.name} is a DPA instruction: the dispatcher expands it, no channel "
                           "receives it")
        self.commands[chs, ins.op] += ins.op_size
        if self.mode == "commands":
            self._execute_commands(ins)
            return
        reps = np.arange(ins.op_size)
        a = self.channels
        match ins.op:
            case Opcode.ACT:
                a.act(chs, ins.row)
            case Opcode.PRE:
                a.pre(chs)
            case Opcode.REF:
                a.ref(chs)
            case Opcode.WR_INP:
                a.wr_inp(chs, ins.gbuf + reps, self.gpr.read(ins.gpr + reps, str(ins)))
            case Opcode.WR_BIAS:
                bias = self.gpr.read(np.array([ins.gpr]), str(ins))
                a.wr_bias(chs, ins.obuf + reps, np.broadcast_to(bias, (ins.op_size, bias.shape[1])))
            case Opcode.MAC:
                a.mac(chs, ins.row, ins.col, ins.gbuf, ins.obuf, ins.op_size)
            case Opcode.RD_OUT:
                out = a.rd_out(chs, ins.obuf + reps)
                dest = ins.gpr + np.arange(len(chs) * ins.op_size)
                self.gpr.write(dest, out.reshape(-1, self.org.burst_elements), str(ins))

    def execute_all(self, instructions: list[Instruction]) -> None:
        """Run instructions in order: in ``"compiled"`` mode in one call of the compiled loop (an
        instruction it refuses runs on the reference path, which raises or executes it), else one
        :meth:`execute` each."""
        if self.mode != "compiled" or not self._compilable:
            for ins in instructions:
                self.execute(ins)
            return
        self.execute_encoded(encode(instructions))

    def execute_encoded(self, enc: np.ndarray) -> None:
        """:meth:`execute_all` of instructions encoded by :func:`~pimphony.model.isa.encode`."""
        if self.mode != "compiled" or not self._compilable:
            for row in enc.tolist():
                self.execute(decode(row))
            return
        a = self.channels
        slots, rows = a.row_table()
        lanes = threads.lanes(self.org.channels)
        k = 0
        while k < len(enc):
            stop = kernels.gpr_hazard_free(enc, k, len(self.gpr.data))
            if stop == k:                                   # the hazard is the next instruction: alone
                stop = k + 1
            # each lane tracks every channel's open rows in its own copy (the first in the channels' own)
            ends = threads.side_by_side([functools.partial(
                kernels.run_instructions, enc, k, stop, lane, slots, rows, a.open_row if i == 0 else a.open_row.copy(),
                a.gbuf, a.obuf, self.gpr.data, self.commands) for i, lane in enumerate(lanes)])
            if len({end for end, _ in ends}) != 1:
                raise RuntimeError(f"lanes stopped at different instructions: {[end for end, _ in ends]}")
            k = ends[0][0]
            a.mac_ops += sum(int(macs) for _, macs in ends)
            if k < stop:
                a.sync_row_buffers()
                self.execute(decode(enc[k].tolist()))
                k += 1
        a.sync_row_buffers()

    def _execute_commands(self, ins: Instruction) -> None:
        for ch, stream in unroll(ins).items():
            for cmd in to_commands(stream):
                self.execute_command(ch, cmd)

    def execute_command(self, channel: int, cmd: Command) -> None:
        """One channel command with its GPR traffic (WR-INP / WR-BIAS read the GPR, RD-OUT writes it);
        what a bus-functional model of a channel behind a controller does."""
        view = self.channels.channel(channel)
        if cmd.op in (Opcode.WR_INP, Opcode.WR_BIAS):
            view.execute(cmd, self.gpr.read(np.array([cmd.gpr]), str(cmd))[0])
        elif cmd.op == Opcode.RD_OUT:
            self.gpr.write(np.array([cmd.gpr]), view.execute(cmd)[None], str(cmd))
        else:
            view.execute(cmd)

    def run(self, program: Program, query: Callable[[int, int], np.ndarray],
            progress: Callable[[int, int], None] | None = None) -> dict[tuple[int, int], np.ndarray]:
        """Execute a program; ``query(request, kv_head)`` gives the group's queries (g, d).

        Returns {(request, kv_head): output (g, d) float32}.
        """
        outputs: dict[tuple[int, int], np.ndarray] = {}
        self.gpr.data[GPR_ZERO] = 0.0
        w = self.org.burst_elements
        for i, step in enumerate(program.steps):
            u = step.unit
            q = query(u.request, u.kv_head)
            self.gpr.write(u.query_gpr + np.arange(q.size // w), q.reshape(-1, w), "query load")
            for phase in ("qk", "sv"):
                before = self.commands[:, Opcode.MAC].copy()
                self.execute_encoded(step.encoded(phase))
                self.phase_macs[phase] += self.commands[:, Opcode.MAC] - before
                if phase == "qk":
                    self.epu.softmax_block(self.gpr, u)
            out = self.epu.reduce_block(self.gpr, u)
            if out is not None:
                outputs[(u.request, u.kv_head)] = out
            if progress is not None:
                progress(i + 1, len(program.steps))
        return outputs


class DpaDispatcher:
    """Golden model of DPA's instruction decoder: expands a :class:`DpaProgram` for a request's current
    length and VA2PA mapping into plain instructions for the sequencer.

    Expansion of a DYN_LOOP of kind K (V) over the rows of block ``[t0, t1)``: iteration ``r`` handles
    the block's ``r``-th K (V) row, virtual row ``v``. Each body instruction is copied with its
    DYN_MODI prefixes applied — ``row`` becomes the physical row of ``v`` (``translate``), ``gpr``
    advances by ``r`` strides — and is then *guarded* by the length: a K-slot guard keeps the channels
    whose lanes hold a token of that slot below ``t1``; a V-tile guard trims the op-size to the bursts
    holding tokens below ``t1``; a row-level guard keeps the channels (slices) with any such token. An
    instruction left with no channel or no repetition is dropped.

    Geometry (TCP): ``banks`` lanes per channel, ``keys_per_row`` keys per bank row, V slices of
    ``head_dim / 16`` channels in loop-channel order, ``bursts_per_row`` bursts of 16 tokens per row.
    """

    def __init__(self, org: ModuleOrg, head_dim: int):
        self.org = org
        self.kb = head_dim // org.burst_elements
        self.kpr = org.bursts_per_row // self.kb

    def expand(self, program, translate: Callable[[int, int], int],
               length: int, dropped: bool = False) -> list[tuple[list[Instruction], list[Instruction]]]:
        """(QK^T instructions, SV instructions) of every block; ``translate(kind, virtual_row)``. With
        ``dropped``, every buffer entry the decoder fetches is listed, ``None`` where the guard drops
        its instruction (the decoder spends a cycle on it all the same)."""
        out = []
        for t0 in range(0, length, program.block_tokens):
            t1 = min(length, t0 + program.block_tokens)
            qk = list(program.prologue) + self._loop(program.qk, translate, t0, t1, dropped)
            out.append((qk, self._loop(program.sv, translate, t0, t1, dropped)))
        return out

    def _loop(self, code: list[Instruction], translate, t0: int, t1: int, dropped: bool = False) -> list:
        loop = code[0]
        if loop.op != Opcode.DYN_LOOP or len(code) != 1 + loop.gpr:
            raise ValueError("a DPA loop is a DYN_LOOP followed by exactly its body")
        kind, row_tokens, chans = loop.gbuf, loop.row * LOOP_ROW_UNIT, loop.channels()
        out = []
        for r, v in enumerate(range(t0 // row_tokens, (t1 - 1) // row_tokens + 1)):
            modis: list[Instruction] = []
            for ins in code[1:]:
                if ins.op == Opcode.DYN_MODI:
                    modis.append(ins)
                    continue
                row, gpr, guard = ins.row, ins.gpr, -1
                for m in modis:
                    if m.gbuf == Modi.ROW:
                        row = translate(kind, v)
                    elif m.gbuf == Modi.GPR:
                        gpr += r * m.row
                    else:
                        guard = m.row - 1
                modis = []
                mask, size = self._guard(kind, ins, guard, chans, v, t1)
                if mask and size:
                    out.append(replace(ins, ch_mask=mask, op_size=size, row=row, gpr=gpr))
                elif dropped:
                    out.append(None)
        return out

    def _guard(self, kind: int, ins: Instruction, guard: int, chans: list[int], v: int, t1: int) -> tuple[int, int]:
        nb, bpr, w = self.org.banks, self.org.bursts_per_row, self.org.burst_elements
        mask = 0
        if kind == 0:
            lanes = len(chans) * nb
            first = (v * self.kpr + max(guard, 0)) * lanes
            for pos, c in enumerate(chans):
                if first + pos * nb < t1:
                    mask |= 1 << c
            return mask & ins.ch_mask, ins.op_size
        slices = [chans[i:i + self.kb] for i in range(0, len(chans), self.kb)]
        bursts = ceil_div(t1, w)                                    # bursts holding tokens below t1
        first = v * bpr + max(guard, 0)                             # first local burst the instruction touches
        size = ins.op_size
        for s, members in enumerate(slices):
            end = ceil_div(bursts - s, len(slices)) if bursts > s else 0   # this slice's local bursts below t1
            if end > first:
                mask |= sum(1 << c for c in members)
            if guard >= 0 and any(ins.ch_mask >> c & 1 for c in members):
                size = max(0, min(ins.op_size, end - first))
        return mask & ins.ch_mask, size
