"""``pimphony serve``: online serving on the system model (arrivals, continuous batching, DPA preemption)."""

from __future__ import annotations

import argparse
import json

from pimphony.model.config import DEFAULT_GENERATE, ConfigError, InputError
from pimphony.model.perf.serving import PREEMPTIONS
from pimphony.model.perf.system import ALLOCS, PARTITIONS, SCHEDULES, PerfError, Techniques

from .perf import add_system_arguments


def rates_type(text: str) -> tuple[float, ...]:
    """``--rates``: a comma-separated list of positive offered loads, requests per second."""
    try:
        rates = tuple(sorted({float(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        rates = ()
    if not rates or not all(0 < r < float("inf") for r in rates):
        raise argparse.ArgumentTypeError(f"want positive requests per second separated by commas, e.g. 1,4,8; got "
                                         f"{text!r}")
    return rates


def _deployment(text: str) -> tuple[int, int]:
    tp, sep, pp = text.lower().partition("x")
    if not (sep and tp.isdigit() and pp.isdigit() and int(tp) > 0 and int(pp) > 0):
        raise argparse.ArgumentTypeError(f"want TPxPP with positive integers, e.g. 8x1; got {text!r}")
    return int(tp), int(pp)


def register(sub: argparse._SubParsersAction, positive_type, nonneg_type) -> None:
    """Add ``serve`` and its arguments to the CLI."""
    p = sub.add_parser(
        "serve", help="serve arriving requests on a PIM system: tokens/s, per-token latency, preemptions",
        description="Play a server on the system model for a stretch of simulated time: requests arrive (Poisson "
                    "at --rate per second, a closed loop of --clients, or a --trace CSV), join the batch at "
                    "decode-step granularity when the allocator admits them (static: T_max per request; DPA: "
                    "chunks as they grow), and, under DPA, the newest running request is preempted when the pool "
                    "runs dry (--preempt recompute: dropped and prefilled again; swap: its KV moved over the "
                    "module link and back). Prompt lengths come from the workload's Table II statistics; output "
                    "lengths are geometric with mean --output-mean, clipped to [1, 4 x mean]. Admitting a request "
                    "stalls the batch by its prefill (FC layers only; --no-prefill charges none).",
        epilog="examples:\n"
               "  pimphony serve --model llama-3.1-8b --workload qmsum --rate 0.2 --duration 600\n"
               "  pimphony serve --model llama-3.1-8b --workload qmsum --clients 30 --duration 3600 --alloc static\n"
               "  pimphony serve --model llama-3.1-8b --trace requests.csv --duration 120 --preempt swap --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_system_arguments(p)
    p.add_argument("--workload", default=None,
                   help="prompt lengths from a Table II workload (multifieldqa, qmsum, musique, loogle-sd) or a YAML "
                        "file; with --trace it only picks the deployment (default: qmsum)")
    p.add_argument("--trace", help="CSV of requests: arrival_s,prompt_tokens,output_tokens (with that header)")
    load = p.add_mutually_exclusive_group()
    load.add_argument("--rate", type=float, help="Poisson arrivals, requests per second")
    load.add_argument("--clients", type=positive_type, help="a closed loop of N clients, one request each at a time")
    p.add_argument("--duration", type=float, default=600.0, help="simulated seconds (default: 600)")
    p.add_argument("--alloc", choices=ALLOCS, default=Techniques.alloc)
    p.add_argument("--partition", choices=PARTITIONS, default=Techniques.partition)
    p.add_argument("--schedule", choices=SCHEDULES, default=Techniques.schedule)
    p.add_argument("--preempt", choices=PREEMPTIONS, default=PREEMPTIONS[0],
                   help="what DPA does with the newest request when the pool runs dry (default: recompute)")
    p.add_argument("--output-mean", type=positive_type, default=DEFAULT_GENERATE,
                   help=f"mean output tokens per request (default {DEFAULT_GENERATE}, the tokens per request of the "
                        "system model)")
    p.add_argument("--no-prefill", action="store_true", help="charge no prefill time on admission")
    p.add_argument("--t-max", type=positive_type, help="static reservation per request (default: the model's context)")
    p.add_argument("--deployment", type=_deployment, metavar="TPxPP",
                   help="run on TP x PP over all modules, e.g. 8x1 (default: what the system model picks for the "
                        "allocation's full batch)")
    p.add_argument("--seed", type=nonneg_type, default=0, help="seed of the arrivals and lengths")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from pimphony.experiments.points import PointSpec, build_point
    from pimphony.model.perf.serving import read_trace, serve
    from pimphony.scheduler.costs import kernel_costs

    from .progress import Progress

    if args.trace is None and args.rate is None and args.clients is None:
        raise InputError("give the load: --rate R, --clients N or --trace FILE")
    if args.trace is not None and (args.rate is not None or args.clients is not None):
        raise InputError("--trace replays its own arrivals; leave out --rate and --clients")
    for flag, value, unit in (("--rate", args.rate, "requests per second"), ("--duration", args.duration, "s")):
        if value is not None and not value > 0:
            raise InputError(f"{flag} must be a positive number of {unit}; got {value}")
    requests = read_trace(args.trace) if args.trace else None
    try:
        spec = PointSpec(model=args.model, system=args.system, capacity=args.capacity,
                         workload=args.workload or "qmsum", partition=args.partition, schedule=args.schedule,
                         alloc=args.alloc, module=args.module, timing=args.timing, seed=args.seed,
                         t_max=args.t_max)
        point = build_point(spec)
    except ValueError as exc:
        if isinstance(exc, InputError | ConfigError | PerfError):
            raise
        raise InputError(str(exc)) from None
    costs = kernel_costs(point.org, point.timing, point.model.head_dim, point.model.group)
    try:
        result = serve(point, costs, requests, rate=args.rate, clients=args.clients, duration_s=args.duration,
                       output_mean=args.output_mean, preempt=args.preempt, prefill=not args.no_prefill,
                       seed=args.seed, parallel=args.deployment,
                       progress=Progress("simulated time (ms)", enabled=not args.quiet))
    except ValueError as exc:
        if isinstance(exc, InputError | ConfigError | PerfError):
            raise
        raise InputError(f"--deployment: {exc}" if args.deployment else str(exc)) from None
    summary = {"model": point.model.name, "system": point.system.name, "capacity_gb": point.capacity_bytes / 2**30,
               "workload": point.workload.name, "alloc": args.alloc, "partition": args.partition,
               "schedule": args.schedule, "preempt": args.preempt, "prefill": not args.no_prefill,
               "rate": args.rate, "clients": args.clients, "trace": args.trace, "output_mean": args.output_mean,
               "seed": args.seed, **result.summary()}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    s = summary
    load = (f"Poisson {args.rate:g} requests/s" if args.rate else f"{args.clients} closed-loop clients"
            if args.clients else f"trace {args.trace}")
    print(f"{point.model.name} on {point.system.name} ({point.capacity_bytes / 2**30:.0f} GB, {s['modules']} modules, "
          f"TP {s['tp']} x PP {s['pp']}), {args.partition.upper()} + {args.schedule} + {args.alloc}, {load}, "
          f"{s['duration_s']:,.0f} s simulated")
    print(f"  output tokens/s      {s['tokens_per_s']:12,.1f}   ({s['output_tokens']:,} tokens in {s['steps']:,} "
          f"decode steps, mean batch {s['batch_mean']:.1f})")
    print(f"  per-token latency    p50 {s['token_latency_p50_ms']:,.1f} ms, p90 {s['token_latency_p90_ms']:,.1f} ms, "
          f"p99 {s['token_latency_p99_ms']:,.1f} ms")
    print(f"  queueing delay       p50 {s['queue_delay_p50_s']:,.2f} s, p99 {s['queue_delay_p99_s']:,.2f} s")
    print(f"  request latency      p50 {s['request_latency_p50_s']:,.2f} s, p99 {s['request_latency_p99_s']:,.2f} s "
          "(arrival to last token, finished requests)")
    print(f"  requests             {s['arrived']:,} arrived, {s['finished']:,} finished, {s['unfinished']:,} "
          f"unfinished at the end, {s['rejected']:,} rejected (longer than the allocator can ever hold)")
    print(f"  preemptions          {s['preemptions']:,} ({args.preempt}; {s['preempted_tokens']:,} tokens of KV "
          f"{'dropped' if args.preempt == 'recompute' else 'moved out'})")
    print(f"  KV pool held         {100 * s['utilisation_mean']:.1f}% on average"
          f"{' (static counts its reservations)' if args.alloc == 'static' else ''}")
    return 0
