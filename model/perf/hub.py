"""Cycle model of the PIM hub: one RUN's instructions through the sequencer and every channel's queue.

The hub executes a RUN phase by phase — the QK^T and SV phases of each block, separated by the
sequencer's barriers (:class:`pimphony.rtl.hub.Sequencer`). The model composes the channel cycle model
(:func:`pimphony.model.policies.issue_cycles`, the reference the RTL queue equals cycle for cycle)
with the pipeline of the DPA controller and the sequencer:

* **Supply.** The DPA decoder fetches one buffer entry per cycle (:attr:`DpaControllerModel.fetched`
  lists them in order, with the entries whose instruction the guards drop) and presents an
  instruction 6 cycles after its fetch; its pipeline stalls while its output waits for the
  sequencer. The sequencer takes an instruction in the cycle it presents the previous one's last
  repetition and offers repetition ``i`` in the ``i``-th cycle after it; the first instruction of a
  phase waits for the barrier. A channel's commands arrive at those cycles, at the earliest.
* **Multicast.** Repetition ``i`` is offered to every channel of the mask at once; the next one is
  offered in the cycle after the last of them took it, so one full queue (a channel refreshing, say)
  holds the sequencer, and the decoder behind it, for every channel. The model finds these cycles by
  iteration: it runs each channel on the offers, delays every offer to the cycle after every channel
  took the previous repetition (and the instructions behind it), and runs again until no offer moves.
* **Channels.** Each channel issues its commands with the channel cycle model from the phase's start,
  its refresh timer and timing rules carried across phases (a refresh pending at a phase's end issues
  during the barrier); the phase ends when the last command of any channel has completed.
* **Pipeline constants** (:class:`HubPipeline`, from the RTL's documented pipeline, not fitted): the
  decoder's first fetch is ``run_to_fetch`` cycles after the RUN is offered; the next phase's
  first command may arrive ``epu_cycles + barrier`` cycles after the last completion (the drain,
  the EPU's handshake, the sequencer's phase register); the RUN ends ``finish`` cycles after the
  last completion (the host sees the hub idle).
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

    run_to_fetch: int = 3
    """The RUN is taken (its request looked up), the config buffer's answer registered in the next cycle,
    the RUN decided in the cycle after; the first fetch follows."""
    fetch_to_present: int = 6
    """The entry and its VA2PA chunks are read in the fetch cycle; five decode stages follow (the bounds;
    the row, the guard's products and the V start; the K start and the V compares; the K compares and
    the masks and op-size by phase; the output register)."""
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
        offers: list[np.ndarray] = []          # the earliest offer of each repetition, in sequencer order
        slots = 0
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
            size = 0
            for ch, cmds in unroll(ins).items():
                parts = per_channel.setdefault(ch, ([], []))
                parts[0].append(cmds)
                parts[1].append(slots + np.arange(len(cmds), dtype=np.int64))
                size = max(size, len(cmds))
            offers.append(reps + np.arange(size, dtype=np.int64))
            slots += size
        earliest_offer = np.concatenate(offers) if offers else np.zeros(0, dtype=np.int64)
        streams = {ch: (stream := np.concatenate(c), stream["op"].astype(np.int64), np.concatenate(s))
                   for ch, (c, s) in per_channel.items()}
        begin = int(earliest_offer[0]) if slots else phase_start
        offer = earliest_offer
        while True:
            results, took = {}, np.full(slots, begin - 1, dtype=np.int64)
            for ch, (stream, ops, slot) in streams.items():
                results[ch] = issue_cycles(ops, stream["gbuf"], stream["obuf"], timing, cfg, arrive=offer[slot],
                                           start=begin, ref_due=due[ch], earliest=rules[ch])
                np.maximum.at(took, slot, results[ch].taken)
            moved = _offers_after(earliest_offer, took)
            if np.array_equal(moved, offer):
                break
            offer = moved
        end = begin
        for ch, res in results.items():
            due[ch], rules[ch] = res.ref_due, res.earliest
            end = max(end, int((res.cycles + lat[streams[ch][1]]).max()))
        spans.append((begin, end))
        phase_start = end + epu_cycles + pipeline.barrier
    return HubRunPrediction(end + pipeline.finish - start, spans)


def _offers_after(earliest: np.ndarray, took: np.ndarray) -> np.ndarray:
    """The sequencer's offers: each repetition at its earliest, no sooner than the cycle after every
    channel took the previous one (``took``: the last channel's cycle per repetition), and at most one
    per cycle (a running maximum of ``offer[i] - i``)."""
    index = np.arange(len(earliest), dtype=np.int64)
    bound = earliest - index
    bound[1:] = np.maximum(bound[1:], took[:-1] + 1 - index[1:])
    return np.maximum.accumulate(bound) + index
