"""Cycle model of the PIM hub: one RUN's instructions through the sequencer and every channel's queue.

The hub executes a RUN phase by phase — the QK^T and SV phases of each block, separated by the
sequencer's barriers (:class:`pimphony.rtl.hub.Sequencer`). The model composes the channel cycle model
(:func:`pimphony.model.policies.issue_cycles`, the reference the RTL queue equals cycle for cycle)
with the pipeline of the DPA controller and the sequencer:

* **Supply.** The DPA decoder fetches one buffer entry per cycle (:attr:`DpaControllerModel.fetched`
  lists them in order, with the entries whose instruction the guards drop) and presents an
  instruction 2 cycles after its fetch; its pipeline stalls while its output waits for the
  sequencer. The sequencer takes an instruction in the cycle it presents the previous one's last
  repetition and offers repetition ``i`` in the ``i``-th cycle after it; the first instruction of a
  phase waits for the barrier. A channel's commands arrive at those cycles, at the earliest.
* **Channels.** Each channel issues its commands with the channel cycle model from the phase's start,
  its refresh timer and timing rules carried across phases (a refresh pending at a phase's end issues
  during the barrier); the phase ends when the last command of any channel has completed.
* **Pipeline constants** (:class:`HubPipeline`, from the RTL's documented pipeline, not fitted): the
  decoder's first fetch is ``run_to_fetch`` cycles after the RUN is offered; the next phase's
  first command may arrive ``epu_cycles + barrier`` cycles after the last completion (the drain,
  the EPU's handshake, the sequencer's phase register); the RUN ends ``finish`` cycles after the
  last completion (the host sees the hub idle).

What the model leaves out, and so what the validation against the RTL measures: the multicast's
coupling (a repetition waits until every channel of the mask has taken it, so one full queue stalls
the sequencer and the decoder for every channel; the model lets each channel's own queue stall only
its own supply).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import TimingPreset
from ..isa import Instruction, unroll
from ..policies import issue_cycles
from ..queue import QueueConfig
from ..timing import completion_table

EPU_CYCLES = 2
"""Cycles the EPU takes to acknowledge a phase barrier (its softmax work between QK^T and SV) in the
hub model, the benches that drive the RTL hub, and the baselines' predictions."""


@dataclass(frozen=True)
class HubPipeline:
    """Fixed latencies of the hub's pipeline around the channels (see the module docstring)."""

    run_to_fetch: int = 1
    fetch_to_present: int = 2
    barrier: int = 1
    finish: int = 1


@dataclass
class HubRunPrediction:
    cycles: int
    phases: list[tuple[int, int]]        # (first arrival, last completion) per phase, absolute


def phases_of(fetched: list[tuple[Instruction | None, bool]]) -> list[list[Instruction | None]]:
    """The fetched entries cut where the phase (``sv``) changes: where the sequencer's barriers are."""
    out: list[list[Instruction | None]] = []
    last = None
    for ins, sv in fetched:
        if sv != last:
            out.append([])
            last = sv
        out[-1].append(ins)
    return out


def predict_run(fetched: list[tuple[Instruction | None, bool]], channels: int, timing: TimingPreset,
                cfg: QueueConfig, start: int = 0, epu_cycles: int = EPU_CYCLES,
                pipeline: HubPipeline = HubPipeline()) -> HubRunPrediction:
    """Cycles of one RUN whose decoder fetches ``fetched`` (:attr:`DpaControllerModel.fetched`), offered
    at absolute cycle ``start`` (the refresh timers count from reset), issued under ``cfg.policy``."""
    lat = completion_table(timing, cfg.blocking_reads)
    due = [timing.nREFI * (start // timing.nREFI + 1)] * channels
    rules: list[np.ndarray | None] = [None] * channels
    fetch = start + pipeline.run_to_fetch          # the next entry's fetch cycle
    seq_free = 0                                   # the sequencer takes its next instruction from here
    phase_start = 0
    spans: list[tuple[int, int]] = []
    end = start
    for phase in phases_of(fetched):
        per_channel: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        first = True
        for ins in phase:
            present = fetch + pipeline.fetch_to_present
            fetch += 1
            if ins is None:
                continue
            take = max(present, seq_free)
            reps = max(take + 1, phase_start) if first else take + 1
            first = False
            seq_free = reps + ins.op_size - 1
            fetch = max(fetch, take - pipeline.fetch_to_present + 1)      # the decoder stalled behind it
            for ch, cmds in unroll(ins).items():
                parts = per_channel.setdefault(ch, ([], []))
                parts[0].append(cmds)
                parts[1].append(reps + np.arange(len(cmds), dtype=np.int64))
        begin = min(int(a[0][0]) for _, a in per_channel.values()) if per_channel else phase_start
        end = begin
        for ch, (cmd_parts, arrive_parts) in per_channel.items():
            stream, arrive = np.concatenate(cmd_parts), np.concatenate(arrive_parts)
            ops = stream["op"].astype(np.int64)
            res = issue_cycles(ops, stream["gbuf"], stream["obuf"], timing, cfg, arrive=arrive, start=begin,
                               ref_due=due[ch], earliest=rules[ch])
            due[ch], rules[ch] = res.ref_due, res.earliest
            end = max(end, int((res.cycles + lat[ops]).max()))
        spans.append((begin, end))
        phase_start = end + epu_cycles + pipeline.barrier
    return HubRunPrediction(end + pipeline.finish - start, spans)
