"""Capacity utilisation and effective batch: static T_max reservation against DPA (paper Fig. 19).

Serving model (docs/sources.md §workloads, §capacity, our reading; every choice is a parameter):

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

from ..config import DEFAULT_GENERATE, ModelConfig, ModuleOrg, WorkloadConfig
from ..kvcache import MIB, ChunkLayout, DpaAllocator, StaticAllocator, Status, segments_of


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
                 seed: int, generate: int = DEFAULT_GENERATE, t_max: int | None = None, max_requests: int = 4096,
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


class Admitter:
    """:func:`admit` for one model, module, workload and policy at any KV capacity: the sampled lengths
    and every prefix of the batch's reserved token slots are computed once, so a search over
    capacities (the system model's deployments) costs a binary search per capacity."""

    def __init__(self, model: ModelConfig, org: ModuleOrg, workload: WorkloadConfig, policy: str, seed: int,
                 generate: int = DEFAULT_GENERATE, t_max: int | None = None, max_requests: int = 4096,
                 chunk_bytes: int = MIB):
        if policy not in ("static", "dpa"):
            raise ValueError(f"policy must be 'static' or 'dpa', got {policy!r}")
        self.policy, self.generate, self.chunk_bytes, self.max_requests = policy, generate, chunk_bytes, max_requests
        self.t_max = model.context if t_max is None else t_max
        self.layout = ChunkLayout(org, model.head_dim, chunk_bytes)
        self.segs = segments_of(model)
        self.naive = workload.mean / self.t_max
        rng = np.random.default_rng(seed)
        self.lengths = np.minimum(sample_lengths(workload, max_requests, rng), self.t_max - generate)
        steps = np.arange(1, generate + 1)
        self.steps = steps
        self.prompt_tokens = np.concatenate([[0], np.cumsum(self.lengths)])
        if policy == "static":                       # every request holds T_max from the start
            self.per_request, self.per_request_slots = self._held(self.t_max)
        else:                                        # admitted while everyone's final chunks fit
            self.final_cumsum = np.cumsum(self._held(self.lengths + generate)[0])

    def _held(self, tokens):
        """Chunks, and token slots of K and V, that requests holding ``tokens`` each occupy."""
        k, v = self.layout.segment_chunks(tokens)
        return self.segs * (k + v), self.segs * (k * self.layout.k_tokens + v * self.layout.v_tokens)

    def admit(self, kv_bytes: int) -> Admission:
        chunks = kv_bytes // self.chunk_bytes
        if self.policy == "static":
            batch = min(self.max_requests, chunks // self.per_request)
            taken = batch * self.per_request
        else:
            batch = int(np.searchsorted(self.final_cumsum, chunks, side="right"))
            taken = int(self.final_cumsum[batch - 1]) if batch else 0
        util = 1.0 if self.generate else 0.0           # the allocator's reading of an empty pool
        if batch and self.generate:
            reserved = (batch * self.per_request_slots if self.policy == "static"      # after each decode step
                        else self._held(self.lengths[:batch, None] + self.steps[None, :])[1].sum(axis=0))
            live = 2 * self.segs * (self.prompt_tokens[batch] + batch * self.steps)   # after each decode step
            util = float(np.mean(live / reserved))
        return Admission(self.policy, batch, util, self.naive, int(taken), chunks, self.lengths[:batch])


def admit(model: ModelConfig, org: ModuleOrg, workload: WorkloadConfig, kv_bytes: int, policy: str, seed: int,
          generate: int = DEFAULT_GENERATE, t_max: int | None = None, max_requests: int = 4096,
          chunk_bytes: int = MIB) -> Admission:
    """The closed form of :func:`capacity_run`: the same batch, lengths and utilisation, vectorised.

    Static reserves ``T_max`` for every segment, so the batch is the pool over one reservation. DPA
    admits requests in arrival order while the chunks of all admitted requests at their final length
    (prompt + ``generate``) fit — exactly the admission :func:`capacity_run` plays through the
    allocator. A test holds the two equal.
    """
    return Admitter(model, org, workload, policy, seed, generate, t_max, max_requests, chunk_bytes).admit(kv_bytes)


def capacity_trials(model: ModelConfig, org: ModuleOrg, workload: WorkloadConfig, kv_bytes: int, policy: str,
                    seed: int, trials: int = 10, **kw) -> CapacityResult:
    """:func:`capacity_run` over ``trials`` batches (seeds ``seed .. seed + trials - 1``), averaged; each
    batch through :func:`admit`, its closed form (equal, tested)."""
    runs = [admit(model, org, workload, kv_bytes, policy, seed + k, **kw) for k in range(trials)]
    return CapacityResult(policy, round(float(np.mean([r.batch for r in runs]))),
                          float(np.mean([r.utilisation for r in runs])), runs[0].naive,
                          max(r.chunks_used for r in runs), runs[0].chunks)

