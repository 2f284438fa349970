"""``pimphony prove``: the formal property checks of the RTL blocks (SymbiYosys)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .progress import Progress


def register(sub: argparse._SubParsersAction, positive_type) -> None:
    """Add ``prove`` to the CLI."""
    from pimphony.verification.formal.sby import MODES
    from pimphony.verification.formal.tasks import HARNESSES

    p = sub.add_parser(
        "prove", help="check the RTL's properties formally (SymbiYosys)",
        description="Each block runs inside a property harness: assumptions on its inputs (the stream protocol) "
                    "and an independent monitor whose assertions state the block's promises, in groups (DCS "
                    "queue: timing, order, hazards, progress, handshake, idle, refresh; DPA controller: status, "
                    "conservation, translate, protocol, run). Each group is checked from reset, every cycle up "
                    "to its depth (bmc), or by k-induction (prove); a cover task checks that every Cover "
                    "statement is reached (the DPA controller's traces are also replayed on the golden model). "
                    "Prints a table (group, mode, depth, result, "
                    "time); a failing task names the properties that fail and leaves a VCD counterexample. "
                    "Exit code 1 on any failure.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("block", nargs="?", default="all", choices=[*HARNESSES, "all"], help="block to check")
    p.add_argument("--mode", choices=MODES,
                   help="run every group in this mode (default: each group's catalogued mode, then the covers)")
    p.add_argument("--depth", type=positive_type, help="cycles from reset (bmc, cover) or induction length "
                                                       "(default: each group's catalogued depth)")
    p.add_argument("--group", action="append", metavar="GROUP", help="only this property group (repeatable)")
    p.add_argument("--dut-timing", metavar="PRESET",
                   help="build the DCS queue from this timing preset (name or YAML file) while the monitor checks "
                        "the shipped one: a broken rule must give a counterexample naming the rule")
    p.add_argument("--jobs", type=positive_type, default=2, help="SymbiYosys runs at once")
    p.add_argument("--list", action="store_true", help="print the catalogue (group, mode, depth, why) and exit")
    p.add_argument("--out", type=Path, default=Path("build/prove"), help="designs, logs and traces go here")
    p.set_defaults(func=main)


def table(results) -> str:
    lines = [f"  {'block':<5} {'group':<12} {'mode':<6} {'depth':>5} {'result':<8} {'time':>7}  detail"]
    for r in results:
        t = r.task
        detail = r.detail
        if r.failed:
            what = "unreached" if t.mode == "cover" else "fails"
            detail = f"{what}: {', '.join(r.failed)}" + (f" at step {r.step}" if r.step is not None else "")
        lines.append(f"  {t.block:<5} {t.group:<12} {t.mode:<6} {t.depth:>5} {r.status:<8} {r.seconds:>6.1f}s  "
                     f"{detail}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    from pimphony.model.config import TimingPreset
    from pimphony.verification.formal.sby import ProofToolError
    from pimphony.verification.formal.tasks import GROUPS, HARNESSES, run_tasks, tasks

    from .main import CliError

    blocks = list(HARNESSES) if args.block == "all" else [args.block]
    for g in args.group or []:
        if not any(g in GROUPS[b] for b in blocks):
            raise CliError(f"--group {g}: no such property group; choose from "
                           f"{', '.join(sorted({x for b in blocks for x in GROUPS[b]}))}")
    selected = tasks(blocks, args.mode, args.depth, args.group)
    if args.list:
        for t in selected:
            print(f"{t.block:<5} {t.group:<12} {t.mode:<6} {t.depth:>4}  {t.reason}")
        return 0
    dut_timing = TimingPreset.load(args.dut_timing) if args.dut_timing else None
    print(f"pimphony prove: {len(selected)} tasks, {args.jobs} at a time, work in {args.out}")
    try:
        results = run_tasks(selected, args.out, args.jobs, dut_timing, progress=Progress("proof tasks"))
    except ProofToolError as exc:
        raise CliError(str(exc)) from None
    print(table(results))
    failed = [r for r in results if not r.ok]
    for r in failed:
        if r.trace is not None:
            print(f"counterexample of {r.task.name}: {r.trace} (open it with gtkwave; the property signals are "
                  f"top.<group>__<name>); rerun: pimphony prove {r.task.block} --group {r.task.group} "
                  f"--mode {r.task.mode} --depth {r.task.depth}"
                  + (f" --dut-timing {args.dut_timing}" if args.dut_timing else ""))
        elif r.workdir is not None:
            print(f"{r.task.name}: {r.status}; logs in {r.workdir}")
    passed = len(results) - len(failed)
    print(f"{passed}/{len(results)} tasks passed")
    return 0 if not failed else 1
