"""Kernel costs for the system model, measured on the channel cycle model.

The system model (:mod:`pimphony.model.perf.system`) needs, per decode step, the cycles a channel
spends on attention and on FC GEMVs. It takes them from here, and everything here comes from the
lowering (:mod:`.lower`), the issue policies (:mod:`pimphony.model.policies`) and the timing table — no second set of
constants:

* **attention**: the cycles of the busiest channel for the QK^T and for the SV part of one
  (request, KV head) of ``L`` tokens with its ``g`` query heads (GQA row reuse), per layout (HFP
  at each key span of :data:`~pimphony.model.perf.system.HFP_SPANS`, TCP) and issue policy.
  Measured at a grid of lengths (:data:`ATTENTION_GRID`); between grid points the cost is
  interpolated linearly and beyond the last point it is extrapolated from the last two (a long
  stream is a repetition of whole rows, so the cost is affine there). A test holds both
  within 2% of the cycle model off the grid.
* **GEMV**: cycles per weight byte on one channel, from a 1024-wide GEMV in CENT's layout.

Measuring takes a few seconds per (module, timing, head_dim, group); results are cached on disk
(``$PIMPHONY_CACHE`` or ``~/.cache/pimphony``) under a key made of the inputs and the sources they
come from, so a changed lowering or policy is re-measured.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pimphony.model.cache import cache_dir, source_digest
from pimphony.model.config import ModuleOrg, TimingPreset
from pimphony.model.isa import Opcode, channel_stream
from pimphony.model.perf.channel import run_channel
from pimphony.model.perf.system import BASELINE_SCHEDULE, HFP_SPANS, SCHEDULES, KernelCosts, PhaseCurve
from pimphony.model.queue import Policy, QueueConfig

ATTENTION_GRID = {**{f"hfp-{k}": tuple(sorted({16, 64, 256, 1024, 2048 * k, 4096 * k, 8192 * k}))
                     for k in HFP_SPANS},
                  "tcp": (16, 64, 256, 1024, 4096, 16384, 32768, 65536, 262144)}
"""Context lengths (tokens of one request) at which attention is measured, per layout: up to 8192 keys
on the busiest channel of an HFP pair (its keys spread over ``k`` channels), 8192 of a TCP pair on a
32-channel module. Past a few hundred rows a channel's stream repeats whole rows and refresh periods,
so the cost is affine there; a test holds the extrapolation within 2% of the cycle model."""

COMMAND_CLASSES = {Opcode.ACT: "act", Opcode.MAC: "mac", Opcode.WR_INP: "io", Opcode.WR_BIAS: "io",
                   Opcode.RD_OUT: "io"}
"""Commands counted for energy: a row opening (its PRE comes with it), a MAC, a 32 B transfer."""
GEMV_SHAPE = (1024, 2048)
"""(inputs, outputs) of the GEMV that prices FC layers: the widest input one DRAM row holds."""
SOURCES = ("scheduler/lower.py", "scheduler/partition.py", "model/policies.py", "scheduler/costs.py",
           "scheduler/aim.py", "model/aimtrace.py",
           "scheduler/dcs_experiments.py", "model/timing.py", "model/isa.py", "model/queue.py", "model/program.py",
           "model/perf/channel.py")


def _channel_cycles(instructions, channel: int, cfg: QueueConfig, timing: TimingPreset) -> int:
    from pimphony.model.policies import issuer

    return run_channel(channel_stream(instructions, channel), timing, issuer(cfg), check=False).total_cycles


def _aim_cycles(instructions, channel: int, timing: TimingPreset) -> int:
    from . import aim

    return aim.run_stream(channel_stream(instructions, channel), timing, channel=channel).total_cycles


def attention_profiles(org: ModuleOrg, timing: TimingPreset, partition: str, head_dim: int, group: int,
                       length: int) -> dict[str, tuple[int, int, int, int, int]]:
    """Per schedule (``aim`` and the :class:`Policy` names), for one (request, KV head) of ``length``
    tokens: the (QK^T, SV) cycles of the busiest channel and the (ACT, MAC, I/O) commands the pair issues
    over all channels. Policies that share an OBuf size share one lowering; ``aim`` runs the static
    baseline's (AiM's output registers).

    Channel 0 is the busiest in every layout: HFP puts pair 0's first key channel and its V slice
    there, and HFP and TCP deal tokens round robin from channel 0, so channel 0 holds the most.
    """
    lowered: dict[int, tuple[list, list, dict[str, int]]] = {}
    out = {}
    for policy in Policy:
        cfg = QueueConfig.for_org(org, policy)
        if cfg.obuf_entries not in lowered:
            from .dcs_experiments import attention_program  # measuring needs the compiler; a cached read not

            program = attention_program(org, group, length, cfg.obuf_entries, partition, head_dim)
            qk, sv = program.instructions("qk"), program.instructions("sv")
            counts = dict.fromkeys(COMMAND_CLASSES.values(), 0)
            for i in qk + sv:
                if i.op in COMMAND_CLASSES:
                    counts[COMMAND_CLASSES[i.op]] += i.op_size * len(i.channels())
            lowered[cfg.obuf_entries] = qk, sv, counts
        qk, sv, counts = lowered[cfg.obuf_entries]
        out[policy.name.lower()] = (_channel_cycles(qk, 0, cfg, timing), _channel_cycles(sv, 0, cfg, timing),
                                    counts["act"], counts["mac"], counts["io"])
        if policy == Policy.STATIC:
            out[BASELINE_SCHEDULE] = (_aim_cycles(qk, 0, timing), _aim_cycles(sv, 0, timing),
                                      counts["act"], counts["mac"], counts["io"])
    return out


def gemv_cycles_per_byte(org: ModuleOrg, timing: TimingPreset, schedule: str) -> float:
    """Channel cycles per weight byte of a GEMV (:data:`GEMV_SHAPE`) in CENT's layout under ``schedule``
    (``aim`` runs the static baseline's lowering)."""
    policy = Policy.STATIC if schedule == BASELINE_SCHEDULE else Policy[schedule.upper()]
    cfg = QueueConfig.for_org(org, policy)
    n_in, n_out = GEMV_SHAPE
    from .lower import lower_gemv

    ins = lower_gemv(org, n_in, n_out, cfg.obuf_entries)
    cycles = _aim_cycles(ins, 0, timing) if schedule == BASELINE_SCHEDULE else _channel_cycles(ins, 0, cfg, timing)
    return cycles / (n_in * n_out * org.element_bytes)


def _key(org: ModuleOrg, timing: TimingPreset, head_dim: int, group: int) -> str:
    inputs = (org.describe(), timing.describe(), head_dim, group, ATTENTION_GRID, GEMV_SHAPE, PhaseCurve.FIELDS)
    return source_digest(inputs, list(SOURCES)).hexdigest()[:24]


def warn(message: str) -> None:
    """One warning line on standard error."""
    print(f"pimphony: warning: {message}", file=sys.stderr)


def cache_load(path: Path) -> dict | None:
    """A cached JSON object, or None when it is missing, unreadable or not an object (then it is
    computed again; the caller validates the contents)."""
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


_unwritable: set[Path] = set()


def cache_store(path: Path, value: dict) -> None:
    """Write a JSON object atomically, so parallel workers never read half a file. A cache location
    that cannot be written is reported once, and the run goes on without storing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(value))
        tmp.replace(path)
    except OSError as exc:
        if cache_dir() not in _unwritable:
            _unwritable.add(cache_dir())
            warn(f"cannot write the cache at {cache_dir()} ({exc.strerror or exc}); running without a cache "
                 "(set PIMPHONY_CACHE to a writable folder)")


def measure(org: ModuleOrg, timing: TimingPreset, head_dim: int, group: int) -> KernelCosts:
    """Measure every curve on the cycle model (a few seconds)."""
    curves = {}
    for partition, grid in ATTENTION_GRID.items():
        pts = [attention_profiles(org, timing, partition, head_dim, group, n) for n in grid]
        for schedule in SCHEDULES:
            curves[(partition, schedule)] = PhaseCurve(grid, *(tuple(p[schedule][k] for p in pts) for k in range(5)))
    gemv = {schedule: gemv_cycles_per_byte(org, timing, schedule) for schedule in SCHEDULES}
    return KernelCosts(org.channels, org.banks, head_dim, group, curves, gemv)


def cache_path(org: ModuleOrg, timing: TimingPreset, head_dim: int, group: int) -> Path:
    """Where :func:`kernel_costs` keeps the costs of these inputs."""
    return cache_dir() / f"costs-{_key(org, timing, head_dim, group)}.json"


def kernel_costs(org: ModuleOrg, timing: TimingPreset, head_dim: int, group: int,
                 use_cache: bool = True) -> KernelCosts:
    """:func:`measure`, through the on-disk cache."""
    path = cache_path(org, timing, head_dim, group)
    raw = cache_load(path) if use_cache else None
    if raw is not None:
        try:
            costs = KernelCosts.from_json(raw)
            if (costs.channels, costs.banks, costs.head_dim, costs.group) != (org.channels, org.banks, head_dim,
                                                                                group):
                raise ValueError("they were measured for another module, head_dim or group")
            return costs
        except (KeyError, TypeError, ValueError) as exc:
            warn(f"the cached kernel costs {path} are damaged ({exc}); measuring them again")
    costs = measure(org, timing, head_dim, group)
    if use_cache:
        cache_store(path, costs.to_json())
    return costs
