"""Mutation check: inject realistic faults into the RTL one at a time; simulation or proofs must catch each.

A :class:`Mutant` names one edit of an RTL source file (``rtl/dcs.py``, ``rtl/dpa.py``, ``rtl/hub.py``):
an exact snippet that must occur exactly once, and its faulty replacement. The shipped RTL has no fault
hooks: :func:`apply` executes the edited source as the block's module in a fresh process (so every
block that imports it, the hub included, is built from the faulty version), the Verilog is generated
from it, and the smoke suite's testbenches run on it, the mutated block's own first. A mutant is
*caught* when a testbench fails (the run stops there) or, for a block with a property harness
(:mod:`.formal`), when a proof task fails (the proofs stop there); the table shows which caught it. A
stale catalogue (a snippet no longer in the source) is an error, tested in ``make test``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pimphony.rtl.blocks import SOURCES, TESTBENCHES

from .parallel import map_with_progress

MODULES = {block: SOURCES[block] for block in TESTBENCHES}
"""The RTL source module a mutant edits, by block with a testbench of its own (the sequencer's source is
the hub's; :data:`pimphony.rtl.blocks.REGISTRY`)."""


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
           "deps_ok = static | (completed_next(2 * q, head, q) & completed_next(2 * q + 1, head, q))",
           "deps_ok = static | completed_next(2 * q + 1, head, q)"),
    Mutant("raw-before-completion", "dcs", "a dependent command waits until its producer has issued, "
           "not until it has completed (the S-Table is ignored)",
           "return ~d.valid | ((~waiting | issuing_now) & ~pending[i])",
           "return ~d.valid | ~waiting | issuing_now"),
    Mutant("drop-under-backpressure", "dcs", "the head leaves its queue when offered even if cmd_out.ready "
           "is low: a command is lost under back-pressure",
           "queue.pop.eq(fire & (sel == q))", "queue.pop.eq(valid & (sel == q))"),
    Mutant("queue-overflow", "dcs", "the occupancy check accepts a command into a full queue (off-by-one)",
           "below = [self.count < self.depth - k for k in (0, 1)]",
           "below = [self.count <= self.depth - k for k in (0, 1)]"),
    Mutant("stale-queue-head", "dcs", "the queue's RAM is read at the head's own slot instead of the slot "
           "behind it: after a pop the old head is offered again (a command issued twice, its successor late)",
           "m.d.comb += rd_next.eq(Mux(self.pop, Mux(self.count != 1, after[2], after[1]),",
           "m.d.comb += rd_next.eq(Mux(self.pop, Mux(self.count != 1, after[1], after[0]),"),
    Mutant("static-wait-short", "dcs", "the static policy waits one cycle less than the previous command's "
           "completion (off-by-one in the blocking counter)",
           "lat_arr = Array(Const(max(1, x) - 1, static_wait.shape()) for x in self.block)",
           "lat_arr = Array(Const(max(0, max(1, x) - 2), static_wait.shape()) for x in self.block)"),
    Mutant("inflight-latency-short", "dcs", "the S-Table counts a command complete one cycle early (off-by-one "
           "in the in-flight counters): a dependent command reads before its producer's data is there",
           "lat_rem = Array(Const(x - 1, index_bits(max(self.lat) + 1)) for x in self.lat)",
           "lat_rem = Array(Const(max(0, x - 2), index_bits(max(self.lat) + 1)) for x in self.lat)"),
    Mutant("obuf-hazard-missed", "dcs", "OBuf entries are not tracked: a RD-OUT may read an entry before the "
           "MACs that accumulate into it (missed RAW) and a WR-BIAS may overwrite it (missed WAW)",
           "deps_ok = static | (completed_next(2 * q, head, q) & completed_next(2 * q + 1, head, q))",
           "deps_ok = static | completed_next(2 * q, head, q)"),
    Mutant("row-gap-short", "dcs", "the row-command timing counters (ACT, PRE, REF) load one cycle less than "
           "their rules (off-by-one in one counter family)",
           "row = Array(Const(int(self.gap[p][k]), cnt_width) for p in range(n_ops))",
           "row = Array(Const(int(self.gap[p][k]) - (k in (0, 1, 2) and self.gap[p][k] > 0), cnt_width) "
           "for p in range(n_ops))"),
    Mutant("column-gap-short", "dcs", "the MAC timing counter loads one cycle less than its rules (off-by-one in "
           "the column family)",
           "row = Array(Const(int(self.gap[p][k]), cnt_width) for p in range(n_ops))",
           "row = Array(Const(int(self.gap[p][k]) - (k == 5 and self.gap[p][k] > 0), cnt_width) "
           "for p in range(n_ops))"),
    Mutant("bus-gap-short", "dcs", "the data-bus timing counters (WR-INP, WR-BIAS, RD-OUT) load one cycle less "
           "than their rules (off-by-one in the bus family)",
           "row = Array(Const(int(self.gap[p][k]), cnt_width) for p in range(n_ops))",
           "row = Array(Const(int(self.gap[p][k]) - (k in (3, 4, 6) and self.gap[p][k] > 0), cnt_width) "
           "for p in range(n_ops))"),
    Mutant("counters-count-double", "dcs", "the timing counters count down two per cycle: every rule is kept "
           "for half its length",
           "return Mux(value == 0, 0, value - 1)",
           "return Mux(value <= 1, 0, value - 2)"),
    Mutant("refresh-postponed", "dcs", "the refresh timer wraps one cycle late: every interval is nREFI + 1 "
           "cycles, so refreshes drift later and later",
           "m.d.sync += ref_timer.eq(Mux(ref_timer == n_refi - 1, 0, ref_timer + 1))",
           "m.d.sync += ref_timer.eq(Mux(ref_timer == n_refi, 0, ref_timer + 1))"),
    Mutant("refresh-after-every-pre", "dcs", "a refresh is made pending by every PRE, due or not",
           "m.d.comb += self.pending_next.eq((self.pre & ref_due) | (self.pending & ~self.refreshed))",
           "m.d.comb += self.pending_next.eq(self.pre | (self.pending & ~self.refreshed))"),
    Mutant("younger-head-first", "dcs", "when both queue heads are ready the younger one issues",
           "m.d.sync += older.eq(seq_ge(heads[0].seq, heads[1].seq))",
           "m.d.sync += older.eq(~seq_ge(heads[0].seq, heads[1].seq))"),
    Mutant("offer-not-held", "dcs", "an offered command is not held under back-pressure: the choice is made "
           "again next cycle, so cmd_out's payload changes while valid and not ready",
           "m.d.sync += held.eq(valid & ~self.cmd_out.ready)", "m.d.sync += held.eq(0)"),
    Mutant("idle-while-in-flight", "dcs", "idle ignores issued commands that have not completed: a phase "
           "barrier passes while a RD-OUT's data is still on its way",
           "m.d.comb += self.idle.eq(~occupied[0] & ~occupied[1] & ~held & ~inflight.busy & ~blocked)",
           "m.d.comb += self.idle.eq(~occupied[0] & ~occupied[1] & ~held & ~blocked)"),
    Mutant("idle-while-held", "dcs", "idle ignores a command held under back-pressure",
           "m.d.comb += self.idle.eq(~occupied[0] & ~occupied[1] & ~held & ~inflight.busy & ~blocked)",
           "m.d.comb += self.idle.eq(~occupied[0] & ~occupied[1] & ~inflight.busy & ~blocked)"),
    Mutant("dcs-tracks-halves", "dcs", "the D-Table region select is swapped: DCS tracks buffer halves (needless "
           "stalls) and ping-pong single entries",
           "region = Mux(dcs, self.index, self.index >> (bits - 1))",
           "region = Mux(dcs, self.index >> (bits - 1), self.index)"),
    Mutant("dtable-scrub-early", "dcs", "the D-Table scrubber frees an entry without checking that its last "
           "accessor has completed: a later command loses its dependency",
           "table.scrub_free.eq(table.scrub.valid & completed_next(first, None))",
           "table.scrub_free.eq(table.scrub.valid)"),
    Mutant("seq-skips-io", "dcs", "the program-order counter advances only on compute commands: I/O commands "
           "share sequence numbers with their neighbours",
           "with m.If(push):\n            m.d.sync += seq.eq(seq + 1)",
           "with m.If(push & cls):\n            m.d.sync += seq.eq(seq + 1)"),
    Mutant("successor-ready-at-once", "dcs", "a head that issues passes the readiness computed for it (as if "
           "nothing issued) to its successor: the next command of the queue issues in the following cycle on "
           "the old head's checks",
           "chosen_after = Mux(fires[q], 0,", "chosen_after = Mux(fires[q], after[None],"),
    Mutant("lookahead-ignores-issue", "dcs", "readiness one cycle ahead ignores the gap that this cycle's issue "
           "imposes: a head issues right after a command whose rule forbids it",
           "soon_c & ~held_by[j] for j in range(n)", "soon_c for j in range(n)"),
    Mutant("quick-producer-early", "dcs", "a dependency issuing in this cycle counts as complete next cycle "
           "whatever its latency: a WR-INP's MAC reads the GBuf entry before the data is there",
           "quick = Const(sum(1 << k for k, x in enumerate(self.lat) if x <= 1), CHANNEL_OPCODES)",
           "quick = Const((1 << CHANNEL_OPCODES) - 1, CHANNEL_OPCODES)"),
    Mutant("va2pa-sv-index", "dpa", "the SV phase takes its row from the K table of VA2PA "
           "(wrong VA2PA table)",
           "chunk = Mux(d0.c.phase == Phase.SV, d0.chunks[1], d0.chunks[0])", "chunk = d0.chunks[0]"),
    Mutant("chunk-not-returned", "dpa", "CLOSE returns every K chunk of a segment but the last to the free "
           "list (a leak)",
           "cursor.start(slot, 0, have[0], 0, have[1])", "cursor.start(slot, 0, have[0] - 1, 0, have[1])"),
    Mutant("out-of-chunks-early", "dpa", "OPEN and APPEND refuse a request that exactly fits the free pool "
           "(off-by-one in the OUT_OF_CHUNKS check)",
           "return self.wanted > self.budget", "return self.wanted >= self.budget"),
    Mutant("append-overwrites-length", "dpa", "APPEND sets the request's length to the appended tokens "
           "instead of adding them",
           "new_len.eq(Mux(req.op == DpaOp.APPEND, length + arg, arg))",
           "new_len.eq(Mux(req.op == DpaOp.APPEND, arg, arg))"),
    Mutant("k-guard-past-end", "dpa", "the Dyn-Loop K guard keeps a channel whose first token is at the "
           "request's end (<= instead of <)",
           "(d2.first_k < d2.lim[ch])", "(d2.first_k <= d2.lim[ch])"),
    Mutant("translate-past-end", "dpa", "TRANSLATE answers for the token at the request's length instead of "
           "PAST_END (off-by-one bound)",
           "checked.past.eq(arg >= length)", "checked.past.eq(arg > length)"),
    Mutant("free-list-wraps-early", "dpa", "the free list's head and tail wrap one entry before the end of "
           "the pool (a pointer slip: the last chunk is never used, a returned chunk is handed out twice)",
           "return Mux(ptr == C - 1, 0, ptr + 1)", "return Mux(ptr >= C - 2, 0, ptr + 1)"),
    Mutant("va2pa-segment-dropped", "dpa", "allocation writes every segment's chunk into segment 0's VA2PA "
           "entry (a VA2PA write to the wrong entry)",
           "pending_addr.eq(va_addr(cursor.slot, cursor.seg, cursor.vc))",
           "pending_addr.eq(va_addr(cursor.slot, 0, cursor.vc))"),
    Mutant("duplicate-open-accepted", "dpa", "OPEN of a request id that is already open is not refused (a "
           "lost error check): the id takes a second config-buffer slot",
           "with m.If(found):\n                    answer(StatusShape.DUPLICATE_REQUEST)",
           "with m.If(Const(0, 1)):\n                    answer(StatusShape.DUPLICATE_REQUEST)"),
    Mutant("config-buffer-survives-reset", "dpa", "reset does not clear the config buffer's valid bits: "
           "requests open before a reset are still open after it",
           'valid = Array(Signal(name=f"valid{i}") for i in range(R))',
           'valid = Array(Signal(name=f"valid{i}", reset_less=True) for i in range(R))'),
    Mutant("program-survives-reset", "dpa", "reset does not clear the program loader: a RUN after a reset "
           "expands the program loaded before it instead of answering BAD_PROGRAM",
           "loading = Signal()\n", "loading = Signal(reset_less=True)\n"),
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
    by_sim: str               # "tb_dcs seed 1", or "" when every smoke testbench passed
    by_proof: str             # "dcs timing: timing.PRE-ACT", "" when every proof passed, "-" without a harness
    seconds: float
    note: str = ""            # why a check could not run


def smoke_order(m: Mutant) -> list:
    """The smoke suite's runs, the mutated block's first."""
    from .regress import load_suite

    runs = load_suite("smoke")
    return sorted(runs, key=lambda r: r.block != m.block)


def _by_simulation(m: Mutant, sim: str, root: Path) -> str:
    from pimphony.rtl.build import write_verilog  # the blocks: imported after the mutant is applied

    from .configs import testbench_options
    from .runner import SUITES, run_suite

    for run in smoke_order(m):
        source = write_verilog(run.block, root / "rtl" / run.block, **testbench_options(run.block))
        try:
            run_suite(run.block, sim, source, root / "sim", run.seed, quiet=True, scale=run.scale)
        except RuntimeError:
            return f"{SUITES[run.block].rsplit('.', 1)[1]} seed {run.seed}"
    return ""


def _by_proof(m: Mutant, root: Path) -> str:
    """The first proof task of the mutated block's harness that fails, in the catalogue's order (cheapest
    first), its cover task last ("-": no harness)."""
    from .formal.sby import run_task
    from .formal.tasks import HARNESSES, harness_for, tasks

    if m.block not in HARNESSES:
        return "-"
    for task in tasks([m.block]):
        result = run_task(task, harness_for(task), root / "prove")
        if result.status == "FAIL":
            if task.mode == "cover":
                return f"covers: unreached {', '.join(result.failed)}" if result.failed else "covers: golden replay"
            return f"{task.group}: {', '.join(result.failed) or 'failed'}"
    return ""


def check(name: str, sim: str, root: Path, methods: tuple[str, ...] = ("sim", "proof")) -> MutantResult:
    """In this (fresh) process: apply mutant ``name``, then run the smoke suite until a testbench fails and
    the block's proof tasks until one fails."""
    m = mutant(name)
    apply(m)
    start = time.perf_counter()
    by_sim = _by_simulation(m, sim, root) if "sim" in methods else "-"
    by_proof = _by_proof(m, root) if "proof" in methods else "-"
    caught = by_sim not in ("", "-") or by_proof not in ("", "-")
    return MutantResult(m.name, m.block, m.fault, caught, by_sim, by_proof, time.perf_counter() - start)


def run_mutants(names: list[str], sim: str, root: Path, jobs: int = 2, progress=None,
                timeout: float = 2400, methods: tuple[str, ...] = ("sim", "proof")) -> list[MutantResult]:
    """Check each mutant in its own process (``jobs`` at a time); a mutant whose process fails or runs
    past ``timeout`` seconds is reported as not caught, with the reason."""
    for n in names:
        source_of(mutant(n))                            # a stale catalogue fails before anything runs

    def one(n: str) -> MutantResult:
        out = root / n
        out.mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        cmd = [sys.executable, "-m", "pimphony.verification.mutation", n, sim, str(out), ",".join(methods)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            result = MutantResult(n, mutant(n).block, mutant(n).fault, False, "", "", time.perf_counter() - began,
                                  f"timed out after {timeout:.0f} s")
        else:
            report = out / "result.json"
            if proc.returncode == 0 and report.is_file():
                result = MutantResult(**json.loads(report.read_text()))
            else:
                tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                result = MutantResult(n, mutant(n).block, mutant(n).fault, False, "", "",
                                      time.perf_counter() - began, f"the check failed: {tail}")
        return result

    return map_with_progress(one, names, jobs, progress)


def table(results: list[MutantResult], sim: str) -> str:
    caught = sum(r.caught for r in results)
    by_proof = sum(r.by_proof not in ("", "-") for r in results)
    by_sim = sum(r.by_sim not in ("", "-") for r in results)
    ran_sim = any(r.by_sim != "-" for r in results)
    ran_proof = any(r.by_proof != "-" for r in results)
    parts = [f"{by_sim} by the smoke suite on {sim}" if ran_sim else "smoke suite not run",
             f"{by_proof} by the proofs" if ran_proof else "proofs not run"]
    lines = [f"mutation check: {caught}/{len(results)} mutants caught ({', '.join(parts)}; - = not run or no "
             f"harness)",
             ""]
    name_w = max([len("mutant"), *(len(r.name) for r in results)])
    proof_w = max([len("proofs"), *(len(r.by_proof or "passed (not caught)") for r in results)])
    lines[-1] = f"  {'mutant':<{name_w}} {'block':<5} {'smoke suite':<22} {'proofs':<{proof_w}} {'time':>6}  fault"
    for r in results:
        sim_col = r.by_sim or "passed (not caught)"
        proof_col = r.by_proof or "passed (not caught)"
        flag = "" if r.caught else "NOT CAUGHT: "
        lines.append(f"  {r.name:<{name_w}} {r.block:<5} {sim_col:<22} {proof_col:<{proof_w}} {r.seconds:>5.0f}s  "
                     f"{flag}{r.note or r.fault}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    name, sim, out, methods = argv
    result = check(name, sim, Path(out), tuple(methods.split(",")))
    Path(out, "result.json").write_text(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
