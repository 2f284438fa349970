"""``pimphony reproduce``: regenerate the paper's figures as Markdown tables and PNG plots."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from pimphony.model.config import (
    DEFAULT_GENERATE,
    DEFAULT_MODULE,
    DEFAULT_TIMING,
    ModelConfig,
    ModuleOrg,
    TimingPreset,
    WorkloadConfig,
)
from pimphony.model.isa import Opcode
from pimphony.model.paper import PAPER
from pimphony.model.perf.capacity import capacity_trials
from pimphony.model.perf.channel import CATEGORIES
from pimphony.model.queue import Policy, QueueConfig
from pimphony.rtl.dcs import table_bytes
from pimphony.scheduler import dcs_experiments as X
from pimphony.scheduler.aim import TMOD

COLOURS = {"MAC": "#2b8cbe", "WR_INP": "#fdae61", "WR_BIAS": "#a6d96a", "RD_OUT": "#d7191c", "ACT": "#777777",
           "PRE": "#777777", "REF": "#000000", "TMOD": "#c994c7"}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _paired_bars(ax, labels: list[str], left: list[float], right: list[float], names: tuple[str, str],
                 ylabel: str, title: str) -> None:
    xs = list(range(len(labels)))
    ax.bar([x - 0.2 for x in xs], left, width=0.4, label=names[0])
    ax.bar([x + 0.2 for x in xs], right, width=0.4, label=names[1])
    ax.set_xticks(xs, labels, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def _timeline(ax, ops, cycles, title: str) -> None:
    """One bar per command; ``ops`` are opcodes, or 7 for AiM's TMOD (drawn as a nMODCH-long pause)."""
    for op_code, t in zip(ops, cycles, strict=True):
        op = "TMOD" if int(op_code) == TMOD else Opcode(int(op_code)).name
        row = {"WR_INP": 0, "WR_BIAS": 1, "MAC": 2, "RD_OUT": 3}.get(op, 4)
        ax.barh(row, 1, left=int(t), color=COLOURS.get(op, "#999999"), edgecolor="black", linewidth=0.4)
    ax.set_yticks(range(5), ["WR-INP", "WR-BIAS", "MAC", "RD-OUT", "ACT/PRE/TMOD"])
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()


def _breakdown_header() -> str:
    return " / ".join(c.replace("pipeline penalty", "penalty").replace("ACT/PRE", "ACT-PRE") for c in CATEGORIES)


@dataclass
class DcsResults:
    """What the DCS reproduction computes: Fig. 7, 8 and 18, the utilisation and context tables, and the
    storage of the RTL's tables."""

    org: ModuleOrg
    tp: TimingPreset
    length: int
    f7: object
    f8: list[dict]
    at128: dict
    unblocked: float
    f18: list[dict]
    util: list[dict]
    contexts: list[dict]
    violations: int
    cfg: QueueConfig
    tables: dict[str, int]
    shallow: str
    labels: list[str]

    @classmethod
    def compute(cls, org: ModuleOrg, tp: TimingPreset, length: int) -> DcsResults:
        f8 = X.fig8(org, tp)
        f18 = X.fig18(org, tp, length=length)
        util = X.utilisation_table(org, tp, length=length)
        contexts = X.context_table(org, tp, 8, [length // 4, length, 4 * length, 16 * length])
        return cls(
            org=org, tp=tp, length=length, f7=X.fig7(org, tp), f8=f8, at128=next(r for r in f8 if r["dim"] == 128),
            unblocked=X.gemv_trace(org, dataclasses.replace(tp, nRDHUB=tp.nCLREG + tp.nBL), 128,
                                   Policy.STATIC).mac_utilisation,
            f18=f18, util=util, contexts=contexts,
            violations=sum(v for r in util + contexts for k, v in r.items() if k.endswith("_violations")),
            cfg=QueueConfig.for_org(org, Policy.DCS), tables=table_bytes(tp, QueueConfig.rtl_default(org)),
            shallow=" + ".join(str(v) for v in X.SHALLOW_QUEUES.values()),
            labels=["MHA" if r["group"] == 1 else f"GQA g={r['group']}" for r in f18])


def reproduce_dcs(out: Path, module: str = DEFAULT_MODULE, timing: str = DEFAULT_TIMING, length: int = 32768) -> Path:
    """Write ``dcs.md`` and three PNGs into ``out``; returns the Markdown path."""
    out.mkdir(parents=True, exist_ok=True)
    d = DcsResults.compute(ModuleOrg.load(module), TimingPreset.load(timing), length)
    _dcs_plots(out, d)
    path = out / "dcs.md"
    path.write_text("\n".join(_dcs_summary(d) + _dcs_tables(d) + _dcs_drivers(d)))
    return path


def _dcs_plots(out: Path, d: DcsResults) -> None:
    tp, f7, f8, f18, paper8 = d.tp, d.f7, d.f8, d.f18, PAPER["fig8"]["static_utilisation_128"]
    fig, axes = plt.subplots(3, 1, figsize=(9, 5.4), sharex=True)
    _timeline(axes[0], f7.aim_run.command, f7.aim_run.cycle - 1,
              f"aim (aim_simulator's in-order AiM controller): {f7.aim_cycles} cycles")
    _timeline(axes[1], f7.static_trace.stream["op"], f7.static_trace.cycles,
              f"static (nRDHUB-calibrated in-order): {f7.static_cycles} cycles")
    _timeline(axes[2], f7.dcs_trace.stream["op"], f7.dcs_trace.cycles, f"DCS: {f7.dcs_cycles} cycles")
    axes[2].set_xlabel(f"cycle (tCK = {tp.tck_ps} ps)")
    axes[2].set_xlim(0, max(f7.aim_cycles, f7.static_cycles, f7.dcs_cycles) + 1)
    _save(fig, out / "dcs_fig7.png")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    dims = [r["dim"] for r in f8]
    for name in ("aim", "static", "pingpong", "dcs"):
        ax.plot(dims, [100 * r[name] for r in f8], marker="o", label=name)
    ax.scatter([128], [100 * paper8], marker="x", color="black", zorder=5,
               label="paper, static @128")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("GEMV dimension")
    ax.set_ylabel("MAC utilisation (%)")
    ax.set_title("Fig. 8: MAC utilisation of an n x n GEMV on one channel")
    ax.legend(fontsize=8)
    _save(fig, out / "dcs_fig8.png")

    fig, ax = plt.subplots(figsize=(6, 3.6))
    _paired_bars(ax, d.labels, [100 * r["pingpong"] for r in f18], [100 * r["dcs"] for r in f18],
                 ("ping-pong", "DCS"), "MAC utilisation (%)", "Fig. 18: DCS vs ping-pong, same buffers, d_h = 128")
    for x, r in enumerate(f18):
        ax.text(x + 0.2, 100 * r["dcs"] + 1, f"{r['ratio']:.2f}x", ha="center", fontsize=8)
    ax.legend(fontsize=8)
    _save(fig, out / "dcs_fig18.png")


def _dcs_summary(d: DcsResults) -> list[str]:
    """The introduction and the paper-against-pimphony table."""
    org, tp, f7, at128, f18 = d.org, d.tp, d.f7, d.at128, d.f18
    fig7 = PAPER["fig7"]
    paper7 = fig7["static_cycles"] / fig7["dcs_cycles"]
    paper8, paper18 = PAPER["fig8"]["static_utilisation_128"], PAPER["fig18"]["max_ratio"]
    paper_bytes = PAPER["table_bytes"]
    length, violations, tables = d.length, d.violations, d.tables
    return [
        "# DCS reproduction",
        "",
        f"Regenerate with `pimphony reproduce dcs`. Module `{org.name}` ({org.gbuf_entries}-entry GBuf, "
        f"{org.obuf_entries}-entry OBuf for ping-pong and DCS, {org.outreg_entries} output registers for static), "
        f"timing `{tp.name}` (tCK = {tp.tck_ps} ps), refresh every nREFI = {tp.nREFI} cycles. Attention: one "
        f"channel's share of one (request, KV head) of {length} tokens under TCP, d_h = 128. Timing violations "
        f"found by the checker in the attention traces of the utilisation tables: {violations}.",
        "",
        "## Paper against pimphony",
        "",
        "| figure | quantity | paper | pimphony | ratio |",
        "|---|---|---|---|---|",
        f"| Fig. 7 | GEMV example, static -> DCS cycles (baseline: aim) | {fig7['static_cycles']} -> "
        f"{fig7['dcs_cycles']} ({paper7:.2f}x) | {f7.aim_cycles} -> {f7.dcs_cycles} "
        f"({f7.aim_cycles / f7.dcs_cycles:.2f}x) | {f7.aim_cycles / f7.dcs_cycles / paper7:.2f} |",
        f"| Fig. 7 | same, second baseline: static (nRDHUB) | {fig7['static_cycles']} -> {fig7['dcs_cycles']} "
        f"({paper7:.2f}x) | {f7.static_cycles} -> {f7.dcs_cycles} "
        f"({f7.static_cycles / f7.dcs_cycles:.2f}x) | {f7.static_cycles / f7.dcs_cycles / paper7:.2f} |",
        f"| Fig. 8 | static MAC utilisation, dimension 128 (baseline: aim) | {_pct(paper8)} | {_pct(at128['aim'])} | "
        f"{at128['aim'] / paper8:.2f} |",
        f"| Fig. 8 | same, second baseline: static (nRDHUB) | {_pct(paper8)} | {_pct(at128['static'])} | "
        f"{at128['static'] / paper8:.2f} |",
        f"| Fig. 18 | DCS / ping-pong utilisation, max over MHA, g=2,4,8 | up to {paper18}x | "
        f"up to {max(r['ratio'] for r in f18):.2f}x | {max(r['ratio'] for r in f18) / paper18:.2f} |",
        f"| Sec VII-C | D-Table + S-Table bytes per controller (the RTL as built) | {paper_bytes} B | "
        f"{tables['total']} B (D {tables['d_table']} B, S {tables['s_table']} B) | "
        f"{tables['total'] / paper_bytes:.2f} |",
        "",
        "![Fig. 7](dcs_fig7.png)",
    ]


def _dcs_tables(d: DcsResults) -> list[str]:
    """Fig. 8, Fig. 18, the utilisation table and the context table."""
    f8, f18, util, contexts, cfg, shallow, labels = d.f8, d.f18, d.util, d.contexts, d.cfg, d.shallow, d.labels
    lines = [
        "",
        "## Fig. 8: MAC utilisation of an n x n GEMV",
        "",
        f"| n | aim | static (nRDHUB) | ping-pong | DCS | aim breakdown ({_breakdown_header()}) | "
        "static breakdown |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in f8:
        a, b = r["aim_breakdown"], r["breakdown"]
        lines.append(f"| {r['dim']} | {_pct(r['aim'])} | {_pct(r['static'])} | {_pct(r['pingpong'])} | "
                     f"{_pct(r['dcs'])} | " + " / ".join(_pct(a[k]) for k in CATEGORIES) + " | "
                     + " / ".join(_pct(b[k]) for k in CATEGORIES) + " |")
    lines += ["", "![Fig. 8](dcs_fig8.png)", "", "## Fig. 18: DCS against ping-pong with the same buffers", "",
              "| attention | ping-pong | DCS | DCS / ping-pong |", "|---|---|---|---|"]
    for label, r in zip(labels, f18, strict=True):
        lines.append(f"| {label} | {_pct(r['pingpong'])} | {_pct(r['dcs'])} | {r['ratio']:.2f}x |")
    lines += ["", "![Fig. 18](dcs_fig18.png)", "",
              "## MAC utilisation of QK^T and SV (fraction of the MAC roofline), d_h = 128", "",
              f"Queues: {cfg.io_depth}-deep I/O and {cfg.compute_depth}-deep compute (the default); {shallow} is "
              "the first proposal (docs/sources.md §dcs). Row bound: a row's MAC cycles over those plus its "
              "switch (nRCDRDMAC + nRTP + nRP), refresh aside.", "",
              f"| attention | phase | aim | static (nRDHUB) | ping-pong | DCS | DCS, {shallow} queues | row bound | "
              f"DCS / bound | DCS breakdown ({_breakdown_header()}) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in util:
        label = "MHA" if r["group"] == 1 else f"GQA g={r['group']}"
        b = r["dcs_breakdown"]
        lines.append(f"| {label} | {r['phase'].upper()} | {_pct(r['aim'])} | {_pct(r['static'])} | "
                     f"{_pct(r['pingpong'])} | {_pct(r['dcs'])} | {_pct(r['dcs_shallow'])} | {_pct(r['bound'])} | "
                     f"{_pct(r['dcs'] / r['bound'])} | " + " / ".join(_pct(b[k]) for k in b) + " |")
    lines += ["", "## GQA g = 8 with DCS as the context grows (default queues)", "",
              "| context (tokens) | QK^T | SV | refreshes in the QK^T trace | timing violations |",
              "|---|---|---|---|---|"]
    for r in contexts:
        lines.append(f"| {r['length']:,} | {_pct(r['qk'])} | {_pct(r['sv'])} | {r['qk_refreshes']} | "
                     f"{r['qk_violations'] + r['sv_violations']} |")
    return lines


def _dcs_drivers(d: DcsResults) -> list[str]:
    """What drives the gaps, with the arithmetic."""
    org, tp, f7, at128, f18, util, cfg, shallow = d.org, d.tp, d.f7, d.at128, d.f18, d.util, d.cfg, d.shallow
    unblocked, paper8 = d.unblocked, PAPER["fig8"]["static_utilisation_128"]
    g8 = [r for r in util if r["group"] == 8]
    return [
        "",
        "## What drives the gaps",
        "",
        "* **Baselines**: `aim` is the public AiM simulator's own controller (arkhadem/aim_simulator "
        "0f28a07), equal to it command for command on the 18 traces in `tests/data/aim`: in order, a TMOD "
        f"on every switch between register commands (WR-INP, WR-BIAS, RD-OUT) and bank commands (ACT, MAC, "
        f"PRE) with nothing issued for nMODCH = {tp.nMODCH} cycles after it, each RD-OUT blocking the DMA "
        "until it is called back (3-5 cycles). It is the baseline of every headline figure here. `static` is a "
        "second, named baseline: our in-order controller calibrated to CENT's RD_MAC cost "
        f"(nRDHUB = {tp.nRDHUB} cycles = 37.5 ns, Yufeng98/CENT aim_sim.py), without mode switches; the RTL "
        "queue's static mode implements it. Here both refresh every nREFI (aim_simulator itself never does; "
        "the equality tests run with refresh off).",
        "* **Fig. 7**: the figure's per-command latencies are not published and its cycle counts are "
        "schematic; we run a 32 x 32 GEMV with its row open on the AiM preset. DCS wins for the paper's reason "
        "(it overlaps the next chain's WR-BIAS and the vector load with MACs and never waits for read data). "
        f"On AiM's controller {f7.aim_run.counts()['TMOD']} mode switches of {tp.nMODCH} cycles dominate the "
        f"{f7.aim_cycles} cycles; the figure's 34 cycles have none, so our ratio is larger than the paper's.",
        "* **Fig. 8**: at dimension 128 AiM's controller keeps the MAC units "
        f"{_pct(at128['aim'])} busy against the paper's {_pct(paper8)} ({at128['aim'] / paper8:.2f}x); its "
        f"cycles go to mode switches ({_pct(at128['aim_breakdown']['mode switch'])}) and row switches "
        f"({_pct(at128['aim_breakdown']['ACT/PRE'])}). The calibrated static controller gives "
        f"{_pct(at128['static'])} (waiting for RD-OUT data at the HUB instead of mode switches; without nRDHUB "
        f"it would be {_pct(unblocked)}). Ping-pong and DCS drain the OBuf through its own port, never block "
        "on the data and pay no mode switch (PIMphony overlaps data movement with MACs, "
        "`pimphony.model.timing.REGISTER_MODE`).",
        "* **Fig. 18**: DCS / ping-pong = " + ", ".join(f"{r['ratio']:.2f}x" for r in f18) + " for MHA, g = 2, 4, 8 "
        "(paper: up to 1.4x). Ping-pong waits for a whole half-buffer; DCS waits per entry.",
        "* **Hardware**: the static baseline runs on AiM's output registers (2 entries, an RD-OUT is a column "
        "command that takes a MAC's nCCDS slot); ping-pong and DCS run on PIMphony's OBuf (16 entries, "
        "dual-ported: RD-OUT uses only the data bus). The lowering chains each head's SV accumulation over a "
        "whole V row and software-pipelines RD-OUTs; ping-pong and DCS get the same program.",
        "* **85% target** (DCS, d_h = 128, long context): GQA g = 8 reaches "
        + " and ".join(f"{r['phase'].upper()} {_pct(r['dcs'])}" for r in g8)
        + f". With the first proposal's {shallow} queues (docs/sources.md §dcs) SV stalls at every "
        f"{org.gbuf_entries // 2}-MAC tile ("
        + " and ".join(f"{r['phase'].upper()} {_pct(r['dcs_shallow'])}" for r in g8) + "): commands are "
        "dispatched in program order, so the dispatcher waits on a tile's last MACs before it can queue the next "
        f"tile's WR-INPs. A {cfg.compute_depth}-deep compute queue holds a whole tile. "
        "MHA and g = 4 cannot reach 85% on this hardware: a row switch costs "
        f"{tp.nRCDRDMAC + tp.nRTP + tp.nRP} cycles (nRCDRDMAC {tp.nRCDRDMAC} + nRTP {tp.nRTP} + nRP {tp.nRP}) "
        f"per {org.bursts_per_row} x g MACs of {tp.nCCDS} cycles, and all-bank refresh takes nRFC = {tp.nRFC} "
        f"of every nREFI = {tp.nREFI} cycles ({_pct(tp.nRFC / tp.nREFI)}); row switches alone bound both phases "
        "at " + ", ".join(f"{_pct(X.row_bound(org, tp, g))} (g={g})" for g in (1, 4, 8))
        + ". DCS reaches at least " + _pct(min(r["dcs"] / r["bound"] for r in util))
        + " of that bound in every row of the table, refresh included.",
        "",
    ]


DPA_WORKLOADS = (("qmsum", "qwen1.5-7b"), ("musique", "qwen1.5-7b"), ("multifieldqa", "llama-3.1-8b"),
                 ("loogle-sd", "llama-3.1-8b"))

def capacity_rows(module: str = DEFAULT_MODULE, kv_gb: int = 112, generate: int = DEFAULT_GENERATE, trials: int = 10,
                  seed: int = 0) -> list[tuple[str, str, int, dict]]:
    """Fig. 19's points, (workload, model, T_max, {policy: CapacityResult}): the one definition of capacity
    utilisation (live KV / reserved KV, averaged over the decode steps) that ``reproduce dpa`` and the full
    report (R11, R12) both print."""
    org = ModuleOrg.load(module)
    rows = []
    for wl_name, model_name in DPA_WORKLOADS:
        model, wl = ModelConfig.load(model_name), WorkloadConfig.load(wl_name)
        res = {p: capacity_trials(model, org, wl, kv_gb << 30, p, seed, trials, generate=generate)
               for p in ("static", "dpa")}
        rows.append((wl_name, model_name, model.context, res))
    return rows


def reproduce_dpa(out: Path, module: str = DEFAULT_MODULE, kv_gb: int = 112, generate: int = DEFAULT_GENERATE,
                  trials: int = 10, seed: int = 0) -> Path:
    """Write ``dpa.md`` and ``dpa_capacity.png``: capacity utilisation and effective batch, static vs DPA."""
    out.mkdir(parents=True, exist_ok=True)
    org, paper = ModuleOrg.load(module), PAPER["fig19"]
    rows = capacity_rows(module, kv_gb, generate, trials, seed)
    static_avg = sum(r[3]["static"].utilisation for r in rows) / len(rows)
    dpa_avg = sum(r[3]["dpa"].utilisation for r in rows) / len(rows)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [r[0] for r in rows]
    _paired_bars(ax1, names, [100 * r[3]["static"].utilisation for r in rows],
                 [100 * r[3]["dpa"].utilisation for r in rows], ("static (T_max)", "DPA"),
                 "capacity utilisation (%)", "Fig. 19: live KV / reserved KV")
    ax1.axhline(100 * paper["static_average"], color="C0", linestyle=":",
                label=f"paper static avg {_pct(paper['static_average'])}")
    ax1.axhline(100 * paper["dpa_average"], color="C1", linestyle=":",
                label=f"paper DPA avg {_pct(paper['dpa_average'])}")
    ax1.set_ylim(0, 130)
    ax1.legend(fontsize=7, loc="upper center", ncol=2)
    _paired_bars(ax2, names, [r[3]["static"].batch for r in rows], [r[3]["dpa"].batch for r in rows],
                 ("static", "DPA"), "requests in the batch", f"effective batch in {kv_gb} GB of KV")
    ax2.legend(fontsize=7)
    _save(fig, out / "dpa_capacity.png")

    lines = [
        "# DPA reproduction: capacity utilisation and effective batch",
        "",
        f"Regenerate with `pimphony reproduce dpa`. KV capacity {kv_gb} GB (assumed: 128 GB of the paper's 7B "
        f"systems less ~16 GB of weights), 1 MiB chunks on `{org.name}` (4096 tokens of one segment at "
        f"d_h = 128), {generate} decode steps per request, {trials} seeded batches per point (seeds {seed}.."
        f"{seed + trials - 1}). Lengths: normal with the Table II mean and standard deviation, clipped to its "
        "[min, max]. Static reserves T_max = the model's context for every request; DPA admits a request when "
        "its prompt's chunks plus the growth of every admitted request fit.",
        "",
        "| workload | model (T_max) | static util. | DPA util. | naive mean / T_max | static batch | DPA batch |",
        "|---|---|---|---|---|---|---|",
    ]
    for wl_name, model_name, t_max, res in rows:
        lines.append(f"| {wl_name} | {model_name} ({t_max}) | {_pct(res['static'].utilisation)} | "
                     f"{_pct(res['dpa'].utilisation)} | {_pct(res['static'].naive)} | {res['static'].batch} | "
                     f"{res['dpa'].batch} |")
    lines += [
        "",
        "| | paper | pimphony | ratio |",
        "|---|---|---|---|",
        f"| static capacity utilisation | {_pct(paper['static_low'])}-{_pct(paper['static_high'])} "
        f"(average {_pct(paper['static_average'])}) | average {_pct(static_avg)} | "
        f"{static_avg / paper['static_average']:.2f} |",
        f"| DPA capacity utilisation | average {_pct(paper['dpa_average'])} | average {_pct(dpa_avg)} | "
        f"{dpa_avg / paper['dpa_average']:.2f} |",
        "",
        "![capacity](dpa_capacity.png)",
        "",
        "## What drives the gaps",
        "",
        "* The paper does not define capacity utilisation. Ours is live KV bytes over reserved KV bytes, averaged "
        "over decode steps; with static reservation it is close to the naive mean length / T_max. The paper's "
        f"lower figures for both policies ({_pct(paper['static_average'])} and "
        f"{_pct(paper['dpa_average'])}) suggest it also counts capacity that no request "
        "holds (the remainder that fits no further request, or memory outside the KV pool); its ratio DPA / "
        f"static, {paper['dpa_average'] / paper['static_average']:.2f}x, is close to ours, "
        f"{dpa_avg / static_avg:.2f}x.",
        "* DPA's only loss here is the unfilled last chunk of each segment (at most 4095 tokens); it shrinks "
        "as contexts grow, so the LV-Eval workloads (tens of thousands of tokens) reach higher utilisation "
        "than LongBench.",
        "",
    ]
    path = out / "dpa.md"
    path.write_text("\n".join(lines))
    return path
