"""Capacity utilisation and effective batch: static T_max reservation against DPA (paper Fig. 19).

Serving model (REFERENCE.md f.16-f.18, our reading; every choice is a parameter):

* request lengths: a seeded normal with the workload's Table II mean and standard deviation, clipped
  to its [min, max] (:func:`sample_lengths`);
* a closed decode batch: requests are admitted in arrival order while the allocator accepts them —
  static reserves T_max per request; DPA needs the chunks of the prompt plus ``generate`` tokens of
  growth, so no request stalls later — then every admitted request decodes ``generate`` tokens;
* capacity utilisation: live KV bytes / reserved KV bytes after every decode step, averaged over the
  steps (the paper does not define it; the naive mean length / T_max is reported beside it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ModelConfig, ModuleOrg, WorkloadConfig
from ..kvcache import MIB, ChunkLayout, DpaAllocator, StaticAllocator, Status, segments_of

PAPER = {"static_low": 0.310, "static_high": 0.405, "static_average": 0.362, "dpa_average": 0.756}
"""The paper's capacity utilisation (REFERENCE.md d.4: R11, R12)."""


def sample_lengths(workload: WorkloadConfig, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` context lengths: normal(mean, std) clipped to [min, max], rounded to whole tokens."""
    x = rng.normal(workload.mean, workload.std, size=n)
    return np.clip(np.rint(x), workload.min, workload.max).astype(np.int64)


@dataclass
class CapacityResult:
    policy: str
    batch: int
    utilisation: float           # time-averaged live / reserved
    naive: float                 # Table II mean length / T_max
    chunks_used: int             # peak chunks held
    chunks: int


def capacity_run(model: ModelConfig, org: ModuleOrg, workload: WorkloadConfig, kv_bytes: int, policy: str,
                 seed: int, generate: int = 512, t_max: int | None = None, max_requests: int = 4096,
                 chunk_bytes: int = MIB) -> CapacityResult:
    """Admit and decode one batch under ``policy`` (``"static"`` or ``"dpa"``)."""
    if policy not in ("static", "dpa"):
        raise ValueError(f"policy must be 'static' or 'dpa', got {policy!r}")
    t_max = model.context if t_max is None else t_max
    layout = ChunkLayout(org, model.head_dim, chunk_bytes)
    chunks = kv_bytes // chunk_bytes
    segs = segments_of(model)
    rng = np.random.default_rng(seed)
    lengths = np.minimum(sample_lengths(workload, max_requests, rng), t_max - generate)
    if policy == "static":
        alloc: DpaAllocator = StaticAllocator(layout, segs, max_requests, t_max, chunks=chunks)
    else:
        alloc = DpaAllocator(layout, segs, max_requests, chunks=chunks)
    admitted, reserve = [], 0                     # reserve: chunks the admitted requests will still take
    for r, length in enumerate(lengths.tolist()):
        growth = alloc.growth_chunks(length, generate) if policy == "dpa" else 0
        alloc.headroom = reserve + growth
        if alloc.open(r, length) != Status.OK:
            break
        admitted.append(r)
        reserve += growth
    alloc.headroom = 0
    util, peak = [], alloc.held_chunks()
    for _ in range(generate):
        for r in admitted:
            status = alloc.append(r)
            if status != Status.OK:
                raise RuntimeError(f"request {r} could not grow ({status.name}); admission left no room")
        util.append(alloc.utilisation())
        peak = max(peak, alloc.held_chunks())
    return CapacityResult(policy, len(admitted), float(np.mean(util)) if util else 0.0, workload.mean / t_max,
                          peak, chunks)


@dataclass
class Admission(CapacityResult):
    """:func:`admit`'s answer: a :class:`CapacityResult` plus the admitted prompt lengths."""

    lengths: np.ndarray | None = None


def admit(model: ModelConfig, org: ModuleOrg, workload: WorkloadConfig, kv_bytes: int, policy: str, seed: int,
          generate: int = 512, t_max: int | None = None, max_requests: int = 4096,
          chunk_bytes: int = MIB) -> Admission:
    """The closed form of :func:`capacity_run`: the same batch, lengths and utilisation, vectorised.

    Static reserves ``T_max`` for every segment, so the batch is the pool over one reservation. DPA
    admits requests in arrival order while the chunks of all admitted requests at their final length
    (prompt + ``generate``) fit — exactly the admission :func:`capacity_run` plays through the
    allocator. A test holds the two equal.
    """
    if policy not in ("static", "dpa"):
        raise ValueError(f"policy must be 'static' or 'dpa', got {policy!r}")
    t_max = model.context if t_max is None else t_max
    layout = ChunkLayout(org, model.head_dim, chunk_bytes)
    segs = segments_of(model)

    def held(tokens):
        """Chunks, and token slots of K and V, that requests holding ``tokens`` each occupy."""
        k, v = layout.segment_chunks(tokens)
        return segs * (k + v), segs * (k * layout.k_tokens + v * layout.v_tokens)

    chunks = kv_bytes // chunk_bytes
    rng = np.random.default_rng(seed)
    lengths = np.minimum(sample_lengths(workload, max_requests, rng), t_max - generate)
    steps = np.arange(1, generate + 1)
    if policy == "static":                           # every request holds T_max from the start
        per = held(t_max)[0]
        batch = min(max_requests, chunks // per)
        taken = np.full(batch, per)
    else:                                            # admitted while everyone's final chunks fit
        final = held(lengths + generate)[0]
        batch = int(np.searchsorted(np.cumsum(final), chunks, side="right"))
        taken = final[:batch]
    admitted = lengths[:batch]
    util = 1.0 if generate else 0.0                   # the allocator's reading of an empty pool
    if batch and generate:
        live = 2 * segs * (admitted.sum() + batch * steps)                 # after each decode step
        if policy == "static":
            reserved = batch * held(t_max)[1]
        else:
            reserved = held(admitted[:, None] + steps[None, :])[1].sum(axis=0)
        util = float(np.mean(live / reserved))
    return Admission(policy, batch, util, workload.mean / t_max, int(taken.sum()), chunks, admitted)


def capacity_trials(model: ModelConfig, org: ModuleOrg, workload: WorkloadConfig, kv_bytes: int, policy: str,
                    seed: int, trials: int = 10, **kw) -> CapacityResult:
    """:func:`capacity_run` over ``trials`` batches (seeds ``seed .. seed + trials - 1``), averaged."""
    runs = [capacity_run(model, org, workload, kv_bytes, policy, seed + k, **kw) for k in range(trials)]
    return CapacityResult(policy, round(float(np.mean([r.batch for r in runs]))),
                          float(np.mean([r.utilisation for r in runs])), runs[0].naive,
                          max(r.chunks_used for r in runs), runs[0].chunks)

