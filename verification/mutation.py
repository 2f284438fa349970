"""Mutation check: inject realistic faults into the RTL one at a time and run the smoke suite on each.

A :class:`Mutant` names one edit of an RTL source file (``rtl/dcs.py``, ``rtl/dpa.py``, ``rtl/hub.py``):
an exact snippet that must occur exactly once, and its faulty replacement. The shipped RTL has no fault
hooks: :func:`apply` executes the edited source as the block's module in a fresh process (so every
block that imports it, the hub included, is built from the faulty version), the Verilog is generated
from it, and the smoke suite's testbenches run on it, the mutated block's own first. A mutant is
*caught* when a testbench fails; the run stops there. A stale catalogue (a snippet no longer in the
source) is an error, tested in ``make test``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

MODULES = {"dcs": "pimphony.rtl.dcs", "dpa": "pimphony.rtl.dpa", "hub": "pimphony.rtl.hub"}
"""The RTL source module a mutant edits, by block."""


@dataclass(frozen=True)
class Mutant:
    name: str
    block: str
    fault: str
    original: str
    mutated: str


CATALOGUE = (
    Mutant("timing-gap-short", "dcs", "every timing counter loads one cycle less than its rule (off-by-one)",
           "row = Array(Const(int(self.gap[p][k]), cnt_width) for p in range(n_ops))",
           "row = Array(Const(max(0, int(self.gap[p][k]) - 1), cnt_width) for p in range(n_ops))"),
    Mutant("gbuf-hazard-missed", "dcs", "GBuf entries are not tracked: a WR-INP may overwrite an entry a "
           "queued MAC still reads (missed WAR) and a MAC may read before its WR-INP (missed RAW)",
           "deps_ok = static | (dep_ok(h.dg) & dep_ok(h.do))", "deps_ok = static | dep_ok(h.do)"),
    Mutant("raw-before-completion", "dcs", "a dependent command waits until its producer has issued, "
           "not until it has completed (the S-Table is ignored)",
           "return ~d.valid | ~(unissued(d) | incomplete(d.seq))", "return ~d.valid | ~unissued(d)"),
    Mutant("drop-under-backpressure", "dcs", "the head leaves its queue when offered even if cmd_out.ready "
           "is low: a command is lost under back-pressure",
           "popping = fire & (sel == q)", "popping = valid & (sel == q)"),
    Mutant("queue-overflow", "dcs", "the occupancy check accepts a command into a full queue (off-by-one)",
           "space = Mux(cls, counts[1] < depths[1], counts[0] < depths[0])",
           "space = Mux(cls, counts[1] <= depths[1], counts[0] <= depths[0])"),
    Mutant("stale-queue-head", "dcs", "the queue's RAM is read at the current head pointer instead of the "
           "next one: after a pop the old head is offered again (a command issued twice, its successor late)",
           "m.d.comb += read_addr[q].eq(head_next)", "m.d.comb += read_addr[q].eq(head_ptr[q])"),
    Mutant("va2pa-sv-index", "dpa", "the SV phase translates through the K half of the VA2PA table "
           "(wrong VA2PA index)",
           "va_r.addr.eq(va_addr(run_slot, f_kind, run_seg, vrow >> lrpc))",
           "va_r.addr.eq(va_addr(run_slot, 0, run_seg, vrow >> lrpc))"),
    Mutant("chunk-not-returned", "dpa", "CLOSE returns every K chunk of a segment but the last to the free "
           "list (a leak)",
           "start_cursor(slot, 0, have[0][slot], 0, have[1][slot])",
           "start_cursor(slot, 0, have[0][slot] - 1, 0, have[1][slot])"),
    Mutant("out-of-chunks-early", "dpa", "OPEN refuses a request that exactly fits the free pool "
           "(off-by-one in the OUT_OF_CHUNKS check)",
           "with m.Elif(need > count):\n                            answer(StatusShape.OUT_OF_CHUNKS)\n"
           "                        with m.Else():\n                            m.d.sync += [valid[new_slot]",
           "with m.Elif(need >= count):\n                            answer(StatusShape.OUT_OF_CHUNKS)\n"
           "                        with m.Else():\n                            m.d.sync += [valid[new_slot]"),
    Mutant("append-overwrites-length", "dpa", "APPEND sets the request's length to the appended tokens "
           "instead of adding them",
           "new_len.eq(Mux(req.op == DpaOp.APPEND, length[slot] + arg, arg))",
           "new_len.eq(Mux(req.op == DpaOp.APPEND, arg, arg))"),
    Mutant("k-guard-past-end", "dpa", "the Dyn-Loop K guard keeps a channel whose first token is at the "
           "request's end (<= instead of <)",
           "(first_k + ranks[0][ch] * org.banks < b_t1)", "(first_k + ranks[0][ch] * org.banks <= b_t1)"),
    Mutant("translate-past-end", "dpa", "TRANSLATE answers for the token at the request's length instead of "
           "PAST_END (off-by-one bound)",
           "with m.Elif((arg >= length[slot]) | (req.segment >= S)):",
           "with m.Elif((arg > length[slot]) | (req.segment >= S)):"),
    Mutant("barrier-without-drain", "hub", "the phase barrier does not wait for the queues to drain: the EPU "
           "runs softmax while scores are still being read out",
           "self.sync.valid.eq(need_sync & (self.drained == (1 << n) - 1))", "self.sync.valid.eq(need_sync)"),
    Mutant("rd-out-rank-stride", "hub", "the RD-OUT gather offsets a channel's results by its rank instead "
           "of rank x op_size: channels overwrite each other's scores",
           "Mux(op == OpcodeShape.RD_OUT, rank * size, 0)", "Mux(op == OpcodeShape.RD_OUT, rank, 0)"),
    Mutant("multicast-any-taken", "hub", "a multicast repetition ends when any channel has taken it: "
           "channels that were not ready lose the command",
           "rep_done = issuing & (((taken | fired) & cur.ch_mask) == cur.ch_mask)",
           "rep_done = issuing & ((taken | fired) & cur.ch_mask).any()"),
)


class MutationError(ValueError):
    """A mutant does not apply to the current source (the catalogue is stale)."""


def mutant(name: str) -> Mutant:
    for m in CATALOGUE:
        if m.name == name:
            return m
    raise MutationError(f"no mutant {name!r}; choose from {', '.join(m.name for m in CATALOGUE)}")


def source_of(m: Mutant) -> tuple[str, str]:
    """(path, mutated source text) of ``m``'s RTL module; the original snippet must occur exactly once."""
    spec = importlib.util.find_spec(MODULES[m.block])
    text = Path(spec.origin).read_text()
    hits = text.count(m.original)
    if hits != 1:
        raise MutationError(f"mutant {m.name}: the snippet occurs {hits} times in {spec.origin} (must be once): "
                            f"{m.original!r}")
    return spec.origin, text.replace(m.original, m.mutated)


def apply(m: Mutant) -> None:
    """Make ``m``'s block module the mutated one in this process. Call before anything imports it
    (the RTL's other modules then bind the faulty classes)."""
    name = MODULES[m.block]
    if name in sys.modules:
        raise MutationError(f"{name} is already imported; apply a mutant in a fresh process")
    path, text = source_of(m)
    spec = importlib.util.find_spec(name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    exec(compile(text, path, "exec"), module.__dict__)


@dataclass
class MutantResult:
    name: str
    block: str
    fault: str
    caught: bool
    caught_by: str            # "tb_dcs seed 1", or why not
    seconds: float


def smoke_order(m: Mutant) -> list:
    """The smoke suite's runs, the mutated block's first."""
    from .regress import load_suite

    runs = load_suite("smoke")
    return sorted(runs, key=lambda r: r.block != m.block)


def check(name: str, sim: str, root: Path) -> MutantResult:
    """In this (fresh) process: apply mutant ``name``, build, run the smoke suite until a testbench fails."""
    m = mutant(name)
    apply(m)
    from pimphony.rtl.build import write_verilog

    from .runner import SUITES, run_suite

    start = time.perf_counter()
    for run in smoke_order(m):
        source = write_verilog(run.block, root / "rtl" / run.block, testbench=True)
        try:
            run_suite(run.block, sim, source, root / "sim", run.seed, quiet=True, scale=run.scale)
        except RuntimeError:
            where = SUITES[run.block].rsplit(".", 1)[1]
            return MutantResult(m.name, m.block, m.fault, True, f"{where} seed {run.seed}",
                                time.perf_counter() - start)
    return MutantResult(m.name, m.block, m.fault, False, "every smoke testbench passed",
                        time.perf_counter() - start)


def run_mutants(names: list[str], sim: str, root: Path, jobs: int = 2, progress=None,
                timeout: float = 900) -> list[MutantResult]:
    """Check each mutant in its own process (``jobs`` at a time); a mutant whose process fails or runs
    past ``timeout`` seconds is reported as not caught, with the reason."""
    for n in names:
        source_of(mutant(n))                            # a stale catalogue fails before anything runs
    done = []

    def one(n: str) -> MutantResult:
        out = root / n
        out.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        cmd = [sys.executable, "-m", "pimphony.verification.mutation", n, sim, str(out)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            result = MutantResult(n, mutant(n).block, mutant(n).fault, False, f"timed out after {timeout:.0f} s",
                                  time.perf_counter() - began)
        else:
            report = out / "result.json"
            if proc.returncode == 0 and report.is_file():
                result = MutantResult(**json.loads(report.read_text()))
            else:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                result = MutantResult(n, mutant(n).block, mutant(n).fault, False, f"the check failed: {tail}",
                                      time.perf_counter() - began)
        done.append(result)
        if progress is not None:
            progress(len(done), len(names))
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, names))


def table(results: list[MutantResult], sim: str) -> str:
    caught = sum(r.caught for r in results)
    lines = [f"mutation check on {sim}: {caught}/{len(results)} mutants caught by the smoke suite",
             f"  {'mutant':<26} {'block':<5} {'caught by':<28} {'time':>6}  fault"]
    for r in results:
        by = r.caught_by if r.caught else f"NOT CAUGHT: {r.caught_by}"
        lines.append(f"  {r.name:<26} {r.block:<5} {by:<28} {r.seconds:>5.0f}s  {r.fault}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    name, sim, out = argv
    result = check(name, sim, Path(out))
    Path(out, "result.json").write_text(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
