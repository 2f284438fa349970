"""``pimphony trace``: traces in aim_simulator's format, written from our lowering and timed under any
issue policy (``aim`` is aim_simulator's own controller, command for command)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from pimphony.model.config import DEFAULT_MODULE, DEFAULT_TIMING, ModelConfig, ModuleOrg, TimingPreset, preset_names

POLICIES = ("aim", "static", "pingpong", "dcs")
POLICY_HELP = ("aim: aim_simulator's in-order AiM controller (TMOD mode switches, blocking RD_MAC) - the "
               "baseline; static: our nRDHUB-calibrated in-order controller; pingpong, dcs: PIMphony's queues")


class TraceCliError(Exception):
    """A user error of ``pimphony trace``: one line, exit 2."""


def register(sub: argparse._SubParsersAction, lengths_type, nonneg_type) -> None:
    """Add ``trace export`` and ``trace run`` to the CLI."""
    trace = sub.add_parser(
        "trace", help="write and time traces in the public AiM simulator's format",
        description="Traces in arkhadem/aim_simulator's format (one ISR per line: 'AiM WR_GB 32 0 0x1', "
                    "'AiM MAC_ABK 32 0x1 7', 'AiM RD_MAC 0 0x1', 'AiM WR_BIAS 0 0x1', 'AiM EOC'; '#' comments; "
                    "bit i of a channel mask is channel 31 - i).")
    trace.set_defaults(func=main)
    tsub = trace.add_subparsers(dest="trace_command", metavar="ACTION")
    tsub.required = True
    exp = tsub.add_parser(
        "export", help="write what our lowering issues to one channel as an aim trace",
        description="Lower a decode-attention layer (every KV head of the model over requests of --lengths; "
                    "--pair keeps the first (request, KV head) pair) or a GEMV (--gemv) and write the ISRs "
                    "one channel receives. Row commands are left out: a MAC_ABK names its row and the AiM "
                    "controller opens and closes rows itself.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example: pimphony trace export --model llama-3.1-8b --lengths 2048 --pair --out pair.trace")
    exp.add_argument("--model", default="llama-3.1-8b",
                     help=f"preset ({', '.join(preset_names('models'))}), a YAML file or a Hugging Face config.json")
    exp.add_argument("--lengths", type=lengths_type, help="per-request context lengths, e.g. 2048,1000")
    exp.add_argument("--gemv", metavar="ROWSxCOLS",
                     help="a GEMV of a ROWS x COLS weight matrix instead of attention, e.g. 512x128")
    exp.add_argument("--channel", type=nonneg_type, default=0, help="the channel whose commands are written")
    exp.add_argument("--partition", choices=["tcp", "hfp"], default="tcp", help="token-centric or head-first")
    exp.add_argument("--phase", choices=["qk", "sv", "both"], default="both", help="attention phases to keep")
    exp.add_argument("--pair", action="store_true", help="only the first (request, KV head) pair")
    exp.add_argument("--module", default=DEFAULT_MODULE,
                     help=f"module organisation ({', '.join(preset_names('modules'))}) or YAML file")
    exp.add_argument("--out", type=Path, required=True, help="the trace file to write")
    run = tsub.add_parser(
        "run", help="time an aim trace under an issue policy",
        description="Time an aim_simulator trace on one channel. With --policy aim the commands, their order "
                    "and cycles equal aim_simulator's (tests/data/aim holds the simulator's own outputs); the "
                    "first command can issue at cycle 1 and the total is the cycle the run ends (aim: the "
                    "EOC's call-back, aim_simulator's memory_system_cycles).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example: pimphony trace run pair.trace --policy aim --refresh off --commands pair.csv")
    run.add_argument("file", type=Path, help="trace in aim_simulator's format")
    run.add_argument("--policy", choices=POLICIES, default="aim", help=POLICY_HELP)
    run.add_argument("--refresh", choices=["on", "off"], default="off",
                     help="all-bank refresh every nREFI (aim_simulator never refreshes: compare with off)")
    run.add_argument("--channel", type=nonneg_type,
                     help="keep this channel's share of multi-channel masks (default: the trace has one channel)")
    run.add_argument("--commands", type=Path, metavar="OUT.csv",
                     help="write every issued command: cycle,channel,command,row (aim_simulator's names)")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    run.add_argument("--timing", default=DEFAULT_TIMING,
                     help=f"timing preset ({', '.join(preset_names('timing'))}) or YAML file")
    run.add_argument("--module", default=DEFAULT_MODULE,
                     help="module organisation (buffer sizes for static, pingpong and dcs)")


def _gemv_shape(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise TraceCliError(f"--gemv {text!r}: expected ROWSxCOLS with positive integers, e.g. 512x128")
    return int(match[1]), int(match[2])


def cmd_export(args: argparse.Namespace) -> int:
    from pimphony.model.aimtrace import MASK_BITS, from_stream, mask_of_channel
    from pimphony.scheduler.aim import attention_stream, gemv_stream
    from pimphony.scheduler.partition import PartitionError

    org = ModuleOrg.load(args.module)
    if args.channel >= min(org.channels, MASK_BITS):
        raise TraceCliError(f"--channel {args.channel}: the module {org.name} has channels 0..{org.channels - 1}"
                            + (f" and aim_simulator 0..{MASK_BITS - 1}" if org.channels > MASK_BITS else ""))
    if (args.gemv is None) == (args.lengths is None):
        raise TraceCliError("give either --lengths (attention) or --gemv ROWSxCOLS")
    if args.gemv is not None:
        rows, cols = _gemv_shape(args.gemv)
        stream = gemv_stream(org, cols, rows, args.channel)
        what = f"GEMV {rows}x{cols}"
    else:
        model = ModelConfig.load(args.model)
        try:
            stream = attention_stream(model, org, args.lengths, args.channel, args.partition, args.phase,
                                      args.pair)
        except PartitionError as exc:                # the model's shape does not fit the module
            raise TraceCliError(f"--model {args.model}: {exc}") from None
        what = (f"{model.name} attention, {'first pair of ' if args.pair else ''}requests {args.lengths}, "
                f"{args.partition.upper()}, phase {args.phase}")
    if len(stream) == 0:
        raise TraceCliError(f"--channel {args.channel} receives no commands from this workload")
    trace = from_stream(stream, args.channel)
    header = (f"pimphony trace export: {what}, module {org.name}, channel {args.channel} "
              f"(mask {mask_of_channel(args.channel):#x})\n{len(stream)} channel commands, {len(trace)} ISRs")
    try:
        trace.write(args.out, header)
    except OSError as exc:
        raise TraceCliError(f"--out {args.out}: cannot write: {exc.strerror or exc}") from None
    print(f"wrote {args.out}: {what}; channel {args.channel}, {len(trace)} ISRs for {trace.commands} commands "
          f"(+ row commands the controller inserts)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pimphony.model.aimtrace import AimTraceError, read
    from pimphony.model.queue import Policy, QueueConfig
    from pimphony.scheduler.aim import COMMANDS, time_trace

    timing = TimingPreset.load(args.timing)
    try:
        trace = read(args.file, args.channel)
    except AimTraceError as exc:
        raise TraceCliError(str(exc)) from None
    queue = None
    if args.policy != "aim":
        queue = QueueConfig.for_org(ModuleOrg.load(args.module), Policy[args.policy.upper()])
    result = time_trace(trace, args.policy, timing, queue, args.refresh == "on")
    if args.commands is not None:
        try:
            args.commands.write_text("\n".join(result.csv_lines()) + "\n")
        except OSError as exc:
            raise TraceCliError(f"--commands {args.commands}: cannot write: {exc.strerror or exc}") from None
    counts = result.counts()
    summary = {"file": str(args.file), "policy": args.policy, "refresh": args.refresh == "on",
               "channel": trace.channel, "isrs": len(trace), "cycles": result.total_cycles,
               "commands": len(result.cycle), "mac_utilisation": result.mac_utilisation(timing),
               "issued": counts}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"pimphony trace run {args.file}: channel {trace.channel}, {len(trace)} ISRs; policy {args.policy}, "
          f"refresh {args.refresh}")
    print(f"  cycles {result.total_cycles}, {len(result.cycle)} commands, MAC utilisation "
          f"{summary['mac_utilisation']:.1%}")
    print("  issued: " + ", ".join(f"{name} {counts[name]}" for name in COMMANDS if counts[name]))
    if args.commands is not None:
        print(f"  commands written to {args.commands}")
    return 0


def main(args: argparse.Namespace) -> int:
    """Dispatch ``pimphony trace ACTION``; user errors are one line on stderr and exit 2."""
    try:
        return {"export": cmd_export, "run": cmd_run}[args.trace_command](args)
    except TraceCliError as exc:
        print(f"pimphony: error: {exc}", file=sys.stderr)
        return 2


def register_bench(bsub: argparse._SubParsersAction, positive_type) -> None:
    """Add ``bench trace``."""
    bt = bsub.add_parser("trace", help="speed of `pimphony trace run` (commands per second, aim policy)",
                         description="Write a long aim trace (one channel's share of a Llama-3.1-8B decode-attention "
                                     "pair, repeated to at least --commands commands), then read and time it under "
                                     "the aim policy, --repeat times. Target: >= 1M commands/s, file reading "
                                     "included. Exits 1 when the median misses it.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bt.add_argument("--commands", type=positive_type, default=2_000_000, help="commands in the trace")
    bt.add_argument("--repeat", type=positive_type, default=3, help="timed runs")
    bt.add_argument("--out", type=Path, default=Path("build/bench/trace.trace"), help="where the trace is written")
    bt.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import statistics
    import time

    import numpy as np

    from pimphony.model.aimtrace import AimTrace, Isr, from_stream, read
    from pimphony.scheduler.aim import attention_stream, run

    org, timing = ModuleOrg.load(DEFAULT_MODULE), TimingPreset.load(DEFAULT_TIMING)
    pair = from_stream(attention_stream(ModelConfig.load("llama-3.1-8b"), org, [131072], 0, pair=True), 0)
    body = pair.kind != Isr.EOC
    times = -(-args.commands // pair.commands)
    tile = [np.concatenate([np.tile(getattr(pair, f)[body], times), getattr(pair, f)[~body]])
            for f in ("kind", "opsize", "row", "gpr")]
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        AimTrace(*tile).write(args.out, "pimphony bench trace")
    except OSError as exc:
        print(f"pimphony: error: --out {args.out}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 2
    run(read(args.out), timing)                        # compiles the engine once
    rates, issued = [], 0
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = run(read(args.out), timing)
        rates.append(len(result.cycle) / (time.perf_counter() - t0))
        issued = len(result.cycle)
    median = statistics.median(rates)
    print(f"bench trace: {args.out}, {issued} commands issued ({result.total_cycles} cycles) under the aim policy, "
          f"file reading included; {args.repeat} runs")
    print(f"  {min(rates) / 1e6:.2f}-{max(rates) / 1e6:.2f} M commands/s, median {median / 1e6:.2f} M "
          f"(target >= 1 M: {'met' if median >= 1e6 else 'MISSED'})")
    return 0 if median >= 1e6 else 1
