"""System performance model: decode throughput of an LLM on a system of PIM modules.

One decode *step* produces one token for every request of the batch. Its time is built from parts,
each from one place:

* **batch and lengths** — :func:`~pimphony.model.perf.capacity.admit`: the KV capacity left after the
  weights, static T_max reservation or DPA chunks, request lengths drawn from the workload (Table II,
  a seeded clipped normal). Requests are evaluated at their mean decode position, prompt + generate/2.
* **attention on PIM** — per layer and module, the cycles of the busiest channel
  (:class:`KernelCosts`, measured on the channel cycle model by :mod:`pimphony.scheduler.costs`).
  HFP puts a (request, KV head) pair's keys on the system's ``hfp_span`` channels and its V on the
  slice that holds them (the partition's own rule, :func:`channel_cycles`); TCP spreads every pair
  over all channels. Time per cycle: the system's ``pim_tck_ps``.
* **softmax** on the module's EPU/PNM at ``softmax_per_ns`` score elements per ns; it overlaps the PIM
  work of other pairs, so a layer's attention takes the longer of the two. The scores leave the
  channels by RD-OUT and the probabilities return by WR-INP, both in the lowered stream and so in the
  channel cycles: on xPU+PIM this is NeuPIMs' PIM <-> NPU score path (its READRES and GWRITE).
* **FC layers** — PIM-only (``fc_on_pim``): GEMVs on every channel of the module at the measured
  cycles per weight byte, once per request (a GEMV does not reuse weights across requests);
  xPU+PIM: a GEMM on the xPU, the longer of reading the weights and computing.
* **tensor parallelism** over ``t`` modules: a module holds 1/t of every layer's weights and KV heads;
  two ring all-reduces of the activations per layer. **Pipeline parallelism** over ``p`` stages:
  ceil(layers / p) layers per stage, ``m = min(batch, p)`` micro-batches; because a request's next token
  needs its previous one through every stage, a step takes ``max(m, p)`` stage times.
* **overlap** — FC and attention share the PIM channels on PIM-only, so they add; on xPU+PIM they
  overlap by sub-batch interleaving once the batch reaches ``interleave_batch``.
* **attention energy** — the commands each pair issues (ACT, MAC, 32 B transfers; counted on the
  lowering) at per-command energies, plus background power: every channel of the system at its idle
  (precharge standby) power for the step's attention time, and the channels that work at their
  active-standby power for the cycles they work. The constants come from CENT's and NeuPIMs' public
  power models (``pimphony presets --kind systems``).

:func:`evaluate` searches every deployment — a number of the system's modules and a (TP, PP) with
TP x PP = those modules, TP dividing the KV-head count and PP at most the layer count — and returns the
best, so more capacity never lowers throughput (idle modules still count in the MAC utilisation).
Constants no public source gives are the ``assumed`` values of the system presets (``pimphony
presets``), listed in one place by :func:`assumptions`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ..config import DEFAULT_GENERATE, ModelConfig, ModuleOrg, SystemConfig, TimingPreset, WorkloadConfig
from ..kvcache import MIB
from ..queue import Policy
from .capacity import Admission, Admitter

PARTITIONS = ("hfp", "tcp")
"""The partitions, head-first and token-centric, in the order the CLI lists them; the system model charges
them (:func:`channel_cycles`) and :mod:`pimphony.scheduler.partition` implements them under these names."""
HFP_SPANS = (1, 2, 4, 8)
"""The channel spans of an HFP pair's keys whose costs are measured: a system's ``hfp_span`` is one of them."""
LAYOUTS = (*(f"hfp-{k}" for k in HFP_SPANS), "tcp")
"""The layouts the kernel costs hold a curve for: HFP at each span, and TCP."""
BASELINE_SCHEDULE = "aim"
"""aim_simulator's in-order AiM controller (:mod:`pimphony.scheduler.aim`): the baseline's issue policy."""
SCHEDULES = (BASELINE_SCHEDULE, *(p.name.lower() for p in Policy))
ALLOCS = ("static", "dpa")
MODULES = {"cent": "cent-32ch", "neupims": "neupims"}
"""The module organisation preset of each shipped system."""


@dataclass(frozen=True)
class PhaseCurve:
    """For one (request, KV head) against its length: the busiest channel's cycles of QK^T and SV, and
    the commands the pair issues over all channels — row commands (ACT), MACs, and I/O (WR-INP,
    WR-BIAS, RD-OUT: one 32 B transfer each)."""

    lengths: tuple[int, ...]
    qk: tuple[int, ...]
    sv: tuple[int, ...]
    act: tuple[int, ...]
    mac: tuple[int, ...]
    io: tuple[int, ...]

    FIELDS: ClassVar[tuple[str, ...]] = ("lengths", "qk", "sv", "act", "mac", "io")

    def __call__(self, length: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(length, dtype=np.float64)
        return self._eval(x, self.qk), self._eval(x, self.sv)

    def commands(self, length: np.ndarray) -> dict[str, np.ndarray]:
        x = np.asarray(length, dtype=np.float64)
        return {k: self._eval(x, getattr(self, k)) for k in ("act", "mac", "io")}

    def _eval(self, x: np.ndarray, ys: tuple[int, ...]) -> np.ndarray:
        xs, y = np.asarray(self.lengths, dtype=np.float64), np.asarray(ys, dtype=np.float64)
        slope = (y[-1] - y[-2]) / (xs[-1] - xs[-2])
        inside = np.interp(x, xs, y)
        return np.where(x > xs[-1], y[-1] + slope * (x - xs[-1]), inside)


@dataclass(frozen=True)
class KernelCosts:
    """What the channel cycle model says a channel spends on attention and on GEMVs."""

    channels: int
    banks: int
    head_dim: int
    group: int
    attention: dict[tuple[str, str], PhaseCurve]
    gemv_cycles_per_byte: dict[str, float]

    def to_json(self) -> dict:
        return {"channels": self.channels, "banks": self.banks, "head_dim": self.head_dim, "group": self.group,
                "attention": [{"partition": p, "schedule": s, **{k: list(getattr(c, k)) for k in PhaseCurve.FIELDS}}
                              for (p, s), c in self.attention.items()],
                "gemv_cycles_per_byte": self.gemv_cycles_per_byte}

    @classmethod
    def from_json(cls, raw: dict) -> KernelCosts:
        """Costs read back from the cache; ``ValueError`` unless every curve is there, increasing in
        length and made of finite, non-negative numbers (a damaged cache is measured again)."""
        curves = {(c["partition"], c["schedule"]): PhaseCurve(*(tuple(c[k]) for k in PhaseCurve.FIELDS))
                  for c in raw["attention"]}
        gemv = {k: float(v) for k, v in raw["gemv_cycles_per_byte"].items()}
        missing = {(p, s) for p in LAYOUTS for s in SCHEDULES} - set(curves)
        if missing or set(gemv) != set(SCHEDULES):
            raise ValueError(f"cached costs lack {sorted(missing) or 'GEMV schedules'}")
        for key, curve in curves.items():
            values = np.array([getattr(curve, k) for k in PhaseCurve.FIELDS], dtype=float)
            if not np.isfinite(values).all() or (values < 0).any() or (np.diff(curve.lengths) <= 0).any():
                raise ValueError(f"cached curve {key} holds a non-finite, negative or unordered value")
        if not all(np.isfinite(v) and v > 0 for v in gemv.values()):
            raise ValueError("cached GEMV costs must be finite and positive")
        return cls(raw["channels"], raw["banks"], raw["head_dim"], raw["group"], curves, gemv)


@dataclass(frozen=True)
class Techniques:
    """Which of PIMphony's techniques are on: the paper's ablation axes."""

    partition: str = "tcp"
    schedule: str = "dcs"
    alloc: str = "dpa"

    def __post_init__(self):
        for name, allowed in (("partition", PARTITIONS), ("schedule", SCHEDULES), ("alloc", ALLOCS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}")


def layout(partition: str, span: int) -> str:
    """The :data:`LAYOUTS` key of ``partition`` (``hfp`` at ``span`` channels, or ``tcp``)."""
    return f"hfp-{span}" if partition == "hfp" else partition


BASELINE = Techniques("hfp", BASELINE_SCHEDULE, "static")
"""The paper's baseline: head-first partitioning (a pair's keys on the system's ``hfp_span`` channels),
issued by AiM's own in-order controller, with static T_max allocation."""
ABLATION = (("baseline (HFP)", BASELINE), ("+TCP", Techniques("tcp", BASELINE_SCHEDULE, "static")),
            ("+DCS", Techniques("tcp", "dcs", "static")), ("+DPA", Techniques("tcp", "dcs", "dpa")))
"""The paper's Fig. 13/14 bars: HFP baseline, then TCP, DCS and DPA added one by one."""


class PerfError(ValueError):
    """A configuration point cannot run (the weights do not fit, no request fits, ...)."""


@dataclass
class Point:
    """One configuration point of the system model."""

    model: ModelConfig
    system: SystemConfig
    org: ModuleOrg
    timing: TimingPreset
    capacity_bytes: int
    workload: WorkloadConfig
    techniques: Techniques = field(default_factory=Techniques)
    t_max: int | None = None
    seed: int = 0
    generate: int = DEFAULT_GENERATE
    chunk_bytes: int = MIB

    @property
    def modules(self) -> int:
        return self.capacity_bytes // self.org.bytes



@dataclass
class Plan:
    """Throughput of one deployment — modules used, (TP, PP) — and where a step's time goes."""

    admission: Admission
    modules: int
    tp: int
    pp: int
    micro_batches: int
    step_ns: float
    tokens_per_s: float
    parts_ns: dict[str, float]
    mac_utilisation: float
    energy_nj: dict[str, float]
    """Attention energy of a step by part: act, mac, io (commands) and background (every channel of the
    system idle for the step's attention time, plus the active-standby increment of the channels that
    work, for the cycles they work)."""
    attention_mac_utilisation: float = 0.0
    """MAC-busy time of attention alone over every channel of the system for the step's attention time."""
    channel_balance: float = 0.0
    """Attention work of a module's channels over what they would do if all worked as long as the busiest
    (1: balanced; 1/C: one channel works)."""
    busy_channels: int = 0
    """Channels of a module with attention work in the busiest micro-batch."""

    @property
    def attention_nj_per_token(self) -> float:
        return sum(self.energy_nj.values()) / self.admission.batch

    @property
    def background_share(self) -> float:
        total = sum(self.energy_nj.values())
        return self.energy_nj["background"] / total if total else 0.0


@dataclass
class PerfResult:
    point: Point
    best: Plan
    plans: list[Plan]

    @property
    def admission(self) -> Admission:
        """The batch of the best deployment."""
        return self.best.admission

    @property
    def tokens_per_s(self) -> float:
        return self.best.tokens_per_s

    def summary(self) -> dict:
        """Plain data for ``--json``, the sweep table and the report."""
        p, a, b = self.point, self.admission, self.best
        return {"model": p.model.name, "system": p.system.name, "capacity_gb": p.capacity_bytes / 2**30,
                "modules": p.modules, "modules_used": b.modules, "workload": p.workload.name,
                "partition": p.techniques.partition,
                "schedule": p.techniques.schedule, "alloc": p.techniques.alloc, "seed": p.seed,
                "tokens_per_s": b.tokens_per_s, "step_ms": b.step_ns / 1e6, "tp": b.tp, "pp": b.pp,
                "batch": a.batch, "micro_batches": b.micro_batches, "mean_length": float(np.mean(a.lengths)),
                "mac_utilisation": b.mac_utilisation, "capacity_utilisation": a.utilisation,
                "attention_nj_per_token": b.attention_nj_per_token,
                "attention_background_share": b.background_share,
                **{f"time_{k}": v / b.step_ns for k, v in b.parts_ns.items()}}


def weight_bytes(model: ModelConfig, org: ModuleOrg) -> int:
    """Bytes of all weights: every layer, the embedding and the LM head."""
    return org.element_bytes * (model.layers * model.layer_params + 2 * model.head_params)


def channel_cycles(layout_key: str, curve: PhaseCurve, lengths: np.ndarray, heads: int, channels: int, banks: int,
                   slice_channels: int) -> np.ndarray:
    """Attention cycles of every channel of a module for one layer: ``heads`` KV heads of each request.

    The busy set follows the partitions of :mod:`pimphony.scheduler.partition`. ``hfp-K`` deals pairs
    (request-major) over the V slices first, then over the K-channel groups inside a slice: the ``j``-th
    of a pair's ``K`` key channels has QK^T work once the pair holds more than ``j x banks`` tokens, and
    every channel of its V slice has SV work (of its ``s``-th slice, once it holds more than ``16 s``
    tokens). TCP gives channel ``c`` K work once a pair has more than ``c x banks`` tokens and V work
    once it has more than ``16 x (c div slice_channels)`` tokens. A busy channel is charged the busiest
    channel's cost (:class:`PhaseCurve`), an upper bound within one burst per channel.
    """
    qk, sv = curve(lengths)
    load = np.zeros(channels)
    if layout_key == "tcp":
        chan = np.arange(channels)
        x = np.asarray(lengths, dtype=np.float64)[:, None]
        k_busy = x > chan[None, :] * banks
        v_busy = x > (chan[None, :] // slice_channels) * banks
        load += heads * ((k_busy * qk[:, None]).sum(axis=0) + (v_busy * sv[:, None]).sum(axis=0))
        return load
    span = int(layout_key.removeprefix("hfp-"))
    x = np.repeat(np.asarray(lengths, dtype=np.float64), heads)
    q, v = np.repeat(qk, heads), np.repeat(sv, heads)
    group = np.arange(len(x)) % (channels // span)
    if span >= slice_channels:
        k_first = v_first = group * span
    else:
        slices = channels // slice_channels
        v_first = (group % slices) * slice_channels
        k_first = v_first + (group // slices) * span
    for j in range(span):
        np.add.at(load, k_first + j, np.where(x > j * banks, q, 0.0))
    for s in range(max(1, span // slice_channels)):
        for m in range(slice_channels):
            np.add.at(load, v_first + s * slice_channels + m, np.where(x > s * banks, v, 0.0))
    return load


def fc_ns(point: Point, costs: KernelCosts, nbytes: float, n: int) -> float:
    """FC of ``n`` requests (or tokens) over ``nbytes`` of one module's weights: GEMVs on every PIM channel at
    the measured cycles per weight byte, or a GEMM on the xPU bound by reading the weights or by 2 FLOP per
    2-byte weight and request."""
    s = point.system
    if s.fc_on_pim:
        per_byte = costs.gemv_cycles_per_byte[point.techniques.schedule] * s.pim_tck_ps / 1000.0 / point.org.channels
        return n * nbytes * per_byte
    return max(nbytes / s.xpu_mem_gbps, n * nbytes / s.xpu_gflops)


def _plan(point: Point, costs: KernelCosts, admission: Admission, lengths: np.ndarray, modules: int, tp: int,
          pp: int) -> Plan:
    m, s, org, tech = point.model, point.system, point.org, point.techniques
    C, ns = org.channels, s.pim_tck_ps / 1000.0
    batch = len(lengths)
    heads = m.kv_heads // tp                                 # KV heads per module
    layers = -(-m.layers // pp)
    micro = min(batch, pp)
    groups = [lengths[k::micro] for k in range(micro)]
    key = layout(tech.partition, s.hfp_span)
    curve = costs.attention[(key, tech.schedule)]
    kb = m.head_dim // org.burst_elements
    fc_bytes = org.element_bytes * m.layer_params / tp                # one module's share of a layer
    head_bytes = org.element_bytes * m.head_params / tp

    worst: dict[str, float] | None = None
    busy_cycles = peak_cycles = 0.0                          # channel-cycles of attention work, one module
    busy_channels = 0
    for g in groups:
        load = channel_cycles(key, curve, g, heads, C, org.banks, kb)
        busy_cycles += float(load.sum())
        peak_cycles += float(load.max())
        busy_channels = max(busy_channels, int((load > 0).sum()))
        attention = float(load.max()) * ns
        softmax = heads * m.group * float(g.sum()) / s.softmax_per_ns
        fc, lm = fc_ns(point, costs, fc_bytes, len(g)), fc_ns(point, costs, head_bytes, len(g))
        act = len(g) * m.hidden * org.element_bytes
        tp_comm = 0.0 if tp == 1 else 2 * (2 * (tp - 1) * s.link_ns + 2 * (tp - 1) / tp * act / s.link_gbps)
        attn = max(attention, softmax)
        overlap = bool(s.interleave_batch) and batch >= s.interleave_batch
        layer = (max(attn, fc) if overlap else attn + fc) + tp_comm
        pp_comm = 0.0 if pp == 1 else s.link_ns + act / s.link_gbps
        parts = {"attention": layers * attention, "softmax": layers * max(0.0, softmax - attention),
                 "fc": layers * fc + lm, "tp_comm": layers * tp_comm, "pp_comm": pp_comm,
                 "overlap": -layers * min(attn, fc) if overlap else 0.0}
        stage = layers * layer + lm + pp_comm
        if worst is None or stage > worst["stage"]:
            worst = {**parts, "stage": stage}
    assert worst is not None
    stage = worst.pop("stage")
    rounds = max(micro, pp)
    step = rounds * stage
    parts_ns = {k: micro * v for k, v in worst.items() if v}
    if rounds > micro:
        parts_ns["pipeline_idle"] = (rounds - micro) * stage
    # commands of the whole step, every layer and KV head, as the lowering counted them
    commands = {k: m.layers * m.kv_heads * float(v.sum()) for k, v in curve.commands(lengths).items()}
    energy = {k: n * getattr(s, f"e_{k}_pj") / 1000.0 for k, n in commands.items()}
    attention_time = step * parts_ns.get("attention", 0.0) / (step - parts_ns.get("pipeline_idle", 0.0))
    busy_ns = m.layers * tp * busy_cycles * ns               # every layer, on each of the TP modules
    energy["background"] = 1e-3 * (s.p_background_mw * point.modules * C * attention_time
                                   + (s.p_active_mw - s.p_background_mw) * busy_ns)
    # MAC utilisation: MAC-busy time of every channel of the system over the step; a MAC command does a
    # burst in every bank and keeps the unit busy nCCDS; on PIM-only the FC GEMVs are MACs too
    macs = commands["mac"]
    if s.fc_on_pim:
        macs += batch * (m.layers * m.layer_params + m.head_params) / (org.banks * org.burst_elements)
    busy = macs * point.timing.nCCDS * ns
    attention_busy = commands["mac"] * point.timing.nCCDS * ns
    return Plan(admission, modules, tp, pp, micro, step, batch / step * 1e9, parts_ns,
                busy / (point.modules * C * step), energy,
                attention_busy / (point.modules * C * attention_time) if attention_time else 0.0,
                busy_cycles / (C * peak_cycles) if peak_cycles else 0.0, busy_channels)


def parallel_plans(model: ModelConfig, modules: int) -> list[tuple[int, int]]:
    """Every (TP, PP) with TP x PP = modules, TP dividing the KV-head count, PP at most the layers."""
    return [(t, modules // t) for t in range(1, modules + 1)
            if modules % t == 0 and model.kv_heads % t == 0 and modules // t <= model.layers]


def evaluate(point: Point, costs: KernelCosts) -> PerfResult:
    """Tokens/s of ``point`` at its best deployment: a number of the system's modules (all of them,
    unless a split of fewer avoids a pipeline of more stages than requests) and a (TP, PP) on them;
    the KV space, and so the batch, is what the used modules leave after the weights."""
    m, org = point.model, point.org
    m.require_fc()
    if point.techniques.partition == "hfp" and point.system.hfp_span not in HFP_SPANS:
        raise PerfError(f"system {point.system.name}: hfp_span {point.system.hfp_span} is not one of the measured "
                        f"spans {', '.join(map(str, HFP_SPANS))}")
    if (costs.channels, costs.banks, costs.head_dim, costs.group) != (org.channels, org.banks, m.head_dim, m.group):
        raise PerfError("kernel costs were measured for another module, head_dim or GQA group")
    modules = point.modules
    if modules < 1:
        raise PerfError(f"capacity {point.capacity_bytes / 2**30:.0f} GiB is less than one {org.name} module "
                        f"({org.bytes / 2**30:.0f} GiB)")
    kv = modules * org.bytes - weight_bytes(m, org)
    if kv <= 0:
        raise PerfError(f"the weights of {m.name} ({weight_bytes(m, org) / 2**30:.1f} GiB) do not fit in "
                        f"{modules} x {org.name} ({modules * org.bytes / 2**30:.0f} GiB)")
    t_max = point.t_max or m.context
    if t_max <= point.generate:
        raise PerfError(f"T_max ({t_max}) must exceed the generated tokens ({point.generate})")
    plans: list[Plan] = []
    usable = min(modules, m.kv_heads * m.layers)      # TP divides the KV heads, PP is at most the layers
    admitter = Admitter(m, org, point.workload, point.techniques.alloc, point.seed, point.generate, t_max,
                        chunk_bytes=point.chunk_bytes)
    for used in range(1, usable + 1):
        splits = parallel_plans(m, used)
        kv_used = used * org.bytes - weight_bytes(m, org)
        if not splits or kv_used <= 0:
            continue
        adm = admitter.admit(kv_used)
        if adm.batch:
            lengths = adm.lengths.astype(np.float64) + point.generate / 2
            plans += [_plan(point, costs, adm, lengths, used, t, p) for t, p in splits]
    if not plans:
        if not any(parallel_plans(m, used) for used in range(1, usable + 1)):
            raise PerfError(f"no (TP, PP) for up to {modules} modules: TP must divide {m.kv_heads} KV heads "
                            f"and PP must not exceed {m.layers} layers")
        raise PerfError(f"no request fits: {kv / 2**30:.0f} GiB of KV space under {point.techniques.alloc} "
                        f"allocation (T_max {t_max}) for {m.name}")
    best = max(plans, key=lambda plan: plan.tokens_per_s)
    return PerfResult(point, best, plans)


def context_workload(context: int, fixed: bool = False, generate: int = DEFAULT_GENERATE) -> tuple[WorkloadConfig, int]:
    """The workload of a context-``L`` point and the T_max that static allocation reserves for it.

    * spread (Fig. 17, "3 sigma context variation"): prompts normal(L, L/3) clipped to [1, 2L] (our
      reading); static reserves the longest request it may admit, T_max = 2L + ``generate``;
    * ``fixed`` (Fig. 4): every request ends at exactly ``L`` tokens (prompt ``L - generate``) and static
      reserves T_max = L, so the batch is the KV capacity over L tokens of KV, as Fig. 4's batch labels are
      (capacity / (L x 128 KiB) for LLM-7B-GQA).
    """
    if fixed:
        if context <= generate:
            raise ValueError(f"a fixed context of {context} tokens must exceed the {generate} generated tokens")
        prompt = context - generate
        values = {"mean": prompt, "std": 0, "max": prompt, "min": prompt}
        name = f"fixed-{context}"
        return WorkloadConfig.from_mapping({"name": name, "values": values}, f"--context {context}"), context
    values = {"mean": context, "std": context // 3, "max": 2 * context, "min": 1}
    workload = WorkloadConfig.from_mapping({"name": f"context-{context}", "values": values}, f"--context {context}")
    return workload, workload.max + generate


def assumptions(system: SystemConfig) -> list[tuple[str, int, str]]:
    """(key, value, source) of every system constant no public source gives (basis ``assumed``)."""
    return [(k, v, src) for k, v, basis, src in system.describe() if basis == "assumed"]
