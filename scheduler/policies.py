"""Command issue policies for one PIM channel controller: static, ping-pong and DCS.

This is the cycle-exact reference of the RTL ``DcsQueue``. One engine runs all three policies; they
differ in how many queues there are and how finely hazards are tracked:

=========  =======================  ==================================  ==================================
policy     queues                   hazards tracked per                 a command may issue when
=========  =======================  ==================================  ==================================
static     one, in order            --                                  the previous command has completed
                                                                        (fixed gaps t_WR-INP, t_MAC,
                                                                        t_RD-OUT = the command latencies)
ping-pong  I/O + compute            buffer half (GBuf and OBuf split    the last accessor of its half(s)
                                    into two regions)                   has completed
DCS        I/O + compute            entry                               the last accessor of its entry(s)
                                                                        has completed
=========  =======================  ==================================  ==================================

and in every policy the timing rules of :mod:`pimphony.model.timing` hold.

Cycle semantics (what the RTL implements):

* **Dispatch.** Commands arrive in program order, at most one per cycle. A command arriving in
  cycle ``t`` enters its queue — WR_INP, WR_BIAS, RD_OUT the I/O queue; MAC, ACT, PRE, REF the
  compute queue (one queue for all under static) — if that queue has a free slot at the start of
  cycle ``t``; it may issue from cycle ``t + 1``. On entry it reads the dependency table (D-Table):
  its dependencies are the last accessors of the GBuf region and/or OBuf region it touches (MAC both,
  WR_INP the GBuf, WR_BIAS and RD_OUT the OBuf), and it becomes their last accessor.
* **Issue.** In each cycle at most one command issues: a queue head is *ready* when it has been in
  the queue for a cycle, every dependency has issued and completed (issue cycle + latency <= now;
  the status table, S-Table, holds the completion cycles), and every timing rule allows it. Static
  additionally waits for the previous command's completion. If both heads are ready the older in
  program order issues.
* **Refresh.** Every nREFI cycles a refresh falls due; the controller takes it at the first PRE
  issued at or after that moment (a postponed refresh, as DRAM allows), inserting an all-bank REF at
  the first cycle the rules allow (nRP after the PRE) and holding that cycle's issue slot. The next
  ACT then waits nRFC.

Since every queue is in order, tracking only the last accessor is enough: earlier accessors of the
same region sit before it in their own queue, or it already depends on them.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

import numpy as np
from pimphony.model.config import ModuleOrg, TimingPreset
from pimphony.model.isa import Opcode
from pimphony.model.timing import gap_matrix, latencies


class Policy(enum.IntEnum):
    """Issue policy; the value is the RTL's mode register encoding."""

    STATIC = 0
    PINGPONG = 1
    DCS = 2


IO_OPS = frozenset({Opcode.WR_INP, Opcode.WR_BIAS, Opcode.RD_OUT})
GBUF_USERS = frozenset({Opcode.WR_INP, Opcode.MAC})
OBUF_USERS = frozenset({Opcode.WR_BIAS, Opcode.MAC, Opcode.RD_OUT})


@dataclass(frozen=True)
class QueueConfig:
    """Sizes of one channel controller's command queue and tables."""

    policy: Policy = Policy.DCS
    io_depth: int = 16
    compute_depth: int = 16
    gbuf_entries: int = 64
    obuf_entries: int = 16
    tag_bits: int = 6

    def __post_init__(self):
        for name in ("io_depth", "compute_depth", "gbuf_entries", "obuf_entries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.policy == Policy.PINGPONG and (self.gbuf_entries < 2 or self.obuf_entries < 2):
            raise ValueError("ping-pong needs at least 2 GBuf and 2 OBuf entries (two halves each)")
        if (1 << self.tag_bits) < self.io_depth + self.compute_depth:
            queued = self.io_depth + self.compute_depth
            raise ValueError(f"tag_bits={self.tag_bits} cannot name {queued} queued commands")

    @classmethod
    def for_org(cls, org: ModuleOrg, policy: Policy, **kw) -> QueueConfig:
        obuf = org.outreg_entries if policy == Policy.STATIC else org.obuf_entries
        return cls(policy=policy, gbuf_entries=org.gbuf_entries, obuf_entries=kw.pop("obuf_entries", obuf), **kw)

    @property
    def gbuf_regions(self) -> int:
        """Hazard-tracking regions of the GBuf: one per entry (DCS) or two halves (ping-pong)."""
        return {Policy.DCS: self.gbuf_entries, Policy.PINGPONG: 2, Policy.STATIC: 1}[self.policy]

    @property
    def obuf_regions(self) -> int:
        return {Policy.DCS: self.obuf_entries, Policy.PINGPONG: 2, Policy.STATIC: 1}[self.policy]

    def table_bytes(self) -> dict[str, int]:
        """Storage of the D-Table (a valid bit + last-accessor tag per tracked region) and the S-Table
        (per tag: valid, is-MAC, completion cycle) for DCS-style tracking of every entry."""
        tag = self.tag_bits
        completion_bits = 16
        d_bits = (self.gbuf_entries + self.obuf_entries) * (1 + tag)
        s_bits = (1 << tag) * (1 + 1 + completion_bits)
        return {"d_table": -(-d_bits // 8), "s_table": -(-s_bits // 8), "total": -(-(d_bits + s_bits) // 8)}


def dependencies(ops: np.ndarray, gbuf: np.ndarray, obuf: np.ndarray,
                 cfg: QueueConfig) -> tuple[np.ndarray, np.ndarray]:
    """D-Table lookups in program order: for each command, the index of the last earlier command
    that accessed the same GBuf region and the same OBuf region (-1 = none)."""
    g_shift = cfg.gbuf_entries // cfg.gbuf_regions
    o_shift = cfg.obuf_entries // cfg.obuf_regions
    last_g = [-1] * cfg.gbuf_regions
    last_o = [-1] * cfg.obuf_regions
    dep_g = np.full(len(ops), -1, dtype=np.int64)
    dep_o = np.full(len(ops), -1, dtype=np.int64)
    if cfg.policy == Policy.STATIC:
        return dep_g, dep_o
    for i, (op, g, o) in enumerate(zip(ops.tolist(), gbuf.tolist(), obuf.tolist(), strict=True)):
        if op in GBUF_USERS:
            r = min(g // g_shift, cfg.gbuf_regions - 1)
            dep_g[i] = last_g[r]
            last_g[r] = i
        if op in OBUF_USERS:
            r = min(o // o_shift, cfg.obuf_regions - 1)
            dep_o[i] = last_o[r]
            last_o[r] = i
    return dep_g, dep_o


@dataclass
class IssueResult:
    """Issue cycle of every stream command, and the cycles of the refreshes the controller inserted."""

    cycles: np.ndarray
    refresh: np.ndarray


def issue_cycles(ops: np.ndarray, gbuf: np.ndarray, obuf: np.ndarray, timing: TimingPreset,
                 cfg: QueueConfig) -> IssueResult:
    """Issue cycles of one channel's stream (program order) under ``cfg.policy``, with refresh."""
    n = len(ops)
    ops_l = [int(x) for x in ops.tolist()]
    if n and (min(gbuf.tolist(), default=0) < 0 or max(gbuf.tolist(), default=0) >= cfg.gbuf_entries):
        raise ValueError(f"a GBuf index lies outside 0..{cfg.gbuf_entries - 1}")
    if n and (min(obuf.tolist(), default=0) < 0 or max(obuf.tolist(), default=0) >= cfg.obuf_entries):
        raise ValueError(f"an OBuf index lies outside 0..{cfg.obuf_entries - 1}")
    dep_g, dep_o = dependencies(ops, gbuf, obuf, cfg)
    dg, do = dep_g.tolist(), dep_o.tolist()
    gap = gap_matrix(timing).tolist()
    lat_map = latencies(timing)
    lat = [lat_map[Opcode(k)] for k in range(len(Opcode))]
    static = cfg.policy == Policy.STATIC
    if static:
        klass = [0] * n
        depth = [cfg.io_depth + cfg.compute_depth]
    else:
        klass = [0 if op in IO_OPS else 1 for op in ops_l]
        depth = [cfg.io_depth, cfg.compute_depth]
    queues: list[deque[int]] = [deque() for _ in depth]
    issue = [-1] * n
    done = [0] * n                 # completion cycle (valid once issued)
    enter = [0] * n                # dispatch cycle
    earliest = [0] * len(Opcode)   # timing-rule bound per opcode
    prev_done = 0                  # static: completion of the previous command
    refresh: list[int] = []
    ref_due = timing.nREFI
    ref_op, pre_op = int(Opcode.REF), int(Opcode.PRE)
    t, p, issued = 0, 0, 0
    big = 1 << 62
    while issued < n:
        # -- issue -------------------------------------------------------------------------------
        best, best_ready = -1, big
        for q in queues:
            if not q:
                continue
            i = q[0]
            ready = max(enter[i] + 1, earliest[ops_l[i]])
            if static:
                ready = max(ready, prev_done)
            for d in (dg[i], do[i]):
                if d >= 0:
                    ready = max(ready, done[d]) if issue[d] >= 0 else big
            if ready < best_ready or (ready == best_ready and i < best):
                best, best_ready = i, ready
        did = False
        if best >= 0 and best_ready <= t:
            op = ops_l[best]
            queues[klass[best]].popleft()
            issue[best] = t
            done[best] = t + lat[op]
            prev_done = t + max(1, lat[op])
            row = gap[op]
            for k in range(len(earliest)):
                if t + row[k] > earliest[k]:
                    earliest[k] = t + row[k]
            issued += 1
            did = True
            if op == pre_op and t >= ref_due:
                r = max(t + 1, earliest[ref_op])
                refresh.append(r)
                ref_due += timing.nREFI * (1 + (r - ref_due) // timing.nREFI)
                row = gap[ref_op]
                for k in range(len(earliest)):
                    if r + row[k] > earliest[k]:
                        earliest[k] = r + row[k]
                    if earliest[k] == r:
                        earliest[k] = r + 1          # the REF holds its cycle's issue slot
                prev_done = max(prev_done, r + 1)
        # -- dispatch (slots are counted at the start of the cycle) -------------------------------
        if p < n:
            k = klass[p]
            occupancy = len(queues[k]) + (1 if did and klass[best] == k else 0)
            if occupancy < depth[k]:
                queues[k].append(p)
                enter[p] = t
                p += 1
                did = True
        # -- advance time, skipping cycles in which nothing can happen ------------------------------
        if did or best_ready <= t + 1:
            t += 1
        else:
            t = best_ready
    return IssueResult(np.asarray(issue, dtype=np.int64), np.asarray(refresh, dtype=np.int64))


def issuer(cfg: QueueConfig):
    """An issue function for :func:`pimphony.model.perf.channel.run_channel`."""

    def issue(ops: np.ndarray, gbuf: np.ndarray, obuf: np.ndarray, timing: TimingPreset):
        res = issue_cycles(ops, gbuf, obuf, timing, cfg)
        return res.cycles, res.refresh

    return issue
