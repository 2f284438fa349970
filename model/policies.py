"""Command issue policies for one PIM channel controller: static, ping-pong and DCS.

This is the cycle-exact reference of the RTL ``DcsQueue``. One engine runs all three policies; they
differ in how many queues there are and how finely hazards are tracked:

=========  =======================  ==================================  ==================================
policy     queues                   hazards tracked per                 a command may issue when
=========  =======================  ==================================  ==================================
static     one, in order            --                                  the previous command has completed
                                                                        (fixed gaps t_WR-INP, t_MAC,
                                                                        t_RD-OUT = the command latencies;
                                                                        a RD-OUT blocks until its data
                                                                        is at the HUB, nRDHUB)
ping-pong  I/O + compute            buffer half (GBuf and OBuf split    the last accessor of its half(s)
                                    into two regions)                   has completed
DCS        I/O + compute            entry                               the last accessor of its entry(s)
                                                                        has completed
=========  =======================  ==================================  ==================================

and in every policy the timing rules of :mod:`pimphony.model.timing` hold.

Cycle semantics (what the RTL implements):

* **Dispatch.** Commands arrive in program order, at most one per cycle. A command arriving in
  cycle ``t`` enters its queue — WR_INP, WR_BIAS, RD_OUT the I/O queue; MAC, ACT, PRE, REF the
  compute queue (under static every command uses the I/O queue) — if that queue has a free slot at
  the start of cycle ``t``; it may issue from cycle ``t + 2`` (``t + 3`` into a queue that is empty after this
  cycle's issue). On entry it reads the dependency table (D-Table):
  its dependencies are the last accessors of the GBuf region and/or OBuf region it touches (MAC both,
  WR_INP the GBuf, WR_BIAS and RD_OUT the OBuf), and it becomes their last accessor.
* **Issue.** In each cycle at most one command issues: a queue head is *ready* when it was already
  the head in the previous cycle (a queue that issued in cycle ``t`` issues again in ``t + 2`` at the
  earliest: the controller decides in cycle ``t`` from readiness computed in ``t - 1``, see below; and
  a command that entered an empty queue in ``t`` is its head from ``t + 2``, the queue RAM's registered
  read of what was written, so it issues in ``t + 3`` at the earliest), every dependency
  has issued and completed (issue cycle + latency <= now; the status table, S-Table, holds the
  completion cycles), and every timing rule allows it. Static additionally waits for the previous
  command's completion, a RD-OUT's data at the HUB included
  (:func:`~pimphony.model.timing.blocking_table`). If both heads are ready the older in program
  order issues.
* **Pipeline.** The RTL computes in cycle ``t - 1`` whether each head may issue in ``t``: from the
  head itself, the timing counters as the command issued in ``t - 1`` (by the other queue or a
  refresh) leaves them, and the S-Table one cycle ahead. So the decision in ``t`` is a choice among
  registered bits, and the issue rate stays one command per cycle while both queues hold work (the
  two queues alternate); one queue alone issues every other cycle at most.
* **Refresh.** A refresh falls due at every multiple of nREFI cycles. A PRE issued while one is due
  makes a REF pending (a postponed refresh, as DRAM allows); a pending REF issues, before any queued
  command, in the first cycle the rules allow it (nRP after the PRE). The next ACT then waits nRFC.
  Refreshes due while one is pending merge into it.

Since every queue is in order, tracking only the last accessor is enough: earlier accessors of the
same region sit before it in their own queue, or it already depends on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimphony.model.compiled import compiled
from pimphony.model.config import TimingPreset
from pimphony.model.isa import IO_OPCODES, Opcode
from pimphony.model.queue import GBUF_USERS, OBUF_USERS, Policy, QueueConfig
from pimphony.model.timing import blocking_table, gap_matrix, latency_table


def dependencies(ops: np.ndarray, gbuf: np.ndarray, obuf: np.ndarray,
                 cfg: QueueConfig) -> tuple[np.ndarray, np.ndarray]:
    """D-Table lookups in program order: for each command, the index of the last earlier command
    that accessed the same GBuf region and the same OBuf region (-1 = none)."""
    ops = np.asarray(ops, dtype=np.int64)
    if cfg.policy == Policy.STATIC:
        return np.full(len(ops), -1, dtype=np.int64), np.full(len(ops), -1, dtype=np.int64)
    uses_g = np.isin(ops, [int(o) for o in GBUF_USERS])
    uses_o = np.isin(ops, [int(o) for o in OBUF_USERS])
    g_region = np.minimum(np.asarray(gbuf, dtype=np.int64) // (cfg.gbuf_entries // cfg.gbuf_regions),
                          cfg.gbuf_regions - 1)
    o_region = np.minimum(np.asarray(obuf, dtype=np.int64) // (cfg.obuf_entries // cfg.obuf_regions),
                          cfg.obuf_regions - 1)
    return (_last_accessor(uses_g, g_region, cfg.gbuf_regions), _last_accessor(uses_o, o_region, cfg.obuf_regions))


def _last_accessor_py(uses, region, n_regions):
    """For each command that uses a region: the previous command that used the same region."""
    last = np.full(n_regions, -1, dtype=np.int64)
    dep = np.full(uses.shape[0], -1, dtype=np.int64)
    for i in range(uses.shape[0]):
        if uses[i]:
            r = region[i]
            dep[i] = last[r]
            last[r] = i
    return dep


@dataclass
class IssueResult:
    """Issue cycle of every stream command, the cycle each entered its queue, the cycles of the refreshes
    the controller inserted, and the cycle from which the next refresh is due."""

    cycles: np.ndarray
    refresh: np.ndarray
    ref_due: int
    earliest: np.ndarray
    """Per opcode, the first cycle the timing rules allow it after the stream, a refresh that was
    pending at its end included (the controller issues it even with its queues empty)."""
    taken: np.ndarray
    """The cycle each command entered its queue (the ``cmd_in`` handshake): its arrival or, with the
    queue full, the first cycle after that with a free slot."""


def issue_cycles(ops: np.ndarray, gbuf: np.ndarray, obuf: np.ndarray, timing: TimingPreset,
                 cfg: QueueConfig, arrive: np.ndarray | None = None, start: int = 0,
                 ref_due: int | None = None, earliest: np.ndarray | None = None) -> IssueResult:
    """Issue cycles of one channel's stream (program order) under ``cfg.policy``, with refresh.

    By default the stream starts at cycle 0 after reset and a command can arrive in any cycle. For a
    stream that is one phase of a longer run: ``start`` is the cycle it begins (absolute), ``arrive``
    the earliest cycle each command can arrive (the sequencer's pace), and ``ref_due`` and ``earliest``
    the refresh and timing state the previous phase left (:attr:`IssueResult.ref_due`,
    :attr:`IssueResult.earliest`; default: due at the next multiple of nREFI after reset, no rule
    pending)."""
    ops = np.asarray(ops, dtype=np.int64)
    gbuf = np.asarray(gbuf, dtype=np.int64)
    obuf = np.asarray(obuf, dtype=np.int64)
    if len(ops) and (gbuf.min() < 0 or gbuf.max() >= cfg.gbuf_entries):
        raise ValueError(f"a GBuf index lies outside 0..{cfg.gbuf_entries - 1}")
    if len(ops) and (obuf.min() < 0 or obuf.max() >= cfg.obuf_entries):
        raise ValueError(f"an OBuf index lies outside 0..{cfg.obuf_entries - 1}")
    dep_g, dep_o = dependencies(ops, gbuf, obuf, cfg)
    lat = latency_table(timing)
    static = cfg.policy == Policy.STATIC
    depth = np.array([cfg.io_depth, cfg.compute_depth], dtype=np.int64)
    if static:
        klass = np.zeros(len(ops), dtype=np.int64)
    else:
        klass = np.where(np.isin(ops, [int(o) for o in IO_OPCODES]), 0, 1).astype(np.int64)
    gap = gap_matrix(timing, cfg.obuf_dual_port)
    arrive = np.zeros(len(ops), dtype=np.int64) if arrive is None else np.asarray(arrive, dtype=np.int64)
    due = timing.nREFI * (start // timing.nREFI + 1) if ref_due is None else int(ref_due)
    rules = np.zeros(gap.shape[0], dtype=np.int64) if earliest is None else np.asarray(earliest, dtype=np.int64)
    block = blocking_table(timing)
    issue, refresh, n_ref, due, after, taken = _engine(ops, dep_g, dep_o, klass, depth, gap, lat, block, static,
                                                timing.nREFI,
                                                int(Opcode.REF), int(Opcode.PRE), arrive, int(start), due, rules)
    return IssueResult(issue, refresh[:n_ref].copy(), int(due), after, taken)


def _engine_py(ops, dep_g, dep_o, klass, depth, gap, lat, block, static, n_refi, ref_op, pre_op, arrive, start, ref_due,
               earliest0):
    """The cycle loop of the module docstring, on arrays (compiled with numba when available); from
    cycle ``start``, command ``p`` arriving no earlier than ``arrive[p]``, the next refresh due at
    ``ref_due``, each opcode allowed from ``earliest0``. Returns the issue cycles, the refresh cycles
    (the first ``n_ref``), ``n_ref``, the next due cycle, the rules' state after the stream (with
    a refresh still pending at its end issued) and the cycle each command entered its queue."""
    n = ops.shape[0]
    n_ops = gap.shape[0]
    n_q = 1 if static else 2
    # per-class member lists: queue k holds members[k][head[k]:tail[k]]
    members = np.empty((2, n), dtype=np.int64)
    count = np.zeros(2, dtype=np.int64)
    for i in range(n):
        k = klass[i]
        members[k, count[k]] = i
        count[k] += 1
    head = np.zeros(2, dtype=np.int64)
    tail = np.zeros(2, dtype=np.int64)
    issue = np.full(n, -1, dtype=np.int64)
    done = np.zeros(n, dtype=np.int64)
    enter = np.zeros(n, dtype=np.int64)
    visible = np.zeros(n, dtype=np.int64)             # the first cycle it could be its queue's head
    big = 1 << 62
    last = np.full(2, -big, dtype=np.int64)       # the cycle each queue last issued
    earliest = earliest0.copy()
    refresh = np.empty(n // 2 + 2, dtype=np.int64)
    n_ref = 0
    prev_done = start
    t = start
    p = 0
    issued = 0
    ref_pending = False
    while issued < n:
        # -- issue: a pending refresh first, else the oldest ready queue head ----------------------
        best = -1
        best_q = -1
        next_ready = big
        did = False
        popped = -1
        ref_now = ref_pending and earliest[ref_op] <= t
        for q in range(n_q):
            if head[q] == tail[q]:
                continue
            i = members[q, head[q]]
            ready = max(visible[i] + 1, last[q] + 2, earliest[ops[i]])
            if static:
                ready = max(ready, prev_done)
            d = dep_g[i]
            if d >= 0:
                ready = max(ready, done[d]) if issue[d] >= 0 else big
            d = dep_o[i]
            if d >= 0:
                ready = max(ready, done[d]) if issue[d] >= 0 else big
            next_ready = min(next_ready, ready)
            if ready <= t and (best < 0 or i < best):
                best = i
                best_q = q
        if ref_pending:
            next_ready = min(next_ready, earliest[ref_op])
        if ref_now:
            if n_ref == refresh.shape[0]:
                grown = np.empty(2 * n_ref, dtype=np.int64)
                grown[:n_ref] = refresh
                refresh = grown
            refresh[n_ref] = t
            n_ref += 1
            ref_pending = False
            ref_due += n_refi * (1 + (t - ref_due) // n_refi)
            for k in range(n_ops):
                if t + gap[ref_op, k] > earliest[k]:
                    earliest[k] = t + gap[ref_op, k]
            prev_done = max(prev_done, t + 1)
            did = True
        elif best >= 0:
            op = ops[best]
            head[best_q] += 1
            last[best_q] = t
            popped = best_q
            issue[best] = t
            done[best] = t + lat[op]
            prev_done = t + max(1, block[op])
            for k in range(n_ops):
                if t + gap[op, k] > earliest[k]:
                    earliest[k] = t + gap[op, k]
            issued += 1
            did = True
            if op == pre_op and t >= ref_due:
                ref_pending = True
        # -- dispatch (slots are counted at the start of the cycle) -------------------------------
        if p < n:
            k = klass[p]
            occupancy = tail[k] - head[k] + (1 if popped == k else 0)
            if arrive[p] > t:
                if tail[k] - head[k] < depth[k]:
                    next_ready = min(next_ready, arrive[p])       # wake when it arrives
            elif occupancy < depth[k]:
                visible[p] = t + (2 if tail[k] == head[k] else 1)
                tail[k] += 1
                enter[p] = t
                p += 1
                did = True
        # -- advance time, skipping cycles in which nothing can happen ------------------------------
        if did or next_ready <= t + 1:
            t += 1
        else:
            t = next_ready
    if ref_pending:                                    # issued after the stream, before anything else
        t = max(t, earliest[ref_op])
        ref_due += n_refi * (1 + (t - ref_due) // n_refi)
        for k in range(n_ops):
            if t + gap[ref_op, k] > earliest[k]:
                earliest[k] = t + gap[ref_op, k]
    return issue, refresh, n_ref, ref_due, earliest, enter


_engine = compiled(_engine_py)
_last_accessor = compiled(_last_accessor_py)


@dataclass(frozen=True)
class PolicyIssuer:
    """An :class:`~pimphony.model.perf.channel.IssuePolicy`: issues with ``config`` and tells the cycle
    model which OBuf hardware the timing checker must assume."""

    config: QueueConfig

    @property
    def obuf_dual_port(self) -> bool:
        return self.config.obuf_dual_port

    @property
    def blocking_reads(self) -> bool:
        return self.config.blocking_reads

    def __call__(self, ops: np.ndarray, gbuf: np.ndarray, obuf: np.ndarray, timing: TimingPreset):
        res = issue_cycles(ops, gbuf, obuf, timing, self.config)
        return res.cycles, res.refresh


def issuer(cfg: QueueConfig) -> PolicyIssuer:
    """An issue policy for :func:`pimphony.model.perf.channel.run_channel`."""
    return PolicyIssuer(cfg)
