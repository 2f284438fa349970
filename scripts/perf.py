"""``pimphony perf``: the arguments that pick a system point and the human-readable answer."""

from __future__ import annotations

import argparse

from pimphony.model.config import DEFAULT_TIMING
from pimphony.model.perf.system import PerfResult


def add_system_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments that pick a system point, shared by ``perf`` and ``serve``."""
    parser.add_argument("--model", required=True, help="model preset name or a YAML / Hugging Face config.json file")
    parser.add_argument("--system", default="cent", help="cent (PIM-only), neupims (xPU+PIM) or a system YAML file")
    parser.add_argument("--capacity", default="128GB", help="total PIM capacity, e.g. 128GB, 512GB, 1TB")
    parser.add_argument("--module", help="module organisation preset (default: the system's)")
    parser.add_argument("--timing", default=DEFAULT_TIMING, help="timing preset or YAML file")


def describe(result: PerfResult) -> str:
    """The human-readable answer of ``pimphony perf``."""
    p, a, b = result.point, result.admission, result.best
    t = p.techniques
    span = f" (keys on {p.system.hfp_span} channel(s))" if t.partition == "hfp" else ""
    lines = [
        f"{p.model.name} on {p.system.name} ({p.modules} x {p.org.name}, {p.capacity_bytes / 2**30:.0f} GB), "
        f"workload {p.workload.name}, {t.partition.upper()}{span} + {t.schedule} scheduling + {t.alloc} allocation",
        f"  throughput          {b.tokens_per_s:12,.1f} tokens/s   (step {b.step_ns / 1e6:.3f} ms)",
        f"  batch               {a.batch:12d}   (mean context {a.lengths.mean():,.0f} + {p.generate} generated)",
        f"  parallelism         TP {b.tp} x PP {b.pp} on {b.modules} of {p.modules} modules, "
        f"{b.micro_batches} micro-batch(es)",
        f"  MAC utilisation     {100 * b.mac_utilisation:11.1f}%   of the PIM MAC roofline",
        f"  capacity use        {100 * a.utilisation:11.1f}%   live KV / reserved KV",
        f"  attention energy    {b.attention_nj_per_token / 1000:12,.1f} uJ/token ({100 * b.background_share:.0f}% "
        f"background; {p.system.name}'s public power constants)",
        "  time per step:",
    ]
    for k, v in sorted(b.parts_ns.items(), key=lambda kv: -abs(kv[1])):
        lines.append(f"    {k:<16} {v / 1e6:10.3f} ms  {100 * v / b.step_ns:6.1f}%")
    others = sorted(result.plans, key=lambda q: -q.tokens_per_s)[1:4]
    if others:
        lines.append("  next best: " + ", ".join(f"TP {q.tp} x PP {q.pp} on {q.modules} {q.tokens_per_s:,.1f}"
                                              for q in others))
    return "\n".join(lines)
