"""Online serving on the system model: request arrivals, continuous batching and DPA preemption.

The system model (:mod:`.system`) answers "how fast is one decode step of this batch"; this module
plays a server with it, one decode step at a time:

* **requests** arrive by a Poisson process at ``rate`` per second, or as a closed loop of ``clients``
  that each send a new request when their previous one finishes, or from a trace (arrival time, prompt
  tokens, output tokens). Prompt lengths come from a workload preset (its Table II statistics); output
  lengths, when not given, are geometric with mean ``output_mean`` clipped to [1, 4 x mean] — a named
  parameter: the paper's workloads publish no output statistics.
* **continuous batching**: before every step the server admits what fits, first the requests it
  swapped out, then the waiting ones in arrival order (FCFS, no overtaking): static allocation
  reserves T_max for every request (a request whose prompt plus output exceeds T_max is rejected on
  arrival); DPA takes the chunks of the prompt only and grows each request a token per step.
* **preemption** (DPA only): when a request cannot get its next chunk (OUT_OF_CHUNKS), the newest
  running request is preempted — it may be the one growing — until the append succeeds. ``recompute``
  drops the victim's chunks and requeues it at the head of the queue; its KV (prompt and the tokens it
  already generated) is prefilled again when it comes back. ``swap`` moves its KV over the module link
  (``link_gbps``) and back in when it resumes, both charged as stalls of the whole batch. Generated
  tokens are never lost or produced twice: a victim resumes from its count.
* **time**: a step takes the system model's step time for the running requests' current lengths at a
  fixed deployment (the (TP, PP) the system model picks for the capacity at the workload's batch),
  evaluated again whenever the batch changes and every :data:`RETIME_STEPS` steps as lengths grow.
  Admitting requests stalls the step by their prefill: on PIM-only the FC layers as one GEMV per
  prompt token at the measured cycles per weight byte, on xPU+PIM a GEMM bound by the xPU's compute or
  weight reads; prefill attention is not charged. ``prefill=False`` charges nothing.

:func:`serve` returns a :class:`ServeResult`: output tokens per second, the latency of every output
token (time since the request's previous token, or since admission for its first), queueing delay,
request latency (arrival to last token),
preemptions and the tokens they cost, and the pool's utilisation after every step. Allocation goes
through the golden allocators of :mod:`pimphony.model.kvcache`; every call is logged, so a trace can
be replayed through the DPA RTL.
"""

from __future__ import annotations

import csv
import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import DEFAULT_GENERATE, InputError, WorkloadConfig
from ..dpa import DpaConfig
from ..kvcache import ChunkLayout, DpaAllocator, StaticAllocator, Status, segments_of
from .capacity import sample_lengths
from .system import KernelCosts, Plan, Point, _plan, evaluate, fc_ns, weight_bytes

ALLOCS = ("dpa", "static")
PREEMPTIONS = ("recompute", "swap")
RETIME_STEPS = 64
"""Decode steps between two evaluations of the step time while the batch stays the same."""
MAX_REQUESTS = 1 << 16


@dataclass(frozen=True)
class ServeRequest:
    """One request: when it arrives (s), its prompt and how many tokens it will generate."""

    id: int
    arrival_s: float
    prompt: int
    output: int


def output_lengths(mean: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` output lengths: geometric with mean ``mean``, clipped to [1, 4 x mean]."""
    return np.clip(rng.geometric(1.0 / mean, size=n), 1, 4 * mean).astype(np.int64)


def poisson_requests(workload: WorkloadConfig, rate: float, duration_s: float, output_mean: int,
                     seed: int) -> list[ServeRequest]:
    """Requests arriving by a Poisson process of ``rate`` per second over ``duration_s``."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate * duration_s))
    times = np.sort(rng.uniform(0.0, duration_s, size=n))
    prompts = sample_lengths(workload, n, rng)
    outputs = output_lengths(output_mean, n, rng)
    return [ServeRequest(i, float(t), int(p), int(o)) for i, (t, p, o) in enumerate(zip(times, prompts, outputs,
                                                                                      strict=True))]


def read_trace(path: str | Path) -> list[ServeRequest]:
    """Requests from a CSV file with the columns ``arrival_s,prompt_tokens,output_tokens`` (a header line,
    then one request per line, arrival times in seconds from the start)."""
    where = str(path)
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    rows = list(csv.reader(text.splitlines()))
    want = ["arrival_s", "prompt_tokens", "output_tokens"]
    if not rows or [c.strip() for c in rows[0]] != want:
        raise InputError(f"{where}: the first line must be the header {','.join(want)}")
    out = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            t, p, o = (float(row[0]), int(row[1]), int(row[2])) if len(row) == 3 else (None, None, None)
        except ValueError:
            t = None
        if t is None or not np.isfinite(t) or t < 0 or p < 1 or o < 1:
            raise InputError(f"{where}: line {line}: want arrival_s >= 0, prompt_tokens >= 1, output_tokens >= 1; "
                             f"got {','.join(row)!r}")
        out.append(ServeRequest(len(out), t, p, o))
    if not out:
        raise InputError(f"{where}: no requests")
    return sorted(out, key=lambda r: (r.arrival_s, r.id))


@dataclass
class ServeResult:
    """What :func:`serve` measured; times in seconds."""

    duration_s: float
    arrived: int
    finished: int
    rejected: int
    unfinished: int
    tokens: int
    token_latency_s: np.ndarray
    queue_delay_s: np.ndarray
    request_latency_s: np.ndarray
    """Arrival to last token, of every finished request."""
    preemptions: int
    preempted_tokens: int
    """Tokens whose KV a preemption dropped (recompute) or moved out (swap)."""
    utilisation: np.ndarray
    """(time, chunks held / pool) after every step; static counts its reservations as held."""
    steps: int
    batch_mean: float
    deployment: tuple[int, int, int]
    """(modules, TP, PP) the steps are timed on."""
    log: list[tuple[str, int, int, Status, int]] = field(default_factory=list)
    """Every allocator call: (op, request, tokens, status, free chunks after it); op is open, append or
    close."""

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.duration_s if self.duration_s else 0.0

    def summary(self) -> dict:
        lat, queue = self.token_latency_s, self.queue_delay_s

        def pct(x: np.ndarray, q: float) -> float:
            return float(np.percentile(x, q)) if len(x) else 0.0

        return {"duration_s": self.duration_s, "arrived": self.arrived, "finished": self.finished,
                "rejected": self.rejected, "unfinished": self.unfinished, "output_tokens": self.tokens,
                "tokens_per_s": self.tokens_per_s, "token_latency_p50_ms": 1e3 * pct(lat, 50),
                "token_latency_p90_ms": 1e3 * pct(lat, 90), "token_latency_p99_ms": 1e3 * pct(lat, 99),
                "queue_delay_p50_s": pct(queue, 50), "queue_delay_p99_s": pct(queue, 99),
                "request_latency_p50_s": pct(self.request_latency_s, 50),
                "request_latency_p99_s": pct(self.request_latency_s, 99),
                "preemptions": self.preemptions, "preempted_tokens": self.preempted_tokens, "steps": self.steps,
                "batch_mean": self.batch_mean,
                "utilisation_mean": float(self.utilisation[:, 1].mean()) if len(self.utilisation) else 0.0,
                "modules": self.deployment[0], "tp": self.deployment[1], "pp": self.deployment[2]}


@dataclass
class _Live:
    req: ServeRequest
    generated: int = 0
    admitted_s: float = -1.0
    last_s: float = 0.0
    swapped: bool = False

    @property
    def length(self) -> int:
        return self.req.prompt + self.generated


class _Timer:
    """Step and prefill times of one deployment of the system model."""

    def __init__(self, point: Point, costs: KernelCosts, plan: Plan):
        self.point, self.costs, self.plan = point, costs, plan
        self.module_bytes = weight_bytes(point.model, point.org) / (plan.tp * plan.pp)

    def step_ns(self, lengths: np.ndarray) -> float:
        p = self.plan
        return _plan(self.point, self.costs, p.admission, lengths.astype(np.float64), p.modules, p.tp, p.pp).step_ns

    def prefill_ns(self, tokens: int) -> float:
        """The FC layers of ``tokens`` prompt tokens on one module's weight share (the PP stages pipeline
        the tokens)."""
        return fc_ns(self.point, self.costs, self.module_bytes, tokens)

    def swap_ns(self, tokens: int) -> float:
        """Moving ``tokens`` of a request's KV over the link of each module holding a share of it."""
        m, s = self.point.model, self.point.system
        kv = 2 * m.layers * m.kv_heads * m.head_dim * self.point.org.element_bytes * tokens
        return s.link_ns + kv / (self.plan.tp * self.plan.pp) / s.link_gbps


def deployment(point: Point, costs: KernelCosts, parallel: tuple[int, int] | None = None) -> Plan:
    """The deployment steps are timed on: the (modules, TP, PP) the system model picks for ``point``, or
    ``parallel`` = (TP, PP) on all of its modules."""
    result = evaluate(point, costs)
    if parallel is None:
        return result.best
    for plan in result.plans:
        if (plan.tp, plan.pp) == tuple(parallel) and plan.modules == point.modules:
            return plan
    raise ValueError(f"TP {parallel[0]} x PP {parallel[1]} is not a deployment of {point.modules} modules for "
                     f"{point.model.name}: TP x PP must equal the modules, TP divide the KV heads")


def serve(point: Point, costs: KernelCosts, requests: list[ServeRequest] | None = None, *,
          rate: float | None = None, clients: int | None = None, duration_s: float = 60.0,
          output_mean: int = DEFAULT_GENERATE, preempt: str = "recompute", prefill: bool = True, seed: int = 0,
          log: bool = False, check: bool = False, dpa: DpaConfig | None = None,
          parallel: tuple[int, int] | None = None,
          progress: Callable[[int, int], None] | None = None) -> ServeResult:
    """Serve for ``duration_s`` of simulated time; see the module docstring.

    Exactly one of ``requests`` (a trace), ``rate`` (Poisson arrivals) and ``clients`` (a closed loop) is
    given. ``point.techniques.alloc`` picks static or DPA allocation, ``point.t_max`` the static
    reservation (default: the model's context). ``log`` keeps every allocator call in the result;
    ``check`` verifies after every step that each chunk is free or held exactly once (slow: for tests).
    ``dpa`` sizes the DPA allocator as that controller is built — its pool, config-buffer entries and
    longest request — instead of the system's whole KV space, so the allocation log can be replayed
    through the RTL (:mod:`pimphony.verification.serving`); its segments must be the model's.
    ``parallel`` = (TP, PP) fixes the deployment on all of the system's modules instead of the one the
    system model picks for the allocation's full batch. ``progress(done_ms, total_ms)`` is called as
    simulated time advances.
    """
    if sum(x is not None for x in (requests, rate, clients)) != 1:
        raise ValueError("give exactly one of a trace, a rate and a number of clients")
    if preempt not in PREEMPTIONS:
        raise ValueError(f"preempt must be one of {', '.join(PREEMPTIONS)}; got {preempt!r}")
    if duration_s <= 0 or output_mean < 1:
        raise ValueError("the duration and the mean output length must be positive")
    if clients is not None and clients < 1:
        raise ValueError(f"clients must be at least 1, got {clients}")
    m, org, alloc_name = point.model, point.org, point.techniques.alloc
    plan = deployment(point, costs, parallel)
    timer = _Timer(point, costs, plan)
    t_max = point.t_max or m.context
    layout = ChunkLayout(org, m.head_dim, point.chunk_bytes)
    pool = (plan.modules * org.bytes - weight_bytes(m, org)) // point.chunk_bytes
    segs = segments_of(m)
    if dpa is not None and (alloc_name != "dpa" or dpa.segments != segs or dpa.layout != layout):
        raise ValueError(f"a DPA controller configuration needs DPA allocation, the model's {segs} segments and "
                         "its chunk layout")
    if alloc_name == "static":
        allocator: DpaAllocator = StaticAllocator(layout, segs, MAX_REQUESTS, t_max, chunks=pool)
    elif dpa is not None:
        allocator = DpaAllocator(layout, segs, dpa.max_requests, chunks=dpa.n_chunks, max_tokens=dpa.max_tokens)
    else:
        allocator = DpaAllocator(layout, segs, MAX_REQUESTS, chunks=pool)
    rng = np.random.default_rng(seed)
    calls: list[tuple[str, int, int, Status, int]] = []
    moved = False                               # chunks changed hands since the last check

    def call(op: str, rid: int, tokens: int) -> Status:
        nonlocal moved
        free = len(allocator.free)
        status = (allocator.open(rid, tokens) if op == "open" else allocator.append(rid, tokens) if op == "append"
                  else allocator.close(rid))
        moved = moved or len(allocator.free) != free
        if log:
            calls.append((op, rid, tokens, status, len(allocator.free)))
        return status

    arrivals: list[tuple[float, int, ServeRequest]] = []
    if requests is not None:
        arrivals = [(r.arrival_s, r.id, r) for r in requests]
    elif rate is not None:
        arrivals = [(r.arrival_s, r.id, r) for r in poisson_requests(point.workload, rate, duration_s, output_mean,
                                                                     seed)]
    next_id = len(arrivals)

    def new_client_request(t: float) -> None:
        nonlocal next_id
        p = int(sample_lengths(point.workload, 1, rng)[0])
        r = ServeRequest(next_id, t, p, int(output_lengths(output_mean, 1, rng)[0]))
        next_id += 1
        heapq.heappush(arrivals, (t, r.id, r))

    for _ in range(clients or 0):
        new_client_request(0.0)
    heapq.heapify(arrivals)

    waiting: deque[_Live] = deque()          # FCFS; preempted requests go back to the front
    running: dict[int, _Live] = {}           # in admission order
    arrived = rejected = finished = tokens = preemptions = preempted_tokens = steps = 0
    latencies: list[np.ndarray] = []
    queue_delay: list[float] = []
    request_latency: list[float] = []
    util: list[tuple[float, float]] = []
    batch_sum = 0
    t = 0.0
    step_cache: tuple[tuple[int, ...], float] | None = None
    since_timed = 0
    total_ms = int(duration_s * 1000)

    def preempt_newest() -> None:
        nonlocal preemptions, preempted_tokens, t
        rid = next(reversed(running))
        victim = running.pop(rid)
        call("close", rid, 0)
        preemptions += 1
        preempted_tokens += victim.length
        if preempt == "swap":
            t += timer.swap_ns(victim.length) * 1e-9
            victim.swapped = True
        waiting.appendleft(victim)

    while t < duration_s:
        while arrivals and arrivals[0][0] <= t:
            _, _, r = heapq.heappop(arrivals)
            arrived += 1
            if not allocator.fits(r.prompt + r.output):
                rejected += 1
                if clients:
                    new_client_request(t)
                continue
            waiting.append(_Live(r))
        stall = 0.0
        while waiting:
            live = waiting[0]
            if call("open", live.req.id, live.length) != Status.OK:
                break
            waiting.popleft()
            if live.admitted_s < 0:
                live.admitted_s = t
                queue_delay.append(t - live.req.arrival_s)
                live.last_s = t
            if live.swapped:
                stall += timer.swap_ns(live.length)
                live.swapped = False
            elif prefill:
                stall += timer.prefill_ns(live.length)
            running[live.req.id] = live
        if not running:
            if not arrivals:
                break
            t = max(t, arrivals[0][0])
            continue
        ids = tuple(running)
        if step_cache is None or step_cache[0] != ids or since_timed >= RETIME_STEPS:
            lengths = np.fromiter((x.length for x in running.values()), dtype=np.int64, count=len(running))
            step_cache, since_timed = (ids, timer.step_ns(lengths)), 0
        since_timed += 1
        t += (stall + step_cache[1]) * 1e-9
        steps += 1
        batch_sum += len(running)
        produced = []
        for rid in list(running):
            live = running.get(rid)
            if live is None:                    # preempted earlier in this step
                continue
            while call("append", rid, 1) == Status.OUT_OF_CHUNKS:
                preempt_newest()
                if rid not in running:
                    break
            if rid not in running:
                continue
            live.generated += 1
            produced.append(t - live.last_s)
            live.last_s = t
            if live.generated >= live.req.output:
                call("close", rid, 0)
                del running[rid]
                finished += 1
                request_latency.append(t - live.req.arrival_s)
                if clients:
                    new_client_request(t)
        tokens += len(produced)
        latencies.append(np.asarray(produced))
        util.append((t, (allocator.n_chunks - len(allocator.free)) / allocator.n_chunks))
        if check and moved:
            allocator.check()                   # only after steps that moved chunks: the others cannot break it
            moved = False
        if progress is not None:
            progress(min(total_ms, int(t * 1000)), total_ms)
    return ServeResult(min(t, duration_s) if t else duration_s, arrived, finished, rejected,
                       len(running) + len(waiting), tokens,
                       np.concatenate(latencies) if latencies else np.zeros(0), np.asarray(queue_delay),
                       np.asarray(request_latency),
                       preemptions, preempted_tokens, np.asarray(util).reshape(-1, 2), steps,
                       batch_sum / steps if steps else 0.0, (plan.modules, plan.tp, plan.pp), calls)

