"""The DCS experiments of the paper (Fig. 7, Fig. 8, Fig. 18) on the channel cycle model.

Each function returns plain data; ``pimphony reproduce dcs`` renders them as Markdown and PNG.
Workloads: a GEMV in CENT's layout (:func:`~pimphony.scheduler.lower.lower_gemv`) and one channel's
share of decode attention for one (request, KV head) under TCP (head_dim 128, GQA group ``g``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimphony.model.config import ModelConfig, ModuleOrg, TimingPreset
from pimphony.model.isa import Opcode, channel_stream
from pimphony.model.perf.channel import ChannelTrace, run_channel
from pimphony.model.policies import issuer
from pimphony.model.program import Program
from pimphony.model.queue import Policy, QueueConfig

from . import aim
from .lower import AttentionLowering, lower_gemv
from .partition import make_partition


def gemv_trace(org: ModuleOrg, timing: TimingPreset, n: int, policy: Policy, open_row: bool = False) -> ChannelTrace:
    """A square n x n GEMV on one channel; ``open_row`` drops ACT/PRE (the row is already open)."""
    cfg = QueueConfig.for_org(org, policy)
    stream = channel_stream(lower_gemv(org, n, n, cfg.obuf_entries), 0)
    if open_row:
        stream = stream[(stream["op"] != Opcode.ACT) & (stream["op"] != Opcode.PRE)]
    return run_channel(stream, timing, issuer(cfg))


def aim_gemv(org: ModuleOrg, timing: TimingPreset, n: int, open_row: bool = False) -> aim.AimRun:
    """The same GEMV on aim_simulator's controller (refresh on, as for every other policy here);
    ``open_row``: its row is open when the run starts."""
    stream = channel_stream(lower_gemv(org, n, n, org.outreg_entries), 0)
    state = aim.ControllerState(open_row=int(stream["row"][stream["op"] == Opcode.MAC][0])) if open_row else None
    return aim.run_stream(stream, timing, refresh=True, state=state)


def attention_program(org: ModuleOrg, group: int, length: int, obuf_entries: int, partition: str = "tcp",
                      head_dim: int = 128) -> Program:
    """The program of one (request, KV head) of ``length`` tokens with ``group`` query heads, placed by
    ``partition`` on one module."""
    m = ModelConfig.from_mapping({"name": f"g{group}", "values": {"layers": 1, "heads": group, "kv_heads": 1,
                                                                 "head_dim": head_dim, "context": length}},
                                 "attention program")
    part = make_partition(partition, org, m.head_dim)
    return AttentionLowering(part, m.group, obuf_entries).lower(part.place(np.array([length]), 1))[0]


def attention_trace(org: ModuleOrg, timing: TimingPreset, group: int, policy: Policy, length: int,
                    phase: str = "both", channel: int = 0, **queues: int) -> ChannelTrace:
    """One channel's QK^T, SV or both for one (request, KV head) of ``length`` tokens; ``queues``
    (``io_depth``, ``compute_depth``) override the :class:`QueueConfig` defaults."""
    cfg = QueueConfig.for_org(org, policy, **queues)
    prog = attention_program(org, group, length, cfg.obuf_entries)
    return run_channel(channel_stream(prog.instructions(phase), channel), timing, issuer(cfg))


@dataclass
class Fig7:
    aim_cycles: int
    static_cycles: int
    dcs_cycles: int
    aim_run: aim.AimRun
    static_trace: ChannelTrace
    dcs_trace: ChannelTrace


def fig7(org: ModuleOrg, timing: TimingPreset, n: int = 32) -> Fig7:
    """The GEMV example: an n x n GEMV with its row open on AiM's controller (the baseline), our
    nRDHUB-calibrated static controller, and DCS."""
    a = aim_gemv(org, timing, n, open_row=True)
    s = gemv_trace(org, timing, n, Policy.STATIC, open_row=True)
    d = gemv_trace(org, timing, n, Policy.DCS, open_row=True)
    return Fig7(a.total_cycles, s.total_cycles, d.total_cycles, a, s, d)


def fig8(org: ModuleOrg, timing: TimingPreset, dims=(16, 32, 64, 128, 256, 512, 1024)) -> list[dict]:
    """MAC utilisation of an n x n GEMV against n, per policy, with the breakdowns of the aim baseline
    and of the calibrated static controller."""
    rows = []
    for n in dims:
        row: dict = {"dim": n}
        base = aim_gemv(org, timing, n)
        row["aim"] = base.mac_utilisation(timing)
        row["aim_breakdown"] = {k: v / base.total_cycles for k, v in base.breakdown(timing).items()}
        for policy in Policy:
            trace = gemv_trace(org, timing, n, policy)
            row[policy.name.lower()] = trace.mac_utilisation
            if policy == Policy.STATIC:
                row["breakdown"] = {k: v / trace.total_cycles for k, v in trace.breakdown.items()}
        rows.append(row)
    return rows


def fig18(org: ModuleOrg, timing: TimingPreset, groups=(1, 2, 4, 8), length: int = 32768) -> list[dict]:
    """DCS against ping-pong at the same buffers (64-entry GBuf, 16-entry OBuf), attention at d=128."""
    rows = []
    for g in groups:
        pp = attention_trace(org, timing, g, Policy.PINGPONG, length)
        dcs = attention_trace(org, timing, g, Policy.DCS, length)
        rows.append({"group": g, "pingpong": pp.mac_utilisation, "dcs": dcs.mac_utilisation,
                     "ratio": dcs.mac_utilisation / pp.mac_utilisation})
    return rows


SHALLOW_QUEUES = {"io_depth": 16, "compute_depth": 16}
"""The first proposal of docs/sources.md §dcs (16 + 16), against which the default queues are compared."""


def utilisation_table(org: ModuleOrg, timing: TimingPreset, groups=(1, 4, 8), length: int = 32768) -> list[dict]:
    """MAC utilisation (fraction of the MAC roofline) of QK^T and SV at d=128 per policy and group with
    the default queues, DCS with :data:`SHALLOW_QUEUES`, the row-switch bound (:func:`row_bound`), and
    the aim baseline on the static controller's program (AiM's output registers)."""
    rows = []
    for g in groups:
        for phase in ("qk", "sv"):
            row: dict = {"group": g, "phase": phase, "bound": row_bound(org, timing, g)}
            for policy in Policy:
                trace = attention_trace(org, timing, g, policy, length, phase)
                row[policy.name.lower()] = trace.mac_utilisation
                row[f"{policy.name.lower()}_violations"] = len(trace.violations)
                if policy == Policy.DCS:
                    row["dcs_breakdown"] = {k: v / trace.total_cycles for k, v in trace.breakdown.items()}
                if policy == Policy.STATIC:
                    row["aim"] = aim.run_stream(trace.stream, timing).mac_utilisation(timing)
            shallow = attention_trace(org, timing, g, Policy.DCS, length, phase, **SHALLOW_QUEUES)
            row["dcs_shallow"] = shallow.mac_utilisation
            row["dcs_shallow_violations"] = len(shallow.violations)
            rows.append(row)
    return rows


def context_table(org: ModuleOrg, timing: TimingPreset, group: int, lengths) -> list[dict]:
    """DCS MAC utilisation of QK^T and SV at d=128 against the context (default queues): refreshes
    take a steady share once a channel's work spans many nREFI periods."""
    rows = []
    for length in lengths:
        row: dict = {"length": length}
        for phase in ("qk", "sv"):
            trace = attention_trace(org, timing, group, Policy.DCS, length, phase)
            row[phase] = trace.mac_utilisation
            row[f"{phase}_refreshes"] = len(trace.refresh)
            row[f"{phase}_violations"] = len(trace.violations)
        rows.append(row)
    return rows


def row_bound(org: ModuleOrg, timing: TimingPreset, group: int, head_dim: int = 128,
              obuf_dual_port: bool = True) -> float:
    """Upper bound of the attention MAC utilisation from one K or V row, refresh aside.

    QK^T: a K row holds ``bursts_per_row / (d/16)`` key slots, each costs ``g * d/16`` MACs and ``g``
    RD-OUTs. SV: a V row holds ``bursts_per_row`` bursts of 16 tokens, each costs ``g`` MACs (one per
    query head), and a row's chains end in ``g`` RD-OUTs per slice, which the bound leaves out. Either
    way a row gives ``bursts_per_row * g`` MACs, each an nCCDS column slot; RD-OUTs take column slots too
    unless the OBuf is dual-ported; the row costs nRCDRDMAC (ACT to first MAC) + nRTP + nRP to switch.
    """
    kb = head_dim // org.burst_elements
    slots = org.bursts_per_row // kb
    mac = slots * group * kb * timing.nCCDS
    rd = 0 if obuf_dual_port else slots * group * timing.nCCDS
    row = timing.nRCDRDMAC + timing.nRTP + timing.nRP
    return mac / (mac + rd + row)
