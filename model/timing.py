"""Timing rules as data, and a legality checker for timed command traces.

Each :class:`Rule` says: after a command of one of ``prev`` ops issues at cycle ``t``, a command of
one of ``next`` ops may issue at cycle ``t + gap`` at the earliest, within ``scope``. Scopes:

* ``row``: the channel's all-bank row state (ACT16 / PREA / REF / MAC16 share every bank);
* ``column``: the channel's column-command slot (MAC16, RDMAC16: nCCDS / nCCDL cadence);
* ``bus``: the channel's external data bus (WRGB, WRMAC16 writes; RDMAC16 reads; turnarounds).

Gaps are expressions over a :class:`~pimphony.model.config.TimingPreset`, written once here (docs/sources.md
§timing, in the style of Ramulator 2.0's timing constraints and LiteDRAM's timing checker). The
cycle model, the RTL's counters and the testbench's checker are all built from :func:`rules`.

Our opcodes map to AiM commands: ACT = ACT16, PRE = PREA, REF = REFab, WR_INP = WRGB,
WR_BIAS = WRMAC16, MAC = MAC16, RD_OUT = RDMAC16.

One rule depends on the hardware, not the timing preset: in AiM an RD-OUT (RDMAC16) reads the output
registers through the column path, so it is a column command and takes a MAC's nCCDS slot. PIMphony's
OBuf is dual-ported ("MACs run while inputs load and outputs drain", docs/sources.md §dcs): with
``obuf_dual_port`` an RD-OUT leaves the column slot to the MACs and only occupies the data bus (nBL
between reads, plus the read/write turnarounds). :func:`latencies` gives when each command's effect
is complete (data written, result readable), which the issue policies use for true dependencies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .config import TimingPreset
from .isa import CHANNEL_OPCODES, Opcode

ACT, PRE, REF = Opcode.ACT, Opcode.PRE, Opcode.REF
WR_INP, WR_BIAS, MAC, RD_OUT = Opcode.WR_INP, Opcode.WR_BIAS, Opcode.MAC, Opcode.RD_OUT
WRITES = frozenset({WR_INP, WR_BIAS})
REGISTER_MODE = frozenset({WR_INP, WR_BIAS, RD_OUT})
"""Commands AiM issues in register mode (aim_simulator ``src/base/request.h``: WR_GB, WR_BIAS and RD_MAC
have ``require_reg_RW_mod``); ACT, PRE, MAC and REF are bank commands. AiM's controller issues a TMOD on
every switch between the two and nothing follows it for ``nMODCH`` cycles. PIMphony's channel pays no
switch, on the paper's text: its DCS controller issues "out-of-order based on real-time data
dependencies", *overlapping* data movement (WR-INP, RD-OUT) with compute (MAC), which a nMODCH pause at
every switch would forbid; and its description of the static baseline it improves on (Sec. V-B: fixed
gaps t_WR-INP, t_MAC, t_RD-OUT, 32 B transfers t_CCDS apart) names no mode switch either. So only the
``aim`` baseline (:mod:`pimphony.scheduler.aim`) pays it."""
COLUMN = frozenset({MAC, RD_OUT})


@dataclass(frozen=True)
class Rule:
    """``next`` may issue no earlier than ``gap`` cycles after ``prev`` (in ``scope``)."""

    name: str
    prev: frozenset[Opcode]
    next: frozenset[Opcode]
    scope: str
    param: str
    gap: int


# name, prev ops, next ops, scope, expression (evaluated over the preset's parameters). Rule for rule,
# these are aim_simulator's channel-level constraints between the commands we model (arkhadem/aim_simulator
# src/dram/impl/GDDR6.cpp populate_timingcons at 0f28a07, AiM names in the comments); a test holds the
# minimum gap of every ordered pair equal to that file's, transcribed in tests/data/aim/rules.csv.
_TABLE: list[tuple[str, Iterable[Opcode], Iterable[Opcode], str, str]] = [
    ("ACT-ACT", [ACT], [ACT], "row", "nRC"),                      # ACT16 <-> ACT16
    ("ACT-ACT-RRD", [ACT], [ACT], "row", "nRRDL"),
    ("ACT-MAC", [ACT], [MAC], "row", "nRCDRDMAC"),                # ACT16 -> MAC16
    ("ACT-PRE", [ACT], [PRE], "row", "nRAS"),                     # ACT16 -> PREA
    ("ACT-REF", [ACT], [REF], "row", "nRC"),                      # ACT16 -> REFab
    ("MAC-PRE", [MAC], [PRE], "row", "nRTP"),                     # MAC16 -> PREA
    ("PRE-ACT", [PRE], [ACT], "row", "nRP"),                      # PREA -> ACT16
    ("PRE-PRE", [PRE], [PRE], "row", "nRP"),                      # PREA -> PREA
    ("PRE-REF", [PRE], [REF], "row", "nRP"),                      # PREA -> REFab
    ("REF-ACT", [REF], [ACT], "row", "nRFC"),                     # REFab -> ACT16
    ("COL-COL", COLUMN, COLUMN, "column", "nCCDS"),               # MAC16, RDMAC16: shared read path
    ("MAC16-COL", COLUMN, COLUMN, "column", "nCCDL"),             # all-bank column commands, same BG
    ("WR-WR", WRITES, WRITES, "bus", "nBL"),                      # WRGB, WRMAC16: external bus
    ("WR-WR-CCD", WRITES, WRITES, "bus", "nCCDS"),
    ("WRMAC16-WRMAC16", [WR_BIAS], [WR_BIAS], "bus", "nCCDL"),
    ("RD-RD", [RD_OUT], [RD_OUT], "bus", "nBL"),                  # RDMAC16 -> RDMAC16
    ("RD-WRGB", [RD_OUT], [WR_INP], "bus", "nCLREG + nBL + 3 - nCWLGB + nWPRE"),
    ("RD-WRMAC16", [RD_OUT], [WR_BIAS], "bus", "nCLREG + nBL + 3 - nCWLREG + nWPRE"),
    ("WRGB-RD", [WR_INP], [RD_OUT], "bus", "nCWLGB + nBL + nWTRS"),
    ("WRMAC16-RD", [WR_BIAS], [RD_OUT], "bus", "nCWLREG + nBL + nWTRS"),
    ("WRMAC16-RD-L", [WR_BIAS], [RD_OUT], "bus", "nCWLREG + nBL + nWTRL"),   # binds: 14 at the AiM preset
]


def _evaluate(expr: str, preset: TimingPreset) -> int:
    names = {k: v for k, v, _, _ in preset.describe()}
    value = eval(expr, {"__builtins__": {}}, names)  # the expressions are this module's own constants
    return int(value)


_DUAL_PORT_TABLE: list[tuple[str, Iterable[Opcode], Iterable[Opcode], str, str]] = [
    ("COL-COL", [MAC], [MAC], "column", "nCCDS"),
    ("MAC16-COL", [MAC], [MAC], "column", "nCCDL"),
]


def rules(preset: TimingPreset, obuf_dual_port: bool = False) -> list[Rule]:
    """The rule table filled with the preset's values (see the module docstring for the OBuf port)."""
    table = _TABLE
    if obuf_dual_port:
        replaced = {name for name, *_ in _DUAL_PORT_TABLE}
        table = [row for row in _TABLE if row[0] not in replaced] + _DUAL_PORT_TABLE
    return [Rule(name, frozenset(p), frozenset(n), scope, expr, _evaluate(expr, preset))
            for name, p, n, scope, expr in table]


def latencies(preset: TimingPreset) -> dict[Opcode, int]:
    """Cycles from issue until a command's effect is complete (docs/sources.md §timing).

    WR_INP: data in GBuf (nCWLGB + nBL); WR_BIAS: bias in the OBuf (nCWLREG + nBL); MAC: product
    accumulated (MAC16 latency 1); RD_OUT: data out of the OBuf (nCLREG + nBL); row commands and REF
    complete through the rules above (latency 1 = the next cycle).
    """
    return {ACT: 1, PRE: 1, REF: 1, WR_INP: preset.nCWLGB + preset.nBL, WR_BIAS: preset.nCWLREG + preset.nBL,
            MAC: 1, RD_OUT: preset.nCLREG + preset.nBL}


def latency_table(preset: TimingPreset) -> np.ndarray:
    """:func:`latencies` as an array indexed by channel opcode."""
    lat = latencies(preset)
    return np.array([lat[Opcode(k)] for k in range(CHANNEL_OPCODES)], dtype=np.int64)


def blocking_table(preset: TimingPreset) -> np.ndarray:
    """What the static (conventional, in-order) controller waits for after each command before it
    issues the next: the :func:`latency_table`, except that RD-OUT is a *blocking read* — the
    controller waits until its data is at the HUB (``nRDHUB``), as AiM's in-order controller blocks
    RD_MAC until executed (docs/sources.md §timing). Ping-pong and DCS drain the OBuf through its own port
    and wait only for the hazards of :func:`latency_table`."""
    table = latency_table(preset)
    table[Opcode.RD_OUT] = preset.nRDHUB
    return table


def completion_table(preset: TimingPreset, blocking_reads: bool) -> np.ndarray:
    """When a controller counts each command as complete: :func:`blocking_table` if it blocks on reads
    (:attr:`~pimphony.model.queue.QueueConfig.blocking_reads`), else :func:`latency_table`."""
    return blocking_table(preset) if blocking_reads else latency_table(preset)


def gap_matrix(preset: TimingPreset, obuf_dual_port: bool = False) -> np.ndarray:
    """``G[prev, next]``: the largest gap any rule imposes between two opcodes (0 = none)."""
    g = np.zeros((CHANNEL_OPCODES, CHANNEL_OPCODES), dtype=np.int64)
    for r in rules(preset, obuf_dual_port):
        for p in r.prev:
            for n in r.next:
                g[p, n] = max(g[p, n], r.gap)
    return g


class TimingChecker:
    """Checks commands one at a time, in issue order, against the rule table (and one command per
    cycle). The trace checker, the cycle model and the testbench's monitor all use this class."""

    def __init__(self, preset: TimingPreset, obuf_dual_port: bool = False):
        self.table = rules(preset, obuf_dual_port)
        self._before = {op: [(r, p) for r in self.table if op in r.next for p in r.prev] for op in Opcode}
        """Per opcode, the (rule, earlier opcode) pairs that constrain it, in table order."""
        self.last: dict[Opcode, tuple[int, int]] = {}
        self.prev_cycle: int | None = None

    def observe(self, op: Opcode, cycle: int, index: int) -> list[str]:
        """Violations of command ``index`` (opcode ``op``) issued at ``cycle``; cycles must not decrease."""
        out = []
        if self.prev_cycle is not None and cycle == self.prev_cycle:
            out.append(f"cycle {cycle}: BUS: command {index} ({op.name}) shares its cycle with another command")
        self.prev_cycle = cycle
        last = self.last
        for r, p in self._before[op]:
            if p in last and cycle - last[p][0] < r.gap:
                t0, j = last[p]
                out.append(f"cycle {cycle}: {r.name}: {op.name} (command {index}) {cycle - t0} cycles after "
                           f"{Opcode(p).name} (command {j}) at cycle {t0}; needs {r.param} = {r.gap}")
        self.last[op] = (cycle, index)
        return out


def check_trace(ops: np.ndarray, cycles: np.ndarray, preset: TimingPreset, obuf_dual_port: bool = False) -> list[str]:
    """Every violation in a timed trace of one channel, as ``"cycle C: RULE: ..."`` lines.

    ``ops`` and ``cycles`` give each command's opcode and issue cycle (any order). Besides the rule
    table it checks that at most one command issues per cycle (one command bus per channel).
    """
    ops = np.asarray(ops, dtype=np.int64)
    cycles = np.asarray(cycles, dtype=np.int64)
    checker = TimingChecker(preset, obuf_dual_port)
    out: list[str] = []
    for i in np.argsort(cycles, kind="stable").tolist():
        out.extend(checker.observe(Opcode(int(ops[i])), int(cycles[i]), i))
    return out
