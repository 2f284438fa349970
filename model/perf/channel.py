"""Cycle model of one PIM channel: timed traces, MAC utilisation and the paper's latency breakdown.

:func:`run_channel` issues a command stream with an *issue function* (the policies of
:mod:`pimphony.model.policies` provide them), checks the timed trace against the rule table, and
summarises it as a :class:`ChannelTrace`.

MAC utilisation is MAC-busy cycles over total cycles, a MAC keeping its unit busy for nCCDS cycles
(its cadence), so the MAC-bound roofline is 100%. The breakdown gives every cycle one cause, in the
terms of the paper's Fig. 8: a cycle is ``MAC`` if a MAC is busy, else ``REF`` inside a refresh, else
``ACT/PRE`` while a row opens or closes, else ``DT-GBuf`` while a WR-INP is in flight, else
``DT-OutReg`` while a WR-BIAS or RD-OUT is in flight (with blocking reads, the static baseline's, until
the RD-OUT's data is at the HUB), else ``mode switch`` within nMODCH of a TMOD (only AiM's controller
issues them, :mod:`pimphony.scheduler.aim`), else ``pipeline penalty`` (nothing in flight: the
controller is waiting on its own ordering).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..config import TimingPreset
from ..isa import COMMAND_DTYPE, Opcode
from ..timing import check_trace, completion_table, latency_table


class IssuePolicy(Protocol):
    """Issues a stream: (ops, gbuf, obuf, timing) -> (issue cycle of every command, inserted refreshes).
    ``obuf_dual_port`` names the OBuf hardware, which selects the timing rules the trace must obey;
    ``blocking_reads`` says the controller waits for a RD-OUT's data at the HUB (the static baseline)."""

    obuf_dual_port: bool
    blocking_reads: bool

    def __call__(self, ops: np.ndarray, gbuf: np.ndarray, obuf: np.ndarray,
                 timing: TimingPreset) -> tuple[np.ndarray, np.ndarray]: ...

CATEGORIES = ("MAC", "REF", "ACT/PRE", "DT-GBuf", "DT-OutReg", "mode switch", "pipeline penalty")


@dataclass
class ChannelTrace:
    """A timed command trace of one channel and its summary."""

    stream: np.ndarray
    cycles: np.ndarray
    refresh: np.ndarray
    total_cycles: int
    mac_busy: int
    breakdown: dict[str, int]
    violations: list[str]

    @property
    def mac_utilisation(self) -> float:
        return self.mac_busy / self.total_cycles if self.total_cycles else 0.0


def breakdown(ops: np.ndarray, cycles: np.ndarray, timing: TimingPreset, total: int,
              blocking_reads: bool = False, mode_switches: np.ndarray | None = None) -> dict[str, int]:
    """Cycles per cause (see the module docstring); the values add up to ``total``. With
    ``blocking_reads`` a RD-OUT's transfer lasts until its data is at the HUB (``nRDHUB``);
    ``mode_switches`` are the issue cycles of TMODs."""
    lat = completion_table(timing, blocking_reads)
    level = np.zeros(total + 1, dtype=np.int64)       # index into CATEGORIES, lower = higher priority
    level[:] = len(CATEGORIES) - 1

    def mark(starts: np.ndarray, length: np.ndarray | int, cat: int) -> None:
        if starts.size == 0:
            return
        ends = np.minimum(starts + length, total)
        diff = np.zeros(total + 2, dtype=np.int64)
        np.add.at(diff, starts, 1)
        np.add.at(diff, ends, -1)
        covered = np.cumsum(diff)[:total + 1] > 0
        np.minimum(level, np.where(covered, cat, len(CATEGORIES)), out=level)

    order = np.argsort(cycles, kind="stable")
    ops_s, t_s = ops[order], cycles[order]
    mark(t_s[ops_s == Opcode.MAC], timing.nCCDS, 0)
    mark(t_s[ops_s == Opcode.REF], timing.nRFC, 1)
    # a row is opening from ACT until the first MAC after it; closing for nRP after PRE
    act_t = t_s[ops_s == Opcode.ACT]
    mac_t = t_s[ops_s == Opcode.MAC]
    if act_t.size:
        nxt = np.searchsorted(mac_t, act_t)
        first_mac = np.where(nxt < mac_t.size, mac_t[np.minimum(nxt, mac_t.size - 1)], act_t + timing.nRCDRDMAC)
        mark(act_t, first_mac - act_t, 2)
    mark(t_s[ops_s == Opcode.PRE], timing.nRP, 2)
    mark(t_s[ops_s == Opcode.WR_INP], lat[Opcode.WR_INP], 3)
    out_io = (ops_s == Opcode.WR_BIAS) | (ops_s == Opcode.RD_OUT)
    mark(t_s[out_io], np.where(ops_s[out_io] == Opcode.RD_OUT, lat[Opcode.RD_OUT], lat[Opcode.WR_BIAS]), 4)
    if mode_switches is not None:
        mark(np.asarray(mode_switches, dtype=np.int64), timing.nMODCH, 5)
    counts = np.bincount(level[:total], minlength=len(CATEGORIES))
    return {name: int(counts[k]) for k, name in enumerate(CATEGORIES)}


def run_channel(stream: np.ndarray, timing: TimingPreset, issue: IssuePolicy, check: bool = True) -> ChannelTrace:
    """Issue ``stream`` (:data:`~pimphony.model.isa.COMMAND_DTYPE`, program order) with ``issue``."""
    if stream.dtype != COMMAND_DTYPE:
        raise TypeError("stream must be a COMMAND_DTYPE array")
    ops = stream["op"].astype(np.int64)
    cycles, refresh = issue(ops, stream["gbuf"].astype(np.int64), stream["obuf"].astype(np.int64), timing)
    if len(ops) == 0:
        return ChannelTrace(stream, cycles, refresh, 0, 0, dict.fromkeys(CATEGORIES, 0), [])
    all_ops = np.concatenate([ops, np.full(len(refresh), int(Opcode.REF))])
    all_cycles = np.concatenate([cycles, refresh])
    total = int((all_cycles + latency_table(timing)[all_ops]).max())
    n_mac = int((ops == Opcode.MAC).sum())
    violations = check_trace(all_ops, all_cycles, timing, issue.obuf_dual_port) if check else []
    return ChannelTrace(stream, cycles, refresh, total, n_mac * timing.nCCDS,
                        breakdown(all_ops, all_cycles, timing, total, issue.blocking_reads), violations)
