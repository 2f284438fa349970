"""The proof catalogue: which harness, which property groups, in which mode and to which depth.

DCS queue:

Induction does not close on the DCS queue's harness: the queue's RAM and its pointers can start a
k-step induction trace in a state no reset reaches (a head holding an opcode no program has), and the
harness may not look inside the block to rule that out. Each group is therefore checked by bounded
model checking from reset, every cycle up to its depth, at the timing of
:func:`~.configs.formal_timing` (the shipped preset / 32): the longest rule gap there is nRFC = 7 cycles,
the refresh interval 10, the longest latency 2; the depths below say what each covers.

DPA controller: for the same reason (its free list, VA2PA table and instruction buffer are RAMs),
bounded from reset at the sizes of :func:`~.configs.formal_dpa`. The controller has no timing table;
its longest fixed wait is the free list's rebuild after reset (one cycle per chunk, 8), and an
operation takes one cycle, or one per chunk it allocates or returns. The cover task's traces (every
status code, a wrapping allocation, RUNs) are replayed on the golden model, operation by operation.
"""

from __future__ import annotations

from dataclasses import replace

from pimphony.model.config import DEFAULT_TIMING, TimingPreset

from .configs import formal_dpa, formal_format, formal_queue, formal_timing
from .dcs import GROUPS as DCS_GROUPS
from .dcs import DcsHarness
from .dpa import GROUPS as DPA_GROUPS
from .dpa import DpaHarness
from .sby import ProofTask

BASE_TIMING = DEFAULT_TIMING
"""The shipped timing preset the proofs scale down."""

DCS_TASKS = (                                 # each catalogue runs cheapest first (pimphony mutate stops at a failure)
    ProofTask("dcs", "handshake", "bmc", 24, "as timing (below)"),
    ProofTask("dcs", "refresh", "bmc", 34, "three refresh intervals (10) and a refresh cycle (nRFC = 7)"),
    ProofTask("dcs", "idle", "bmc", 16, "the longest rule gap (7) and blocking wait (nRDHUB = 3) after a queue fill"),
    ProofTask("dcs", "timing", "bmc", 24, "three times the longest rule gap (nRFC = 7) and two refresh intervals"),
    ProofTask("dcs", "order", "bmc", 12, "fills and drains both queues (2 + 2) three times"),
    ProofTask("dcs", "progress", "bmc", 8, "as hazards (below)"),
    ProofTask("dcs", "hazards", "bmc", 8, "the longest rule gap (7) after a command enters; beyond the longest "
              "latency (2); the solver's limit (depth 9 does not finish in 10 minutes)"),
)
DPA_TASKS = (
    ProofTask("dpa", "run", "bmc", 56, "as protocol (below), and RUNs over two blocks"),
    ProofTask("dpa", "translate", "bmc", 30, "as status (below)"),
    ProofTask("dpa", "protocol", "bmc", 52, "the rebuild, an OPEN of the whole pool (8 chunks), a program and a RUN, "
              "and a reset with its rebuild (an operation is decided 2 to 5 cycles after it is taken)"),
    ProofTask("dpa", "conservation", "bmc", 30, "as status (below)"),
    ProofTask("dpa", "status", "bmc", 30, "the free list's rebuild after reset (8 cycles) and 22 cycles of operations: "
              "an OPEN of half the pool and a CLOSE, two OPENs, or a PROGRAM and its LOADs (an OPEN is decided 5 "
              "cycles after it is taken, a TRANSLATE 3, the others 2); the solver's limit grows with each step"),
)
COVER_DEPTH = {"dcs": 24, "dpa": 52}
COVER_REASON = {"dcs": "every Cover statement of the harness",
                "dpa": "every Cover statement of the harness (reached by step 49); every trace replayed on the "
                       "golden model"}


def dcs_harness(groups=None, dut_timing: TimingPreset | None = None, covers_only: bool = False) -> DcsHarness:
    """The DCS queue at the formal sizes; ``dut_timing`` (a full-size preset) builds the block from
    another table than the monitor's, scaled the same way."""
    fmt = formal_format()
    timing = formal_timing(TimingPreset.load(BASE_TIMING))
    dut = None if dut_timing is None else formal_timing(dut_timing)
    return DcsHarness(fmt, timing, formal_queue(fmt), groups, dut_timing=dut, covers_only=covers_only)


def dpa_harness(groups=None, covers_only: bool = False) -> DpaHarness:
    """The DPA controller at the formal sizes (:func:`~.configs.formal_dpa`)."""
    return DpaHarness(formal_dpa(), groups, covers_only=covers_only)


HARNESSES = {"dcs": dcs_harness, "dpa": dpa_harness}
TIMED = frozenset({"dcs"})
"""Blocks built from a timing preset (``--dut-timing`` applies to them)."""
GROUPS = {"dcs": DCS_GROUPS, "dpa": DPA_GROUPS}
TASKS = {"dcs": DCS_TASKS, "dpa": DPA_TASKS}


def tasks(blocks: list[str], mode: str | None = None, depth: int | None = None,
          groups: list[str] | None = None) -> list[ProofTask]:
    """The catalogue's tasks for ``blocks``; ``mode`` and ``depth`` override the catalogue's; a cover
    task per block (``mode`` ``cover``, or by default after the property tasks)."""
    out = []
    for block in blocks:
        if mode != "cover":
            for task in TASKS[block]:
                if groups and task.group not in groups:
                    continue
                out.append(replace(task, mode=mode or task.mode, depth=depth or task.depth))
        if mode in (None, "cover") and not groups:
            out.append(ProofTask(block, "covers", "cover", depth or COVER_DEPTH[block], COVER_REASON[block]))
    return out


def harness_for(task: ProofTask, dut_timing: TimingPreset | None = None):
    build = HARNESSES[task.block]
    timed = {"dut_timing": dut_timing} if task.block in TIMED else {}
    if task.mode == "cover":
        return build(None, covers_only=True, **timed)
    return build([task.group], **timed)


def run_tasks(selected: list[ProofTask], work, jobs: int = 2, dut_timing: TimingPreset | None = None,
              progress=None, timeout: float = 1800) -> list:
    """Run ``selected`` (``jobs`` SymbiYosys runs at a time) in ``work``; results in the tasks' order."""
    from ..parallel import map_with_progress
    from .sby import run_task

    return map_with_progress(lambda task: run_task(task, harness_for(task, dut_timing), work, timeout), selected,
                             jobs, progress)
