"""A configuration point of the system model by names (:class:`PointSpec`), loaded into a
:class:`~pimphony.model.perf.system.Point` and evaluated; capacities like ``128GB``. The CLI's ``perf``,
the sweep, the serving study and the reproduction share it."""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass

from pimphony.model.config import (
    DEFAULT_GENERATE,
    DEFAULT_TIMING,
    ModelConfig,
    ModuleOrg,
    SystemConfig,
    TimingPreset,
    WorkloadConfig,
)
from pimphony.model.perf.system import MODULES, PerfResult, Point, Techniques, context_workload, evaluate
from pimphony.scheduler.costs import kernel_costs

UNITS = {"": 1 << 30, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def parse_size(text: str) -> int:
    """``128GB``, ``512 GiB``, ``1TB`` or a bare number of GB -> bytes. Capacities follow the paper's
    module sizes (a 16 GB CENT module holds 2^34 bytes), so GB means 2^30 bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).upper() if match else ""
    if not match or unit not in UNITS:
        raise ValueError(f"{text!r} is not a capacity; write e.g. 128GB, 512GiB or 1TB")
    value = float(match.group(1)) * UNITS[unit]
    if value < 1:
        raise ValueError(f"capacity {text!r} must be positive")
    return int(value)


@dataclass(frozen=True)
class PointSpec:
    """A configuration point by names: what the CLI and a sweep spec give (hashable, for the cache)."""

    model: str
    system: str = "cent"
    capacity: str = "128GB"
    workload: str | None = None
    context: int | None = None
    fixed: bool = False
    partition: str = Techniques.partition
    schedule: str = Techniques.schedule
    alloc: str = Techniques.alloc
    module: str | None = None
    timing: str = DEFAULT_TIMING
    seed: int = 0
    generate: int = DEFAULT_GENERATE
    t_max: int | None = None
    hfp_span: int | None = None

    def __post_init__(self):
        for name, optional in (("model", False), ("system", False), ("capacity", False), ("workload", True),
                               ("partition", False), ("schedule", False), ("alloc", False), ("module", True),
                               ("timing", False)):
            value = getattr(self, name)
            if not (isinstance(value, str) or (optional and value is None)):
                raise ValueError(f"{name}: must be a name or a file path; got {value!r}")
        for name, low, optional in (("context", 1, True), ("seed", 0, False), ("generate", 1, False),
                                    ("t_max", 1, True), ("hfp_span", 1, True)):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}: must be an integer of at least {low}; got {value!r}")
        if (self.workload is None) == (self.context is None):
            raise ValueError("give exactly one of workload and context")
        if not isinstance(self.fixed, bool) or (self.fixed and self.context is None):
            raise ValueError(f"fixed: must be true or false, and only with a context; got {self.fixed!r}")
        Techniques(self.partition, self.schedule, self.alloc)

    def key(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)


def build_point(spec: PointSpec) -> Point:
    """Load every config of ``spec`` (presets by name or files by path)."""
    model = ModelConfig.load(spec.model)
    system = SystemConfig.load(spec.system)
    if spec.hfp_span is not None:
        system = dataclasses.replace(system, hfp_span=spec.hfp_span)
    module = spec.module or MODULES.get(system.name)
    if module is None:
        raise ValueError(f"system {system.name!r} has no default module; give --module")
    org, timing = ModuleOrg.load(module), TimingPreset.load(spec.timing)
    if spec.context is not None:
        workload, t_max = context_workload(spec.context, spec.fixed, spec.generate)
        t_max = spec.t_max or t_max
    else:
        workload, t_max = WorkloadConfig.load(spec.workload), spec.t_max
    return Point(model, system, org, timing, parse_size(spec.capacity), workload,
                 Techniques(spec.partition, spec.schedule, spec.alloc), t_max, spec.seed, spec.generate)


def run_point(spec: PointSpec) -> PerfResult:
    point = build_point(spec)
    costs = kernel_costs(point.org, point.timing, point.model.head_dim, point.model.group)
    return evaluate(point, costs)
