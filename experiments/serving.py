"""The serving study of the reproduction: a load sweep of the serving model over systems, partitions and
allocations (:func:`reproduce_serving`)."""

from __future__ import annotations

from pimphony.model.config import DEFAULT_GENERATE

SERVING_SYSTEMS = ("cent", "neupims")
SERVING_CONFIGS = (("tcp", "dpa"), ("tcp", "static"), ("hfp", "dpa"), ("hfp", "static"))
"""(partition, allocation) of the serving load sweep; every one issues with DCS."""
SERVING_RATES = (0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 16.0)
"""Offered loads of the sweep, requests per second."""
SATURATED = 0.9
"""A configuration is saturated from the first load it serves less than this share of (offered requests
x mean output tokens)."""


def serving_point(model: str, system: str, capacity: str, workload: str, partition: str, alloc: str,
                  rate: float, duration_s: float, output_mean: int, seed: int, preempt: str = "recompute") -> dict:
    """One point of the load sweep (plain arguments, so a Dask or process pool can run it)."""
    from pimphony.model.perf.serving import serve
    from pimphony.scheduler.costs import kernel_costs

    from .points import PointSpec, build_point

    point = build_point(PointSpec(model=model, system=system, capacity=capacity, workload=workload,
                                  partition=partition, schedule="dcs", alloc=alloc, seed=seed))
    costs = kernel_costs(point.org, point.timing, point.model.head_dim, point.model.group)
    result = serve(point, costs, rate=rate, duration_s=duration_s, output_mean=output_mean, prefill=False,
                   seed=seed, preempt=preempt)
    return {"partition": partition, "alloc": alloc, "rate": rate, **result.summary()}


def _serving_task(task: tuple) -> dict:
    """:func:`serving_point` of one ``(system, partition, alloc, rate, preempt, model, capacity, workload,
    duration_s, output_mean, seed)`` tuple, tagged with its system (a picklable task for a pool)."""
    system, partition, alloc, rate, preempt, model, capacity, workload, duration_s, output_mean, seed = task
    return {"system": system, "preempt": preempt, **serving_point(model, system, capacity, workload, partition,
                                                                  alloc, rate, duration_s, output_mean, seed,
                                                                  preempt=preempt)}


def reproduce_serving(out, model: str = "llama-3.1-8b", capacity: str = "128GB", workload: str = "qmsum",
                      duration_s: float = 120.0, output_mean: int = DEFAULT_GENERATE, seed: int = 0,
                      rates: tuple[float, ...] = SERVING_RATES, jobs: int = 1, scheduler: str | None = None,
                      progress=None):
    """Throughput and p99 latencies against offered load on both systems for TCP / HFP x DPA / static, with
    each one's saturation load: ``serving.md`` and ``serving.png`` in ``out``. The points run in this
    process, on ``jobs`` local processes or on the Dask cluster at ``scheduler``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    from .sweep import map_tasks

    common = (model, capacity, workload, duration_s, output_mean, seed)
    todo = [(sy, p, a, r, "recompute", *common) for sy in SERVING_SYSTEMS for p, a in SERVING_CONFIGS for r in rates]
    todo += [(sy, "tcp", "dpa", max(rates), "swap", *common) for sy in SERVING_SYSTEMS]
    done = map_tasks(_serving_task, todo, jobs, scheduler, progress)
    rows = [x for x in done if x["preempt"] == "recompute"]
    swaps = {x["system"]: x for x in done if x["preempt"] == "swap"}
    lines = ["# Serving: throughput and latency against offered load", "",
             f"Regenerate with `pimphony reproduce serving`. {model} on {capacity} of each system, prompts from "
             f"{workload} (Table II statistics), outputs geometric with mean {output_mean} (clipped to [1, "
             f"{4 * output_mean}]), Poisson arrivals, {duration_s:g} s simulated per point, seed {seed}; DCS "
             "issue; DPA preempts the newest request by recompute. Prefill is not charged here: on PIM-only it "
             "runs the FC layers once per prompt token and would bound every configuration alike "
             "(`pimphony serve` charges it unless `--no-prefill`).", "",
             f"Saturation: the first offered load at which a configuration serves less than {SATURATED:.0%} of the "
             "offered tokens (requests/s x mean output).", ""]
    fig, axes = plt.subplots(len(SERVING_SYSTEMS), 3, figsize=(13, 3.4 * len(SERVING_SYSTEMS)), squeeze=False)
    for row_axes, system in zip(axes, SERVING_SYSTEMS, strict=True):
        mine = [x for x in rows if x["system"] == system]
        lines += _serving_section(system, mine, swaps[system], output_mean, rates)
        for p, a in SERVING_CONFIGS:
            pts = [x for x in mine if (x["partition"], x["alloc"]) == (p, a)]
            rates = [x["rate"] for x in pts]
            label = f"{p.upper()} + {a}"
            row_axes[0].plot(rates, [x["tokens_per_s"] for x in pts], marker="o", label=label)
            row_axes[1].plot(rates, [max(x["request_latency_p99_s"], 1e-3) for x in pts], marker="o", label=label)
            row_axes[2].plot(rates, [x["token_latency_p99_ms"] for x in pts], marker="o", label=label)
        row_axes[0].plot(rates, [r * output_mean for r in rates], color="grey", linestyle=":",
                         label="offered")
        row_axes[0].set(xlabel="offered load (requests/s)", ylabel="output tokens/s", title=f"{system}: throughput")
        row_axes[1].set(xlabel="offered load (requests/s)", ylabel="s", yscale="log",
                        title=f"{system}: request latency p99")
        row_axes[2].set(xlabel="offered load (requests/s)", ylabel="ms", yscale="log",
                        title=f"{system}: per-token latency p99")
        for ax in row_axes:
            ax.legend(fontsize=7)
    lines += ["![serving](serving.png)", ""]
    fig.tight_layout()
    fig.savefig(out / "serving.png", dpi=120)
    plt.close(fig)
    path = out / "serving.md"
    path.write_text("\n".join(lines))
    return path


def _serving_section(system: str, rows: list[dict], swap: dict, output_mean: int,
                     rates: tuple[float, ...]) -> list[str]:
    """One system's part of ``serving.md``: saturation loads, DPA against static where static saturates,
    recompute against swap at the highest load, and every point."""
    saturation = {}
    for p, a in SERVING_CONFIGS:
        short = [x["rate"] for x in rows if (x["partition"], x["alloc"]) == (p, a)
                 and x["tokens_per_s"] < SATURATED * x["rate"] * output_mean]
        saturation[(p, a)] = min(short) if short else None
    never = f"> {max(rates):g}"
    lines = [f"## {system}", "", "| partition | alloc | saturates at (req/s) |", "|---|---|---:|"]
    lines += [f"| {p.upper()} | {a} | {never if saturation[(p, a)] is None else f'{saturation[(p, a)]:g}'} |"
              for p, a in SERVING_CONFIGS]
    at = saturation[("tcp", "static")] or max(rates)
    pick = {(x["partition"], x["alloc"]): x for x in rows if x["rate"] == at}
    s_, d_ = pick[("tcp", "static")], pick[("tcp", "dpa")]
    gain = 100 * (d_["tokens_per_s"] / s_["tokens_per_s"] - 1)
    hot = max(rates)
    recompute = next(x for x in rows if (x["partition"], x["alloc"], x["rate"]) == ("tcp", "dpa", hot))
    lines += ["", f"Where TCP + static saturates ({at:g} requests/s), TCP + DPA serves {d_['tokens_per_s']:,.0f} "
              f"tokens/s against {s_['tokens_per_s']:,.0f} ({gain:+.0f}%). The p99 latencies, DPA against static: "
              f"request (arrival to last token) {d_['request_latency_p99_s']:,.2f} s against "
              f"{s_['request_latency_p99_s']:,.2f} s; queueing {d_['queue_delay_p99_s']:,.2f} s against "
              f"{s_['queue_delay_p99_s']:,.2f} s; per token {d_['token_latency_p99_ms']:,.1f} ms against "
              f"{s_['token_latency_p99_ms']:,.1f} ms. Mean batch {d_['batch_mean']:.1f} against {s_['batch_mean']:.1f} "
              f"on TP {d_['tp']} x PP {d_['pp']} against TP {s_['tp']} x PP {s_['pp']} (each the deployment the "
              "system model picks for its allocation's full batch).", "",
              f"Preemption at the highest load ({hot:g} requests/s), TCP + DPA: recompute drops the newest "
              "request's KV and prefills it again when it returns (not charged here); swap moves it over the "
              "module link and back, stalling the batch.", "",
              "| preemption | tokens/s | request p99 (s) | per-token p99 (ms) | preemptions | KV tokens "
              "dropped or moved |", "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {name} | {x['tokens_per_s']:,.1f} | {x['request_latency_p99_s']:,.2f} | "
              f"{x['token_latency_p99_ms']:,.1f} | {x['preemptions']:,} | {x['preempted_tokens']:,} |"
              for name, x in (("recompute", recompute), ("swap", swap))]
    lines += ["", "| partition | alloc | offered (req/s) | tokens/s | per-token p50 / p99 (ms) | queueing p99 (s) | "
              "request p99 (s) | mean batch | preemptions |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {x['partition'].upper()} | {x['alloc']} | {x['rate']:g} | {x['tokens_per_s']:,.1f} | "
              f"{x['token_latency_p50_ms']:,.1f} / {x['token_latency_p99_ms']:,.1f} | {x['queue_delay_p99_s']:,.2f} | "
              f"{x['request_latency_p99_s']:,.2f} | {x['batch_mean']:.1f} | {x['preemptions']:,} |" for x in rows]
    return [*lines, ""]
