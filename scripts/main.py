"""The ``pimphony`` command."""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

import numpy as np

from pimphony.experiments.serving import SERVING_RATES, reproduce_serving
from pimphony.model.config import (
    DEFAULT_GENERATE,
    DEFAULT_MODULE,
    DEFAULT_TIMING,
    ConfigError,
    InputError,
    ModelConfig,
    ModuleOrg,
    SystemConfig,
    TimingPreset,
    WorkloadConfig,
    preset_names,
)
from pimphony.model.isa import Opcode
from pimphony.model.perf.system import ALLOCS, HFP_SPANS, SCHEDULES, PerfError, Techniques
from pimphony.model.perf.system import PARTITIONS as SYSTEM_PARTITIONS
from pimphony.rtl.blocks import BLOCKS
from pimphony.scheduler.lower import LoweringError
from pimphony.scheduler.partition import PARTITIONS, PartitionError, make_partition
from pimphony.verification.runner import SUITES

from . import prove as prove_cli
from . import serve as serve_cli
from . import synth as synth_cli
from . import trace as trace_cli
from .errors import CliError
from .perf import add_system_arguments
from .progress import Progress

PRESET_KINDS = {"timing": TimingPreset, "modules": ModuleOrg, "models": ModelConfig, "workloads": WorkloadConfig,
                "systems": SystemConfig}

EPILOG = """\
examples:
  pimphony attention --model llama-3.1-8b --context 4096 --batch 2
  pimphony attention --model path/to/config.json --lengths 1000,37,4099 --partition hfp
  pimphony presets --kind modules
  pimphony bench golden
  pimphony perf --model llama-3.1-8b --system cent --capacity 128GB --workload multifieldqa
  pimphony reproduce
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors that name the flag: ``pimphony CMD: error: MESSAGE``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


GOLDEN_PARTITIONS = [*PARTITIONS, *(f"hfp-{k}" for k in HFP_SPANS[1:])]
"""What ``attention`` and ``bench golden`` accept: TCP, and HFP with its keys on 1 or more channels."""
RUN_MAX_REQUESTS = 16
RUN_MAX_CHUNKS = 512
"""Bounds of ``pimphony run``'s workload: the default (2 requests, 32 chunks) simulates in about a minute;
these keep a run within minutes instead of hours."""

FILE_OUTPUTS = {("sweep", "out"), ("trace", "out"), ("trace", "commands"), ("attention", "save")}
"""(command, argument) pairs that name an output file; every other ``out`` is an output folder."""


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse an output path that cannot be created (a file where a folder must be, or the reverse)
    before any long work starts."""
    for name in ("out", "save", "commands"):
        path = getattr(args, name, None)
        if not isinstance(path, Path):
            continue
        flag = f"--{name}"
        is_file = (args.command, name) in FILE_OUTPUTS
        if is_file and path.is_dir():
            raise CliError(f"{flag} {path}: is a folder; give a file name")
        if not is_file and path.exists() and not path.is_dir():
            raise CliError(f"{flag} {path}: is a file; give a folder")
        parent = path.parent if is_file else path
        for ancestor in (parent, *parent.parents):
            if ancestor.exists():
                if not ancestor.is_dir():
                    raise CliError(f"{flag} {path}: {ancestor} is a file, not a folder")
                if not os.access(ancestor, os.W_OK | os.X_OK):
                    raise CliError(f"{flag} {path}: {ancestor} is not writable")
                break


def _int_at_least(low: int):
    """An argparse type: an integer >= ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} must be at least {low}")
        return value

    return parse


_positive = _int_at_least(1)
_nonneg = _int_at_least(0)


def _lengths(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("lengths must be positive integers, e.g. 1000,37,4099")
    return values


def build_parser() -> argparse.ArgumentParser:
    """The ``pimphony`` parser: each command adds its own arguments (``_register_*`` beside its ``cmd_*``)
    and names its handler (``func``)."""
    parser = _Parser(
        prog="pimphony",
        description="PIMphony reference implementation: golden PIM model, compiler, RTL and performance model.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for register in (_register_attention, _register_perf, _register_sweep, _register_presets, _register_bench,
                     _register_verilog, synth_cli.register, _register_run, _register_regress, _register_mutate,
                     _register_reproduce):
        register(sub)
    trace_cli.register(sub, _lengths, _nonneg)
    serve_cli.register(sub, _positive, _nonneg)
    prove_cli.register(sub, _positive)
    return parser


def _check_kv_fits(model: ModelConfig, org: ModuleOrg, lengths: list[int], modules: int, flag: str) -> None:
    """Refuse, before any allocation, a batch whose K and V of one layer exceed the modules' capacity."""
    kv_bytes = 2 * sum(lengths) * model.kv_heads * model.head_dim * org.element_bytes
    if kv_bytes > modules * org.bytes:
        raise CliError(f"{flag}: {sum(lengths):,} tokens need {kv_bytes / 2**30:,.1f} GiB of K and V for one layer "
                       f"of {model.name}; {modules} x {org.name} hold {modules * org.bytes / 2**30:,.0f} GiB "
                       "(use more modules or a shorter context)")


def _register_attention(sub: argparse._SubParsersAction) -> None:
    att = sub.add_parser(
        "attention", help="run decode attention on the golden PIM model and compare with float64 numpy",
        description="Lower one decode step of attention to PIM programs (HFP or TCP), execute them on golden "
                    "PIM channels (bf16 data, fp32 MAC accumulation, fp32 EPU softmax) and compare with a "
                    "float64 reference on the same bf16 inputs. Exits 1 if any element exceeds the error bound "
                    "derived from the number formats.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    att.add_argument("--model", default="llama-3.1-8b",
                     help=f"preset ({', '.join(preset_names('models'))}), a YAML file or a Hugging Face config.json")
    att.add_argument("--module", default=DEFAULT_MODULE,
                     help=f"module organisation preset ({', '.join(preset_names('modules'))}) or YAML file")
    att.add_argument("--context", type=_positive, default=4096, help="tokens per request")
    att.add_argument("--lengths", type=_lengths,
                     help="per-request lengths, e.g. 1000,37,4099 (overrides --context and --batch)")
    att.add_argument("--batch", type=_positive, default=1, help="requests")
    att.add_argument("--partition", choices=GOLDEN_PARTITIONS, default="tcp",
                     help="token-centric (PIMphony) or head-first (baseline; hfp-K: keys on K channels)")
    att.add_argument("--modules", type=_positive, default=1, help="PIM modules")
    att.add_argument("--alloc", choices=["contiguous", "dpa"], default="contiguous",
                     help="KV placement: contiguous rows, or 1 MiB DPA chunks with every pair run through its "
                          "Dyn-Loop/Dyn-Modi program (TCP, one module)")
    att.add_argument("--obuf-entries", type=_positive,
                     help="OBuf entries per bank (default: the module's obuf_entries)")
    att.add_argument("--layers", type=_positive, default=1, help="layers, each with fresh random data")
    att.add_argument("--seed", type=_nonneg, default=0, help="random seed (layer l uses seed + l)")
    att.add_argument("--inputs", type=Path,
                     help="npz with q (B,H,D), k and v (B,Hkv,Tmax,D) float32 and lengths (B,) int; "
                          "batch and lengths come from the file; values are rounded to bf16")
    att.add_argument("--save", type=Path,
                     help="write out (B,H,D) float32 and reference (B,H,D) float64 to this npz "
                          "(with --layers > 1 both get a leading layer axis)")
    att.add_argument("--quiet", action="store_true", help="no progress bar")
    att.set_defaults(func=cmd_attention)


def cmd_attention(args: argparse.Namespace) -> int:
    from pimphony.scheduler.golden import AttentionInputs, run_golden_attention

    model = ModelConfig.load(args.model)
    org = ModuleOrg.load(args.module)
    if args.inputs is not None and args.layers > 1:
        raise CliError("--inputs holds one layer; use --layers 1")
    if args.inputs is not None:
        inputs = [AttentionInputs.load(args.inputs, model)]
        lengths = inputs[0].lengths.tolist()
    else:
        lengths = args.lengths or [args.context] * args.batch
        inputs = None
    _check_kv_fits(model, org, lengths, args.modules,
                   "--inputs" if args.inputs else "--lengths" if args.lengths else "--context/--batch")
    try:
        make_partition(args.partition, org, model.head_dim, args.modules)
    except PartitionError as exc:
        raise CliError(f"--model {args.model}: head_dim: {exc} (--module {args.module})") from None
    print(f"pimphony attention: {model.name} ({model.heads} heads, {model.kv_heads} KV heads, d={model.head_dim}, "
          f"g={model.group}) on {args.modules} x {org.name} ({org.channels} ch x {org.banks} banks), "
          f"partition {args.partition}, {args.alloc} KV placement")
    shown = lengths if len(lengths) <= 8 else [*lengths[:8], "..."]
    print(f"batch {len(lengths)}, lengths {shown}, layers {args.layers}, seed {args.seed}")
    outs, refs, worst = [], [], 0.0
    run = None
    for layer in range(args.layers):
        inp = inputs[0] if inputs else AttentionInputs.random(model, lengths, seed=args.seed + layer)
        bar = Progress(f"layer {layer}", enabled=not args.quiet)
        with np.errstate(over="ignore", invalid="ignore"):       # non-finite outputs are reported below
            run = run_golden_attention(model, org, inp, partition=args.partition, modules=args.modules,
                                       obuf_entries=args.obuf_entries, allocation=args.alloc, progress=bar)
            ratio = run.error_ratio()
        bad = ~np.isfinite(run.out)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            print(f"layer {layer}: FAIL: {int(bad.sum())} outputs are NaN or infinite (the first at request "
                  f"{first[0]}, head {first[1]}, element {first[2]})")
            ratio = float("inf")
        worst = max(worst, ratio)
        print(f"layer {layer}: max |error| {run.max_error:.3e}, worst error / bound {ratio:.3g} "
              f"-> {'PASS' if ratio <= 1 else 'FAIL'}  "
              f"({run.seconds:.2f} s, {run.mac_ops / run.seconds / 1e9:.2f} GMAC/s)")
        outs.append(run.out)
        refs.append(run.reference.out)
    cmds = run.commands.reshape(-1, run.commands.shape[-1])
    per_channel = cmds.sum(axis=1)
    print(f"commands per channel (last layer): min {per_channel.min()}, mean {per_channel.mean():.0f}, "
          f"max {per_channel.max()}")
    by_op = ", ".join(f"{Opcode(k).name} {int(cmds[:, k].sum())}" for k in range(cmds.shape[1]))
    print(f"  by opcode (total): {by_op}")
    n = run.commands.shape[0] * run.commands.shape[1]
    print(f"channel activity: QK^T {int((run.phase_macs['qk'] > 0).sum())}/{n} ({run.activity('qk'):.0%}), "
          f"SV {int((run.phase_macs['sv'] > 0).sum())}/{n} ({run.activity('sv'):.0%}); "
          f"MAC balance (mean/max per channel) {run.balance():.0%}")
    if args.save is not None:
        out = outs[0] if args.layers == 1 else np.stack(outs)
        ref = refs[0] if args.layers == 1 else np.stack(refs)
        try:
            np.savez(args.save, out=out.astype(np.float32), reference=ref.astype(np.float64))
        except OSError as exc:
            raise CliError(f"{args.save}: cannot write: {exc.strerror or exc}") from None
        print(f"saved out and reference to {args.save}")
    return 0 if worst <= 1 else 1


def _register_perf(sub: argparse._SubParsersAction) -> None:
    perf = sub.add_parser(
        "perf", help="decode throughput of a model on a PIM system (the system performance model)",
        description="Evaluate one configuration point of the system model: the batch that fits the capacity, the "
                    "best tensor/pipeline split, and the time of a decode step from the channel cycle model. "
                    "Techniques default to PIMphony's (TCP + DCS + DPA); the paper's baseline is "
                    "--partition hfp --schedule aim --alloc static (aim: aim_simulator's in-order AiM controller; "
                    "static: our nRDHUB-calibrated in-order controller, a second baseline).",
        epilog="examples:\n"
               "  pimphony perf --model llama-3.1-8b --system cent --capacity 128GB --workload multifieldqa\n"
               "  pimphony perf --model qwen1.5-7b --workload qmsum --partition hfp --schedule aim --alloc static\n"
               "  pimphony perf --model llama-3.1-70b --system neupims --capacity 512GB --context 1048576 --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_system_arguments(perf)
    where = perf.add_mutually_exclusive_group(required=True)
    where.add_argument("--workload", help="request lengths from a Table II workload: multifieldqa, qmsum, musique, "
                                          "loogle-sd, or a YAML file")
    where.add_argument("--context", type=_positive, help="mean context T: prompts normal(T, T/3) clipped to [1, 2T]; "
                                                         "static reserves 2T + the generated tokens")
    perf.add_argument("--fixed-context", action="store_true",
                      help="with --context T: every request ends at exactly T tokens and static reserves T "
                           "(Fig. 4's batch rule)")
    perf.add_argument("--partition", choices=SYSTEM_PARTITIONS, default=Techniques.partition)
    perf.add_argument("--hfp-span", type=_positive, choices=HFP_SPANS, metavar="K",
                      help="channels an HFP pair's keys span (default: the system's hfp_span; measured: "
                           f"{', '.join(map(str, HFP_SPANS))})")
    perf.add_argument("--schedule", choices=SCHEDULES, default=Techniques.schedule)
    perf.add_argument("--alloc", choices=ALLOCS, default=Techniques.alloc)
    perf.add_argument("--t-max", type=_positive, help="static reservation per request (default: the model's context)")
    perf.add_argument("--generate", type=_positive, default=DEFAULT_GENERATE, help="tokens generated per request")
    perf.add_argument("--seed", type=_nonneg, default=0, help="seed of the sampled request lengths")
    perf.add_argument("--json", action="store_true", help="print the result as one JSON object")
    perf.set_defaults(func=cmd_perf)


def cmd_perf(args: argparse.Namespace) -> int:
    from pimphony.experiments.points import PointSpec, run_point

    from .perf import describe

    try:
        spec = PointSpec(model=args.model, system=args.system, capacity=args.capacity, workload=args.workload,
                         context=args.context, partition=args.partition, schedule=args.schedule, alloc=args.alloc,
                         module=args.module, timing=args.timing, seed=args.seed, generate=args.generate,
                         t_max=args.t_max, fixed=args.fixed_context, hfp_span=args.hfp_span)
        result = run_point(spec)
    except (ConfigError, PerfError):
        raise
    except (PartitionError, LoweringError) as exc:       # the model's shape does not fit the module
        raise CliError(f"--model {args.model}: {exc}") from None
    except ValueError as exc:                       # a malformed capacity or point
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(result.summary(), indent=1))
    else:
        print(describe(result))
    return 0


def _register_sweep(sub: argparse._SubParsersAction) -> None:
    swp = sub.add_parser(
        "sweep", help="run a grid of system-model points into a CSV or Parquet table",
        description="Evaluate every point of SPEC.yaml (keys base and grid; see pimphony.experiments.sweep) with the "
                    "system model, in parallel on local processes or on an existing Dask cluster. Results are "
                    "cached by the hash of the point, its config files and the model sources, so a repeated "
                    "sweep is instant; a point that cannot run becomes a row with an error.",
        epilog="example spec:\n"
               "  base: {system: cent, capacity: 128GB, workload: multifieldqa}\n"
               "  grid:\n"
               "    model: [llama-3.1-8b, qwen1.5-7b]\n"
               "    partition: [hfp, tcp]\n"
               "    seed: [0, 1, 2]\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    swp.add_argument("spec", type=Path, help="sweep spec YAML")
    swp.add_argument("--out", type=Path, default=Path("build/sweep.csv"),
                     help="table to write: .csv or .parquet (default: build/sweep.csv)")
    swp.add_argument("--jobs", type=_positive, default=os.cpu_count() or 1, help="local worker processes")
    swp.add_argument("--scheduler", metavar="ADDRESS", help="run on this Dask scheduler (e.g. tcp://host:8786)")
    swp.add_argument("--no-cache", action="store_true", help="evaluate every point again")
    swp.set_defaults(func=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from pimphony.experiments.sweep import SweepError, load_spec, run_sweep, write_table

    if args.out.suffix not in (".csv", ".parquet"):
        raise CliError(f"--out {args.out}: the table must end in .csv or .parquet")
    try:
        points = load_spec(args.spec)
    except SweepError as exc:
        raise CliError(str(exc)) from None
    where = f"Dask scheduler {args.scheduler}" if args.scheduler else f"{args.jobs} local process(es)"
    print(f"{len(points)} points on {where}")
    t0 = time.perf_counter()
    try:
        rows = run_sweep(points, jobs=args.jobs, scheduler=args.scheduler, use_cache=not args.no_cache,
                         progress=Progress("sweep points"))
    except OSError as exc:
        raise CliError(f"cannot reach the Dask scheduler {args.scheduler}: {exc}") from None
    path = write_table(rows, args.out)
    failed = sum(1 for r in rows if r.get("error"))
    print(f"wrote {path}: {len(rows)} rows ({failed} with an error) in {time.perf_counter() - t0:.1f} s")
    return 0


def _register_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks that print measured figures against targets")
    bsub = bench.add_subparsers(dest="bench", metavar="BENCH")
    bsub.required = True
    trace_cli.register_bench(bsub, _positive)
    for register in (_register_bench_golden, _register_bench_dcs, _register_bench_perf, _register_bench_dpa):
        register(bsub)


def _register_bench_perf(bsub: argparse._SubParsersAction) -> None:
    bpf = bsub.add_parser("perf", help="speed of the system model: one point, a 72B model at 1M tokens on 512 GB",
                          description="Time one evaluation of the system model (target: at most 1 s) — by default "
                                      "llama-3.1-70b, a 1M-token context, 512 GB of CENT — with the kernel costs "
                                      "already measured (their first measurement is timed separately).",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bpf.add_argument("--model", default="llama-3.1-70b")
    bpf.add_argument("--system", default="cent")
    bpf.add_argument("--capacity", default="512GB")
    bpf.add_argument("--context", type=_positive, default=1 << 20)
    bpf.add_argument("--repeat", type=_positive, default=5, help="evaluations timed; the median is reported")
    bpf.set_defaults(func=cmd_bench_perf)


def cmd_bench_perf(args: argparse.Namespace) -> int:
    from pimphony.experiments.points import PointSpec, build_point
    from pimphony.model.perf.system import evaluate
    from pimphony.scheduler.costs import cache_path, kernel_costs

    try:
        point = build_point(PointSpec(model=args.model, system=args.system, capacity=args.capacity,
                                      context=args.context))
    except (ConfigError, PerfError):
        raise
    except ValueError as exc:                       # a malformed capacity
        raise CliError(f"--capacity {args.capacity}: {exc}") from None
    cached = cache_path(point.org, point.timing, point.model.head_dim, point.model.group).is_file()
    t0 = time.perf_counter()
    costs = kernel_costs(point.org, point.timing, point.model.head_dim, point.model.group)
    t_costs = time.perf_counter() - t0
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = evaluate(point, costs)
        times.append(time.perf_counter() - t0)
    median = float(np.median(times))
    print(f"system model: {point.model.name}, {args.context:,}-token context, {point.capacity_bytes / 2**30:.0f} GB "
          f"{point.system.name} ({point.modules} modules, {len(result.plans)} deployments searched, batch "
          f"{result.admission.batch}): {result.tokens_per_s:,.1f} tokens/s")
    print(f"  one point: {1000 * median:.1f} ms median of {args.repeat} (target <= 1000 ms): "
          f"{'met' if median <= 1.0 else 'NOT met'}")
    how = "read from the cache" if cached else "measured on the cycle model (once per module, head_dim, group)"
    print(f"  kernel costs: {t_costs:.2f} s, {how}")
    return 0 if median <= 1.0 else 1


def _register_presets(sub: argparse._SubParsersAction) -> None:
    pre = sub.add_parser("presets", help="print the shipped presets with the source and basis of every value",
                         description="Print presets: timing, module organisations, LLMs and workloads. Every value "
                                     "carries its source and a basis (paper, public-model, derived, assumed).")
    pre.add_argument("--kind", choices=list(PRESET_KINDS), help="only this kind")
    pre.add_argument("name", nargs="?", help="only this preset")
    pre.set_defaults(func=cmd_presets)


def cmd_presets(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(PRESET_KINDS)
    shown = 0
    for kind in kinds:
        cls = PRESET_KINDS[kind]
        for name in preset_names(kind):
            if args.name and name != args.name:
                continue
            cfg = cls.load(name)
            shown += 1
            print(f"[{kind}] {cfg.name}: {cfg.description}")
            for key, value, basis, source in cfg.describe():
                print(f"  {key:<15} {value:>10}  {basis:<12} {source}")
            print()
    if args.name and not shown:
        raise CliError(f"no preset named {args.name!r}; run 'pimphony presets' for the list")
    return 0


def _register_bench_golden(bsub: argparse._SubParsersAction) -> None:
    bg = bsub.add_parser("golden", help="golden-model speed and memory: one layer of decode attention",
                         description="Time one layer of decode attention on the golden model (placement, KV load, "
                                     "lowering, execution; input generation excluded) and report simulated MACs per "
                                     "second and peak RSS, beside the same attention in plain float32 numpy on the "
                                     "same bf16 inputs. Targets (Llama-3.1-8B, 128K tokens, batch 1): <= 5 s, "
                                     "<= 2 GB and <= 20x numpy for each partition, >= 1 G simulated MAC/s for TCP, "
                                     "HFP <= 2x TCP; exit code 1 when one is missed. The execution uses every core "
                                     "the process may use (channels dealt over threads).",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bg.add_argument("--model", default="llama-3.1-8b")
    bg.add_argument("--module", default=DEFAULT_MODULE)
    bg.add_argument("--context", type=_positive, default=131072)
    bg.add_argument("--batch", type=_positive, default=1)
    bg.add_argument("--partition", choices=[*GOLDEN_PARTITIONS, "both"], default="both",
                    help="both: TCP, then HFP on the same inputs, and HFP's time held against TCP's")
    bg.add_argument("--check", action="store_true", help="also compute the float64 reference and check the error")
    bg.add_argument("--repeat", type=_positive, default=3,
                    help="timed runs; the median is held against the target (timings on a shared machine vary)")
    bg.set_defaults(func=cmd_bench_golden)


def cmd_bench_golden(args: argparse.Namespace) -> int:
    from pimphony.scheduler.golden import AttentionInputs, run_golden_attention, warm_up

    model = ModelConfig.load(args.model)
    org = ModuleOrg.load(args.module)
    lengths = [args.context] * args.batch
    _check_kv_fits(model, org, lengths, 1, "--context/--batch")
    t0 = time.perf_counter()
    warm_up()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    inputs = AttentionInputs.random(model, lengths, seed=0)
    gen = time.perf_counter() - t0
    numpy_s = float(np.median([_numpy_attention_seconds(inputs) for _ in range(args.repeat)]))
    partitions = ["tcp", "hfp"] if args.partition == "both" else [args.partition]
    print(f"bench golden: {model.name}, 1 layer, batch {args.batch}, context {args.context}, on {org.name}; "
          f"input generation {gen:.2f} s and the loop's compilation or cache load {compile_s:.2f} s excluded")
    print(f"  plain numpy float32    median {numpy_s:.3f} s on the same bf16 inputs")
    medians: dict[str, float] = {}
    missed: list[str] = []
    for part in partitions:
        runs = [run_golden_attention(model, org, inputs, partition=part, check=args.check and k == 0)
                for k in range(args.repeat)]
        run = runs[0]
        seconds = sorted(r.seconds for r in runs)
        median = medians[part] = float(np.median(seconds))
        stages = {name: float(np.median([r.stages[name] for r in runs])) for name in run.stages}
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        macs = run.mac_ops
        print(f"  {part.upper()}")
        print(f"    simulated MACs       {macs:.3e} (bf16 multiply-accumulates in the banks)")
        print(f"    golden model time    median {median:.2f} s of {args.repeat} runs (min {seconds[0]:.2f}, "
              f"max {seconds[-1]:.2f}; target <= 5 s): place and load KV {stages['place']:.2f} s, lower "
              f"{stages['lower']:.2f} s, execute {stages['execute']:.2f} s")
        target = f"target >= {GOLDEN_MACS / 1e6:.0f} end to end" if part == "tcp" else "held through HFP / TCP"
        print(f"    throughput           {macs / median / 1e6:.1f} M MAC/s end to end, "
              f"{macs / stages['execute'] / 1e6:.1f} M MAC/s executing ({target})")
        print(f"    golden / numpy       {median / numpy_s:.1f}x (target <= {GOLDEN_OVER_NUMPY}x)")
        print(f"    peak RSS             {rss_mb:.0f} MB so far (target <= 2048 MB, whole process)")
        if args.check:
            print(f"    max |error|          {run.max_error:.3e} (worst error / bound {run.error_ratio():.3g})")
        missed += [f"{part} {name}" for name, ok in (
            ("time", median <= 5), ("memory", rss_mb <= 2048),
            ("MAC/s", part != "tcp" or macs / median >= GOLDEN_MACS),
            ("numpy ratio", median / numpy_s <= GOLDEN_OVER_NUMPY)) if not ok]
    if len(medians) == 2:
        ratio = medians["hfp"] / medians["tcp"]
        print(f"  HFP / TCP              {ratio:.2f}x (target <= {HFP_OVER_TCP}x)")
        if ratio > HFP_OVER_TCP:
            missed.append("HFP / TCP")
    print(f"  targets                {'met' if not missed else 'NOT met: ' + ', '.join(missed)}")
    return 1 if missed else 0


GOLDEN_MACS = 1e9
GOLDEN_OVER_NUMPY = 20
HFP_OVER_TCP = 2
"""Targets of ``bench golden``: simulated MACs per second of TCP, the golden model's time over the same
attention computed directly with numpy in float32 on the same bf16-rounded inputs, and HFP's time over
TCP's on the same inputs (which is how HFP's speed is held: HFP issues about ten times TCP's
instructions for the same MACs)."""


def _numpy_attention_seconds(inputs) -> float:
    """Seconds of decode attention in float32 numpy on ``inputs`` (the comparison of ``bench golden``)."""
    q, k, v, lengths = inputs.q, inputs.k, inputs.v, inputs.lengths
    g = q.shape[1] // k.shape[1]
    scale = np.float32(1.0 / np.sqrt(q.shape[2]))
    t0 = time.perf_counter()
    for b, t in enumerate(lengths.tolist()):
        for h in range(k.shape[1]):
            kk = k[b, h, :t].astype(np.float32)
            vv = v[b, h, :t].astype(np.float32)
            x = (q[b, h * g:(h + 1) * g].astype(np.float32) @ kk.T) * scale
            p = np.exp(x - x.max(axis=1, keepdims=True))
            _ = (p @ vv) / p.sum(axis=1, keepdims=True)
    return time.perf_counter() - t0


def _register_bench_dcs(bsub: argparse._SubParsersAction) -> None:
    bd = bsub.add_parser("dcs", help="speed of the channel cycle model (commands per second, per policy)",
                         description="Issue one channel's attention command stream (Llama-3.1-8B, TCP) repeated to "
                                     "at least --commands commands under each policy and report commands per "
                                     "second. Target: >= 1M commands/s.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bd.add_argument("--commands", type=_positive, default=2_000_000, help="stream length")
    bd.add_argument("--no-cocotb", action="store_true", help="skip timing the cocotb block suite")
    bd.set_defaults(func=cmd_bench_dcs)


def cmd_bench_dcs(args: argparse.Namespace) -> int:
    from pimphony.model.config import TimingPreset as Timing
    from pimphony.model.policies import issue_cycles
    from pimphony.model.queue import Policy, QueueConfig
    from pimphony.scheduler.dcs_experiments import attention_program
    from pimphony.scheduler.lower import command_streams

    org, timing = ModuleOrg.load(DEFAULT_MODULE), Timing.load(DEFAULT_TIMING)
    missed = False
    print(f"bench dcs: channel cycle model, one channel's attention stream (g=4, TCP) repeated to "
          f">= {args.commands} commands")
    for policy in Policy:
        cfg = QueueConfig.for_org(org, policy)
        base = command_streams(attention_program(org, 4, 16384, cfg.obuf_entries), org.channels)[0]
        stream = np.tile(base, -(-args.commands // len(base)))
        t0 = time.perf_counter()
        issue_cycles(stream[:64]["op"], stream[:64]["gbuf"], stream[:64]["obuf"], timing, cfg)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        res = issue_cycles(stream["op"], stream["gbuf"], stream["obuf"], timing, cfg)
        dt = time.perf_counter() - t0
        rate = len(stream) / dt
        missed |= rate < 1e6
        print(f"  {policy.name.lower():<9} {len(stream):>9} commands in {dt:.3f} s = {rate / 1e6:6.2f} M "
              f"commands/s (target >= 1 M)  simulated {int(res.cycles[-1])} cycles; first call {warm:.2f} s")
    slow = not args.no_cocotb and _time_cocotb_suite("dcs", "the DCS queue")
    return 1 if missed or slow else 0


def _time_cocotb_suite(block: str, what: str) -> bool:
    """Run a block's cocotb suite on every simulator (seed 1) and print the wall time of each; True when
    one took longer than the 3-minute target."""
    from pimphony.rtl.build import write_verilog
    from pimphony.verification.configs import testbench_options
    from pimphony.verification.runner import SIMULATORS, available, run_suite, testcases

    print(f"cocotb block suite of {what} ({len(testcases(block))} tests; target <= 3 min on 2 cores):")
    slow = False
    verilog = write_verilog(block, Path("build/rtl/testbench"), **testbench_options(block))
    for sim in SIMULATORS:
        missing = available(sim)
        if missing:
            print(f"  {sim:<9} skipped: {missing}")
            continue
        t0 = time.perf_counter()
        run_suite(block, sim, verilog, Path("build/sim"), seed=1, quiet=True)
        seconds = time.perf_counter() - t0
        slow |= seconds > 180
        print(f"  {sim:<9} {seconds:6.1f} s (build included; seed 1)")
    return slow


def _register_verilog(sub: argparse._SubParsersAction) -> None:
    ver = sub.add_parser("verilog", help="write the Verilog of the RTL blocks into build/rtl/",
                         description="Elaborate Amaranth blocks with the default presets and write their Verilog: "
                                     "dcs -> dcs_queue.v (the DCS command queue), dpa -> dpa_controller.v (the DPA "
                                     "controller: 16 requests, 32 segments, 32 virtual chunks per segment, 8192 "
                                     "chunks, 256 instruction entries, head_dim 128), sequencer -> sequencer.v "
                                     "(op-size unroll and multicast), hub -> pim_hub.v (DPA controller, sequencer and "
                                     "one DCS queue per channel; ~400K lines for 16 channels).",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ver.add_argument("block", nargs="?", default="all", choices=[*BLOCKS, "all"], help="which block")
    ver.add_argument("--out", type=Path, default=Path("build/rtl"), help="output folder")
    ver.add_argument("--module", default=DEFAULT_MODULE)
    ver.add_argument("--timing", default=DEFAULT_TIMING)
    ver.set_defaults(func=cmd_verilog)


def cmd_verilog(args: argparse.Namespace) -> int:
    for block in BLOCKS if args.block == "all" else (args.block,):
        path = synth_cli.write_block(block, args)
        print(f"wrote {path} ({len(path.read_text().splitlines())} lines)")
    return 0


def _register_bench_dpa(bsub: argparse._SubParsersAction) -> None:
    bp = bsub.add_parser("dpa", help="speed of the golden DPA allocator (appends per second)",
                         description="Open a batch of Llama-3.1-8B requests (256 segments each) and append one "
                                     "token to each, round robin, for --steps decode steps; report appends per "
                                     "second including the chunk allocations (target: >= 1M appends/s); then time "
                                     "the DPA controller's cocotb block suite on Icarus and Verilator.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    bp.add_argument("--requests", type=_positive, default=32)
    bp.add_argument("--steps", type=_positive, default=30000)
    bp.add_argument("--no-cocotb", action="store_true", help="skip timing the cocotb block suite")
    bp.set_defaults(func=cmd_bench_dpa)


def cmd_bench_dpa(args: argparse.Namespace) -> int:
    from pimphony.model.kvcache import ChunkLayout, DpaAllocator, Status, segments_of

    org, model = ModuleOrg.load(DEFAULT_MODULE), ModelConfig.load("llama-3.1-8b")
    layout = ChunkLayout(org, model.head_dim)
    segs = segments_of(model)
    longest = 1000 + 37 * args.requests + args.steps
    need = args.requests * segs * 2 * -(-longest // layout.k_tokens)
    alloc = DpaAllocator(layout, segs, max_requests=args.requests, chunks=need)
    for r in range(args.requests):
        alloc.open(r, 1000 + 37 * r)
    append, reqs, failed = alloc.append, range(args.requests), 0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        for r in reqs:
            failed += append(r) != Status.OK
    dt = time.perf_counter() - t0
    alloc.check()
    n = args.steps * args.requests
    print(f"bench dpa: golden DPA allocator, {args.requests} x {model.name} requests ({segs} segments each), "
          f"{args.steps} decode steps")
    print(f"  {n} appends in {dt:.2f} s = {n / dt / 1e6:.2f} M appends/s (target >= 1 M); {failed} failed; "
          f"{alloc.held_chunks()} chunks held, no leak")
    slow = not args.no_cocotb and _time_cocotb_suite("dpa", "the DPA controller")
    return 1 if n / dt < 1e6 or failed or slow else 0


def _register_run(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="the main job: a model's attention layer through the RTL hub in cocotb",
                         description="Build the PIM hub (DPA controller, sequencer, one DCS queue per channel) for "
                                     "the workload, run decode attention through it in cocotb under static and DCS "
                                     "issue with golden PIM channels executing every command, and report: correct "
                                     "against numpy, cycles and speed-up, DPA chunks and capacity utilisation.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    run.add_argument("--model", default="llama-3.1-8b", help="model preset or YAML file")
    run.add_argument("--lengths", type=_lengths, default=[2048, 2047], help="request lengths, comma-separated")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--module", default=DEFAULT_MODULE,
                     help="module preset or YAML file: the hub gets one DCS queue per channel (fewer channels "
                          "build and simulate faster)")
    run.add_argument("--sim", choices=["icarus", "verilator"], default="verilator",
                     help="Verilator compiles the 16-channel hub once (~50 s on 2 cores, cached in --out) and then "
                          "simulates ~10x faster than Icarus")
    run.add_argument("--waves", action="store_true",
                     help="write a waveform of the run (FST on Icarus; VCD on Verilator, from a flat, slower build)")
    run.add_argument("--out", type=Path, default=Path("build/run"), help="where the Verilog, build and report go")
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    from pimphony.rtl.build import run_config

    from .run import print_report, run_main_job

    model = ModelConfig.load(args.model)
    ModuleOrg.load(args.module)                    # a bad module file is a config error, not a build error
    try:
        config = run_config(model, args.lengths, args.module)
    except ValueError as exc:
        raise CliError(f"--model {args.model} / --module {args.module} / --lengths: the hub cannot be built for "
                       f"this workload: {exc}") from None
    if len(args.lengths) > RUN_MAX_REQUESTS or config.n_chunks > RUN_MAX_CHUNKS:
        raise CliError(f"--lengths: {len(args.lengths)} requests holding {config.n_chunks} chunks of 1 MiB; the main "
                       f"job simulates at most {RUN_MAX_REQUESTS} requests and {RUN_MAX_CHUNKS} chunks (a few minutes "
                       "of simulation); use `pimphony attention` for larger workloads on the golden model")
    try:
        report = run_main_job(args.model, args.lengths, args.seed, args.sim, args.waves, args.out, module=args.module)
    except RuntimeError as exc:
        raise CliError(str(exc)) from None
    return 0 if print_report(report) else 1


def _register_regress(sub: argparse._SubParsersAction) -> None:
    reg = sub.add_parser("regress", help="run a regression suite of the cocotb testbenches (verification/suites/)",
                         description="Run every (testbench, seed) of a suite on a simulator, print a summary "
                                     "table and write JUnit XML (build/regress/SUITE-SIM.xml). Suites: smoke (every "
                                     "testbench once, <= 2 min), full (3-5 seeds each, longer random runs), stress "
                                     "(long random runs with fresh seeds).",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    reg.add_argument("--suite", default="smoke", help="suite name (a file in verification/suites/)")
    reg.add_argument("--sim", choices=["icarus", "verilator"], default="icarus")
    reg.add_argument("--seed", type=_nonneg, help="run every testbench with this one seed instead")
    reg.add_argument("--block", action="append", choices=sorted(SUITES), metavar="BLOCK",
                     help=f"run this block's runs of the suite only (repeatable; {', '.join(sorted(SUITES))}); "
                          "the seeds stay those of the whole suite")
    reg.add_argument("--waves", action="store_true",
                     help="save waveforms (a separate, traced build: FST on Icarus, VCD on Verilator)")
    reg.add_argument("--out", type=Path, default=Path("build/regress"), help="builds, results and JUnit go here")
    reg.add_argument("--scheduler", metavar="ADDRESS",
                     help="spread the runs over this Dask scheduler (e.g. tcp://127.0.0.1:8786); every worker "
                          "needs pimphony installed and the --out folder reachable")
    reg.set_defaults(func=cmd_regress)


def cmd_regress(args: argparse.Namespace) -> int:
    from pimphony.verification.regress import SuiteError, load_suite, run_regression, select_blocks, summary
    from pimphony.verification.runner import available

    missing = available(args.sim)
    if missing:
        raise CliError(f"{args.sim} is not available: {missing}")
    try:
        suite_seed = args.seed if args.seed is not None else random.randrange(1 << 31)
        runs = select_blocks(load_suite(args.suite, args.seed, suite_seed), args.block, args.suite)
    except SuiteError as exc:
        raise CliError(str(exc)) from None
    print(f"regress {args.suite}: {len(runs)} runs on {args.sim}, seeds " +
          ", ".join(f"{r.block}:{r.seed}" for r in runs) +
          f" (suite seed {suite_seed}: replay with --seed {suite_seed})")
    try:
        result = run_regression(args.suite, args.sim, args.out, runs, args.waves,
                                progress=Progress(f"regress {args.suite}"), scheduler=args.scheduler)
    except OSError as exc:
        raise CliError(f"--scheduler {args.scheduler}: cannot reach the Dask scheduler: {exc}") from None
    print(summary(result))
    return 0 if result.passed else 1


def _register_mutate(sub: argparse._SubParsersAction) -> None:
    mut = sub.add_parser("mutate", help="inject RTL faults one at a time; simulation or proofs must catch each",
                         description="Mutation check of the verification: each mutant (pimphony mutate --list) edits "
                                     "one line of the Amaranth RTL (a timing counter off by one, a missed hazard, a "
                                     "wrong VA2PA index, a command dropped under back-pressure, a leaked chunk, ...), "
                                     "the Verilog is generated from the faulty source in a fresh process, and the "
                                     "smoke suite runs on it, the mutated block's testbench first, until one fails; "
                                     "for a block with a property harness (pimphony prove) its proof tasks run too, "
                                     "until one fails. The table shows which caught each mutant. The shipped RTL "
                                     "has no fault hooks. Exit code 1 if any mutant survives both.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    mut.add_argument("names", nargs="*", metavar="MUTANT", help="mutants to check (default: all)")
    mut.add_argument("--list", action="store_true", help="print the catalogue and exit")
    mut.add_argument("--sim", choices=["icarus", "verilator"], default="icarus")
    mut.add_argument("--jobs", type=_positive, default=2, help="mutants checked at once")
    mut.add_argument("--methods", choices=["both", "sim", "proof"], default="both",
                     help="check each mutant by the smoke suite, the proofs, or both")
    mut.add_argument("--out", type=Path, default=Path("build/mutate"), help="builds and results go here")
    mut.set_defaults(func=cmd_mutate)


def cmd_mutate(args: argparse.Namespace) -> int:
    from pimphony.verification.mutation import CATALOGUE, MutationError, mutant, run_mutants, table
    from pimphony.verification.runner import available

    if args.list:
        for m in CATALOGUE:
            print(f"{m.name:<26} {m.block:<4} {m.fault}")
        return 0
    missing = available(args.sim)
    if missing:
        raise CliError(f"{args.sim} is not available: {missing}")
    try:
        names = [mutant(n).name for n in args.names] or [m.name for m in CATALOGUE]
        methods = ("sim", "proof") if args.methods == "both" else (args.methods,)
        print(f"pimphony mutate: {len(names)} mutants, {' and '.join(methods)} ({args.sim}), {args.jobs} at a time")
        results = run_mutants(names, args.sim, args.out, args.jobs, progress=Progress("mutants"), methods=methods)
    except MutationError as exc:
        raise CliError(str(exc)) from None
    print(table(results, args.sim))
    return 0 if all(r.caught for r in results) else 1


def _register_reproduce(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("reproduce", help="regenerate the paper's figures into Markdown and PNG",
                         description="Without a target: every number of the paper the project computes, into "
                                     "reports/reproduction.md with PNG plots (paper | pimphony | ratio, and the "
                                     "assumption behind every gap over 25 percent). A target runs one experiment.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rep.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    rep.add_argument("--trials", type=_positive, default=3, help="seeded draws of the request lengths per point")
    rsub = rep.add_subparsers(dest="target", metavar="TARGET")
    rall = rsub.add_parser("all", help="every target (the default)",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rall.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    rall.add_argument("--trials", type=_positive, default=3, help="seeded draws of the request lengths per point")
    rd = rsub.add_parser("dcs", help="Fig. 7, Fig. 8, Fig. 18 and the MAC-utilisation table of DCS",
                         description="Run the DCS experiments on the channel cycle model and write dcs.md with "
                                     "dcs_fig7.png, dcs_fig8.png and dcs_fig18.png.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rd.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    rd.add_argument("--module", default=DEFAULT_MODULE)
    rd.add_argument("--timing", default=DEFAULT_TIMING, help="timing preset or YAML file")
    rd.add_argument("--context", type=_positive, default=32768, help="tokens of the attention workloads")
    rv = rsub.add_parser("validation", help="the hub and channel cycle models against the RTL (>= 30 points)",
                         description="Run attention pairs through the RTL hub in amaranth.sim over head_dim, context, "
                                     "GQA group, policy and channel count; predict each with the hub model; write "
                                     "validation.md (per-point table, MAE, R², channel-level equality) and "
                                     "validation.png. About 3 minutes on 2 cores.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rv.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    rv.add_argument("--quick", action="store_true", help="3 points instead of the full sweep")
    rv.add_argument("--jobs", type=_positive, default=2, help="points simulated at once")
    rs = rsub.add_parser("serving", help="throughput and p99 latency against offered load, static vs DPA, HFP vs TCP",
                         description="Serve Poisson arrivals at a range of offered loads with `pimphony serve`'s "
                                     "simulator on both systems for TCP and HFP, each with DPA and static "
                                     "allocation; write "
                                     "serving.md (every point and each configuration's saturation load) and "
                                     "serving.png.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rs.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    rs.add_argument("--duration", type=float, default=120.0, help="simulated seconds per point")
    rs.add_argument("--seed", type=_nonneg, default=0, help="seed of the arrivals and lengths")
    rs.add_argument("--rates", type=serve_cli.rates_type, default=SERVING_RATES,
                    help="offered loads, requests per second, comma-separated")
    rs.add_argument("--jobs", type=_positive, default=1, help="points simulated at once on local processes")
    rs.add_argument("--scheduler", help="address of a Dask scheduler to run the points on (tcp://host:8786)")
    rp = rsub.add_parser("dpa", help="capacity utilisation and effective batch, static T_max against DPA (Fig. 19)",
                         description="Sample request lengths from the paper's Table II workloads, admit a decode "
                                     "batch under static T_max reservation and under DPA, and write dpa.md with "
                                     "dpa_capacity.png.",
                         formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    rp.add_argument("--out", type=Path, default=Path("reports"), help="output folder")
    rp.add_argument("--module", default=DEFAULT_MODULE)
    rp.add_argument("--kv-gb", type=_positive, default=112, help="KV-cache capacity in GB")
    rp.add_argument("--generate", type=_positive, default=DEFAULT_GENERATE, help="decode steps per request")
    rp.add_argument("--trials", type=_positive, default=10, help="seeded batches per point")
    rp.add_argument("--seed", type=_nonneg, default=0)
    rep.set_defaults(func=cmd_reproduce)


def cmd_reproduce(args: argparse.Namespace) -> int:
    from pimphony.experiments.reproduce import reproduce_dcs, reproduce_dpa

    t0 = time.perf_counter()
    if args.target in (None, "all"):
        from pimphony.experiments.reproduction import reproduce_all

        path = reproduce_all(args.out, trials=args.trials, progress=Progress("reproduction points"))
    elif args.target == "validation":
        from pimphony.experiments.validation import reproduce_validation

        path, summary = reproduce_validation(args.out, quick=args.quick, jobs=args.jobs,
                                             progress=Progress("validation points"))
        print(summary)
    elif args.target == "serving":
        if not args.duration > 0:
            raise CliError(f"--duration must be a positive number of seconds; got {args.duration}")
        path = reproduce_serving(args.out, duration_s=args.duration, seed=args.seed, rates=args.rates,
                                           jobs=args.jobs, scheduler=args.scheduler,
                                           progress=Progress("serving points"))
    elif args.target == "dpa":
        path = reproduce_dpa(args.out, module=args.module, kv_gb=args.kv_gb, generate=args.generate,
                             trials=args.trials, seed=args.seed)
    else:
        path = reproduce_dcs(args.out, module=args.module, timing=args.timing, length=args.context)
    print(f"wrote {path} and its plots in {time.perf_counter() - t0:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        code = _dispatch(argv)
        sys.stdout.flush()                   # a reader that left after the last write: fail here, not at exit
        return code
    except BrokenPipeError:                  # the reader went away (`pimphony presets | head -1`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _dispatch(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_outputs(args)
        return args.func(args)
    except (ConfigError, InputError, PartitionError, LoweringError, PerfError, CliError) as exc:
        print(f"pimphony: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("pimphony: error: not enough memory for this input; give shorter contexts or fewer requests",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pimphony: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
