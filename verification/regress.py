"""Regression suites (``verification/suites/*.yaml``): run cocotb testbenches over seeds, summarise, write JUnit.

A suite lists runs: ``block`` (a key of :data:`pimphony.verification.runner.SUITES`), ``seeds`` (a list,
or ``random`` with ``count``), and ``scale`` (``PIMPHONY_SCALE``, default 1). Every (block, seed) runs
the block's whole cocotb module; the results of all its test cases are gathered into one JUnit XML file.
"""

from __future__ import annotations

import contextlib
import random
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .env.coverage import merge
from .env.coverage import summary as coverage_summary

SUITE_DIR = Path(__file__).resolve().parent / "suites"
KEYS = {"block", "seeds", "count", "scale"}


class SuiteError(ValueError):
    """A suite file is missing or malformed (the message names the file and the problem)."""


@dataclass(frozen=True)
class SuiteRun:
    block: str
    seed: int
    scale: int


@dataclass
class CaseResult:
    block: str
    seed: int
    name: str
    passed: bool
    sim_ns: float
    seconds: float
    message: str = ""


@dataclass
class SuiteResult:
    suite: str
    sim: str
    cases: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    junit: Path | None = None
    waveforms: list[Path] = field(default_factory=list)
    coverage: dict[str, dict[str, int]] = field(default_factory=dict)
    coverage_file: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load_suite(name: str, seed: int | None = None) -> list[SuiteRun]:
    """The runs of suite ``name``; ``seed`` replaces every seed list by that one seed."""
    from .runner import SUITES

    path = SUITE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SuiteError(f"no suite {name!r}; choose one of {', '.join(suite_names())}")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("runs"), list) or not spec["runs"]:
        raise SuiteError(f"{path}: needs a non-empty list 'runs'")
    out = []
    for i, entry in enumerate(spec["runs"]):
        where = f"{path}: runs[{i}]"
        if not isinstance(entry, dict) or set(entry) - KEYS:
            raise SuiteError(f"{where}: keys must be among {sorted(KEYS)}")
        if entry.get("block") not in SUITES:
            raise SuiteError(f"{where}: block must be one of {sorted(SUITES)}, got {entry.get('block')!r}")
        seeds = entry.get("seeds", [1])
        if seed is not None:
            seeds = [seed]
        elif seeds == "random":
            seeds = [random.randrange(1 << 31) for _ in range(int(entry.get("count", 1)))]
        if not isinstance(seeds, list) or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise SuiteError(f"{where}: seeds must be a list of non-negative integers or 'random'")
        scale = entry.get("scale", 1)
        if not isinstance(scale, int) or scale < 1:
            raise SuiteError(f"{where}: scale must be a positive integer")
        out += [SuiteRun(entry["block"], s, scale) for s in seeds]
    return out


def _cases(xml: Path, run: SuiteRun) -> list[CaseResult]:
    out = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        failure = case.find("failure")
        if failure is None:
            failure = case.find("error")
        props = {q.get("name"): q.get("value") for q in case.iter("property")}
        scale = {"ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6}.get(props.get("sim_time_unit", "ns"), 1.0)
        sim_ns = float(props.get("sim_time_duration") or 0) * scale
        out.append(CaseResult(run.block, run.seed, case.get("name", "?"), failure is None, sim_ns,
                              float(case.get("time", 0) or 0),
                              "" if failure is None else (failure.get("message") or "failed")[:200]))
    return out


def run_regression(name: str, sim: str, build_root: Path, seed: int | None = None, waves: bool = False,
                   progress=None) -> SuiteResult:
    """Run suite ``name`` on ``sim``; every test case's outcome, a JUnit file and any waveforms."""
    from pimphony.rtl.build import TOP_NAMES, write_verilog

    from .runner import run_suite

    runs = load_suite(name, seed)
    result = SuiteResult(name, sim)
    start = time.perf_counter()
    root = build_root / ("waves" if waves else "plain")
    sources = {}
    covered = []
    for i, run in enumerate(runs):
        if run.block not in sources:
            sources[run.block] = write_verilog(run.block, root / "rtl" / run.block, testbench=True)
        build = root / "sim" / sim / TOP_NAMES[run.block]
        began = time.time()
        cover = root / "coverage" / sim / f"{run.block}-{run.seed}-{i}.yml"
        with contextlib.suppress(RuntimeError):            # failures are read from the results file
            run_suite(run.block, sim, sources[run.block], root / "sim", run.seed, quiet=True, scale=run.scale,
                      waves=waves, coverage=cover)
        if cover.is_file():
            covered.append(cover)
        fresh = [x for x in build.glob("*.xml") if x.stat().st_mtime >= began - 1]
        cases = _cases(max(fresh, key=lambda x: x.stat().st_mtime), run) if fresh else []
        result.cases += cases or [CaseResult(run.block, run.seed, "(no results)", False, 0, 0,
                                             f"the simulation wrote no results; see {build / 'sim.log'}")]
        if waves:
            build_dir = root / "sim" / sim / TOP_NAMES[run.block]
            result.waveforms += sorted(build_dir.glob("*.fst")) + sorted(build_dir.glob("*.vcd"))
        if progress is not None:
            progress(i + 1, len(runs))
    result.seconds = time.perf_counter() - start
    result.junit = write_junit(result, build_root / f"{name}-{sim}.xml")
    result.coverage = merge(covered)
    result.coverage_file = build_root / f"{name}-{sim}-coverage.yml"
    result.coverage_file.write_text(yaml.safe_dump(result.coverage, sort_keys=True))
    return result


def write_junit(result: SuiteResult, path: Path) -> Path:
    suite = ET.Element("testsuite", name=f"{result.suite}-{result.sim}", tests=str(len(result.cases)),
                       failures=str(sum(not c.passed for c in result.cases)), time=f"{result.seconds:.2f}")
    for c in result.cases:
        case = ET.SubElement(suite, "testcase", classname=f"{c.block}.seed{c.seed}", name=c.name,
                             time=f"{c.seconds:.3f}")
        if not c.passed:
            ET.SubElement(case, "failure", message=c.message)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path)
    return path


def summary(result: SuiteResult) -> str:
    """A table: block, seed, test, outcome, simulated time, wall time."""
    lines = [f"regress {result.suite} on {result.sim}: {sum(c.passed for c in result.cases)}/{len(result.cases)} "
             f"passed in {result.seconds:.1f} s", f"  {'block':<6} {'seed':>10}  {'test':<48} {'result':<6} "
             f"{'sim time':>12} {'wall':>7}"]
    for c in result.cases:
        lines.append(f"  {c.block:<6} {c.seed:>10}  {c.name[:48]:<48} {'PASS' if c.passed else 'FAIL':<6} "
                     f"{c.sim_ns / 1000:>10.1f}us {c.seconds:>6.1f}s")
        if c.message:
            lines.append(f"         {c.message}")
    lines.append(f"  functional coverage (cocotb-coverage, merged over the runs; {result.coverage_file}):")
    lines.append(coverage_summary(result.coverage))
    lines.append(f"  JUnit: {result.junit}")
    for w in result.waveforms:
        lines.append(f"  waveform: {w}")
    return "\n".join(lines)
