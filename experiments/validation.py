"""``pimphony reproduce validation``: the performance model's cycles against the RTL's.

Every point runs one attention pair (one request, one KV head) through the RTL hub in amaranth.sim
(:func:`pimphony.verification.sim.simulate_hub`): the program is loaded, the request opened, and the RUN's
cycles measured from its offer until the hub is idle. The hub model
(:func:`pimphony.model.perf.hub.predict_run`) predicts the same RUN from the golden DPA controller's
fetch sequence, starting at the cycle the RTL offered it (the refresh timers count from reset).
At channel level, channel 0's command stream of the RUN goes through the RTL queue alone
(:func:`pimphony.verification.sim.simulate_queue`) and through the channel cycle model
(:func:`pimphony.model.policies.issue_cycles`): every issue cycle must be equal.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pimphony.model.perf.hub import EPU_CYCLES


@dataclass(frozen=True)
class Point:
    channels: int
    head_dim: int
    group: int
    length: int
    policy: str

    @property
    def label(self) -> str:
        return f"{self.channels}ch d{self.head_dim} g{self.group} L{self.length} {self.policy}"


@dataclass
class Outcome:
    point: Point
    rtl: int
    model: int
    channel_commands: int
    channel_exact: bool

    @property
    def error(self) -> float:
        return (self.model - self.rtl) / self.rtl


def sweep(quick: bool = False) -> list[Point]:
    """The validation points: 4 channels at head_dim 64 (g = 1, 2, 4) and 8 channels at head_dim 128
    (g = 1, 4), contexts from one partial row to two blocks' worth, every policy; ``quick``: 3 points."""
    policies = ("STATIC", "PINGPONG", "DCS")
    points = [Point(4, 64, g, n, p) for g in (1, 2, 4) for n in (300, 1029, 2048) for p in policies]
    points += [Point(8, 128, g, n, p) for g in (1, 4) for n in (517, 2048) for p in policies]
    return [Point(4, 64, 2, 300, p) for p in policies] if quick else points


def run_point(p: Point) -> Outcome:
    """Measure ``p`` on the RTL (hub and channel 0's queue) and predict it with the models."""
    from pimphony.model.config import DEFAULT_MODULE, DEFAULT_TIMING, TimingPreset
    from pimphony.model.dpa import DpaControllerModel, DpaOp, DpaOperation, load_program
    from pimphony.model.isa import Format, channel_stream
    from pimphony.model.perf.hub import predict_run
    from pimphony.model.policies import issue_cycles
    from pimphony.model.queue import Policy, QueueConfig
    from pimphony.rtl.build import cut_module, workload_config
    from pimphony.rtl.dcs import DcsQueue
    from pimphony.rtl.hub import PimHub
    from pimphony.scheduler.dpa import head_program
    from pimphony.verification.sim import simulate_hub, simulate_queue

    timing = TimingPreset.load(DEFAULT_TIMING)
    config = workload_config(cut_module(DEFAULT_MODULE, p.channels), p.head_dim, 1, [p.length])
    fmt = Format.for_org(config.org)
    policy = Policy[p.policy]
    queue = dataclasses.replace(QueueConfig.rtl_default(config.org), policy=policy)
    ops = load_program(head_program(config.org, p.group, p.head_dim), fmt)
    ops += [DpaOperation(DpaOp.OPEN, 0, arg=p.length), DpaOperation(DpaOp.RUN, 0)]
    res = simulate_hub(PimHub(config, timing, queue), ops, policy, epu_cycles=EPU_CYCLES)
    begun, done = res.spans[-1]
    golden = DpaControllerModel(config)
    for op in ops:
        golden.step(op)
    predicted = predict_run(golden.fetched, config.org.channels, timing, queue, start=begun, epu_cycles=EPU_CYCLES)
    stream = channel_stream([ins for ins, _ in golden.fetched if ins is not None], 0)
    rtl_queue = simulate_queue(DcsQueue(fmt, timing, queue), stream, policy)
    model = issue_cycles(stream["op"], stream["gbuf"], stream["obuf"], timing, queue)
    issued = sorted(c for c, r in zip(rtl_queue.cycles, rtl_queue.refresh, strict=True) if not r)
    refreshes = sorted(c for c, r in zip(rtl_queue.cycles, rtl_queue.refresh, strict=True) if r)
    exact = issued == sorted(model.cycles.tolist()) and refreshes == sorted(model.refresh.tolist())
    return Outcome(p, done - begun, predicted.cycles, len(stream), exact)


def validate(points: list[Point], jobs: int = 2, progress=None) -> list[Outcome]:
    out: list[Outcome] = []
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        for outcome in pool.map(run_point, points):
            out.append(outcome)
            if progress is not None:
                progress(len(out), len(points))
    return out


def statistics(outcomes: list[Outcome]) -> dict[str, float]:
    """MAE (mean |relative error|), the largest |relative error|, R² of model against RTL cycles."""
    rtl = np.array([o.rtl for o in outcomes], dtype=float)
    model = np.array([o.model for o in outcomes], dtype=float)
    rel = np.abs(model - rtl) / rtl
    r2 = 1.0 - float(((model - rtl) ** 2).sum() / ((rtl - rtl.mean()) ** 2).sum()) if len(rtl) > 1 else 1.0
    return {"mae": float(rel.mean()), "max": float(rel.max()), "r2": r2}


def reproduce_validation(out: Path, quick: bool = False, jobs: int = 2, progress=None) -> tuple[Path, str]:
    """Write ``validation.md`` and ``validation.png`` into ``out``; returns the report's path and its
    summary (the hub-level and channel-level figures)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    outcomes = validate(sweep(quick), jobs, progress)
    stats = statistics(outcomes)
    exact = sum(o.channel_exact for o in outcomes)
    out.mkdir(parents=True, exist_ok=True)
    summary = (f"- **Hub level: MAE {stats['mae']:.2%}, largest error {stats['max']:.2%}, R² {stats['r2']:.5f} "
               f"over {len(outcomes)} points, {sum(o.model == o.rtl for o in outcomes)} of them equal to the "
               f"cycle** (target: MAE <= 2%)\n"
               f"- **Channel level: {exact}/{len(outcomes)} points equal cycle for cycle** "
               f"({sum(o.channel_commands for o in outcomes)} commands)")
    lines = ["# Cycle-model validation against the RTL", "",
             "Each point: one attention pair through the RTL hub (amaranth.sim; DPA controller, sequencer, one "
             "DCS queue per channel) and through the hub model (`pimphony.model.perf.hub`, composed of the channel "
             "cycle model and the DPA/sequencer pipeline). Channel level: channel 0's stream through the RTL "
             "queue alone and through the channel cycle model. Regenerate with `pimphony reproduce validation`.",
             "", summary, "",
             "| point | RTL cycles | model cycles | error | channel 0: commands, equal |",
             "|---|---:|---:|---:|---|"]
    for o in outcomes:
        lines.append(f"| {o.point.label} | {o.rtl} | {o.model} | {o.error:+.2%} | {o.channel_commands}, "
                     f"{'yes' if o.channel_exact else 'NO'} |")
    path = out / "validation.md"
    path.write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(5, 5))
    for policy, marker in (("STATIC", "s"), ("PINGPONG", "^"), ("DCS", "o")):
        sel = [o for o in outcomes if o.point.policy == policy]
        ax.scatter([o.rtl for o in sel], [o.model for o in sel], marker=marker, label=policy.lower())
    top = max(max(o.rtl, o.model) for o in outcomes) * 1.05
    ax.plot([0, top], [0, top], color="grey", linewidth=0.8)
    ax.set_xlabel("RTL cycles (amaranth.sim)")
    ax.set_ylabel("model cycles")
    ax.set_title(f"hub model vs RTL: MAE {stats['mae']:.2%}, R² {stats['r2']:.4f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "validation.png", dpi=120)
    plt.close(fig)
    return path, summary
