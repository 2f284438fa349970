"""Regression suites (``verification/suites/*.yaml``): run cocotb testbenches over seeds, summarise, write JUnit.

A suite lists runs: ``block`` (a key of :data:`pimphony.verification.runner.SUITES`), ``seeds`` (a list,
or ``random`` with ``count``: drawn once, printed, and those are the seeds that run), ``scale``
(``PIMPHONY_SCALE``, default 1), ``tests`` (test cases to keep; default all) and ``cycles``
(``PIMPHONY_CYCLES``: how long the stress tests run). Every (block, seed) runs the block's cocotb
module; the results of all its test cases are gathered into one JUnit XML file, and the counters the
stress tests record (:mod:`pimphony.verification.env.stats`) are summed over the suite.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pimphony.model.config import yaml_message

from .env.coverage import merge
from .env.coverage import summary as coverage_summary
from .env.stats import FIELDS
from .env.stats import read as read_stats

SUITE_DIR = Path(__file__).resolve().parent / "suites"
KEYS = {"block", "seeds", "count", "scale", "tests", "cycles"}


class SuiteError(ValueError):
    """A suite file is missing or malformed (the message names the file and the problem)."""


@dataclass(frozen=True)
class SuiteRun:
    block: str
    seed: int
    scale: int
    tests: tuple[str, ...] = ()
    cycles: int = 0


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
    stats: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIELDS, 0))

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)


def suite_names() -> list[str]:
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load_suite(name: str, seed: int | None = None, random_seed: int | None = None) -> list[SuiteRun]:
    """The runs of suite ``name``; ``seed`` replaces every seed list by that one seed, except that
    ``random`` seeds are drawn from ``random_seed`` (default: ``seed``, else fresh), so a suite run is
    replayed by giving its seed."""
    draw = random.Random(seed if random_seed is None else random_seed)
    from .runner import SUITES

    path = Path(name) if name.endswith((".yaml", ".yml")) else SUITE_DIR / f"{name}.yaml"
    if not path.is_file():
        raise SuiteError(f"no suite {name!r}; choose one of {', '.join(suite_names())} or give a suite file")
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise SuiteError(f"{path}: not valid YAML{yaml_message(exc)}") from None
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
        if seeds == "random":
            seeds = [draw.randrange(1 << 31) for _ in range(int(entry.get("count", 1)))]
        elif seed is not None:
            seeds = [seed]
        if not isinstance(seeds, list) or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise SuiteError(f"{where}: seeds must be a list of non-negative integers or 'random'")
        scale = entry.get("scale", 1)
        if not isinstance(scale, int) or scale < 1:
            raise SuiteError(f"{where}: scale must be a positive integer")
        tests = entry.get("tests", [])
        if not isinstance(tests, list) or not all(isinstance(t, str) and t for t in tests):
            raise SuiteError(f"{where}: tests must be a list of test case names")
        cycles = entry.get("cycles", 0)
        if not isinstance(cycles, int) or cycles < 0:
            raise SuiteError(f"{where}: cycles must be a non-negative integer")
        out += [SuiteRun(entry["block"], s, scale, tuple(tests), cycles) for s in seeds]
    return out


def select_blocks(runs: list[SuiteRun], blocks: list[str] | None, suite: str) -> list[SuiteRun]:
    """The runs of ``blocks`` only (all of them when None). Seeds are drawn before the selection, so a
    selected run has the seed it has in the whole suite and the suite seed replays it."""
    if not blocks:
        return runs
    missing = sorted(set(blocks) - {r.block for r in runs})
    if missing:
        raise SuiteError(f"suite {suite!r} has no run of block {', '.join(missing)}; its blocks: "
                         f"{', '.join(sorted({r.block for r in runs}))}")
    return [r for r in runs if r.block in blocks]


def _cases(xml: Path, run: SuiteRun) -> list[CaseResult]:
    out = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        if case.find("skipped") is not None:          # e.g. the stress tests outside a stress suite
            continue
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


@dataclass
class RunOutcome:
    """What one (block, seed) run left: its test cases, waveforms, coverage file and counters."""

    cases: list[CaseResult]
    waveforms: list[Path]
    coverage: Path | None
    stats: dict[str, int]


@functools.cache
def _testbench_verilog(block: str, root: Path) -> Path:
    """A block's testbench Verilog, written once per process and folder (converted once per revision)."""
    from pimphony.rtl.build import write_block_verilog

    from .configs import testbench_options

    return write_block_verilog(block, root / "rtl" / block, **testbench_options(block))


def run_one(run: SuiteRun, index: int, sim: str, root: Path, waves: bool, separate: bool = False) -> RunOutcome:
    """Run one (block, seed) of a suite under ``root``; ``separate`` gives it its own build folder (runs
    on a Dask cluster may share a machine and must not share a simulator build)."""
    from pimphony.rtl.blocks import TOP_NAMES

    from .runner import run_suite

    source = _testbench_verilog(run.block, root)
    sim_root = root / (f"sim-{index}" if separate else "sim")
    build = sim_root / sim / TOP_NAMES[run.block]
    began = time.time()
    cover = root / "coverage" / sim / f"{run.block}-{run.seed}-{index}.yml"
    stats_file = root / "stats" / sim / f"{run.block}-{run.seed}-{index}.json"
    with contextlib.suppress(RuntimeError):            # failures are read from the results file
        run_suite(run.block, sim, source, sim_root, run.seed, quiet=True, scale=run.scale, waves=waves,
                  coverage=cover, tests=list(run.tests) or None, cycles=run.cycles, stats=stats_file)
    fresh = [x for x in build.glob("*.xml") if x.stat().st_mtime >= began - 1]
    cases = _cases(max(fresh, key=lambda x: x.stat().st_mtime), run) if fresh else []
    cases = cases or [CaseResult(run.block, run.seed, "(no results)", False, 0, 0,
                                 f"the simulation wrote no results; see {build / 'sim.log'}")]
    dumps = sorted(build.glob("*.fst")) + sorted(build.glob("*.vcd")) if waves else []
    return RunOutcome(cases, dumps, cover if cover.is_file() else None, read_stats(stats_file))


def run_regression(name: str, sim: str, build_root: Path, runs: list[SuiteRun], waves: bool = False,
                   progress=None, scheduler: str | None = None) -> SuiteResult:
    """Run ``runs`` (suite ``name``, from :func:`load_suite`: the seeds printed are the seeds run) on
    ``sim``, one after another or spread over the Dask cluster at ``scheduler``; every test case's
    outcome, a JUnit file, any waveforms and the summed counters of the stress tests."""

    name = Path(name).stem
    result = SuiteResult(name, sim)
    start = time.perf_counter()
    root = (build_root / ("waves" if waves else "plain")).resolve()
    outcomes: list[RunOutcome | None] = [None] * len(runs)
    if scheduler:
        from distributed import Client, as_completed

        with Client(scheduler, timeout="10s") as client:
            futures = client.map(run_one, runs, range(len(runs)), sim=sim, root=root, waves=waves,
                                 separate=True, pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            for done, future in enumerate(as_completed(futures), start=1):
                outcomes[index[future.key]] = future.result()
                if progress is not None:
                    progress(done, len(runs))
    else:
        for i, run in enumerate(runs):
            outcomes[i] = run_one(run, i, sim, root, waves)
            if progress is not None:
                progress(i + 1, len(runs))
    covered = []
    for outcome in outcomes:
        assert outcome is not None
        result.cases += outcome.cases
        result.waveforms += outcome.waveforms
        covered += [outcome.coverage] if outcome.coverage else []
        for key, value in outcome.stats.items():
            result.stats[key] += value
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
    if any(result.stats.values()):
        lines.append("  stress counters: " + ", ".join(f"{k} {v:,}" for k, v in result.stats.items()))
    lines.append(f"  functional coverage (cocotb-coverage, merged over the runs; {result.coverage_file}):")
    lines.append(coverage_summary(result.coverage))
    lines.append(f"  JUnit: {result.junit}")
    for w in result.waveforms:
        lines.append(f"  waveform: {w}")
    return "\n".join(lines)
