"""The main job: a model's decode-attention layer through the RTL hub in cocotb, with a short report."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from pimphony.model.config import DEFAULT_MODULE, DEFAULT_TIMING
from pimphony.rtl.blocks import TOP_NAMES

from .progress import Progress

TEST_MODULE = "pimphony.verification.tests.tb_run"
TOP = TOP_NAMES["hub"]


def run_main_job(model_name: str, lengths: list[int], seed: int, sim: str, waves: bool, out: Path,
                 progress: bool = True, module: str = DEFAULT_MODULE) -> dict:
    """Build the hub for the workload on ``module`` (a preset name or a YAML file), run
    :mod:`pimphony.verification.tests.tb_run` once per policy of :data:`POLICIES` (both at once) and
    return their merged report (with ``seconds``, ``simulator`` and ``waveform`` added)."""
    from pimphony.model.config import ModelConfig, TimingPreset
    from pimphony.model.queue import QueueConfig
    from pimphony.rtl.build import run_config, write_cached_verilog
    from pimphony.rtl.hub import PimHub
    from pimphony.scheduler.golden import warm_up
    from pimphony.verification.runner import available, build, test

    missing = available(sim)
    if missing:
        raise RuntimeError(f"{sim} is not available: {missing}")
    start = time.perf_counter()
    model = ModelConfig.load(model_name)
    # the simulators run in their own folders: a model or module given as a file goes there by absolute path
    model_name, module = (str(Path(x).resolve()) if Path(x).is_file() else x for x in (model_name, module))
    config = run_config(model, lengths, module)
    out.mkdir(parents=True, exist_ok=True)
    timing, queue = TimingPreset.load(DEFAULT_TIMING), QueueConfig.rtl_default(config.org)
    source = write_cached_verilog(PimHub(config, timing, queue), TOP, out / "rtl" / f"{TOP}.v",
                                  (config, timing, queue))
    compiling = threading.Thread(target=warm_up)     # the simulations' golden channels load it from disk
    compiling.start()
    built = build(sim, source, TOP, out / "sim", waves=waves, quiet=True)
    compiling.join()
    runs = {policy: Path(built.build_dir) / policy for policy in POLICIES}
    for folder in runs.values():
        for name in ("report.json", "progress.txt"):
            (folder / name).unlink(missing_ok=True)
    failure: list[BaseException] = []

    def simulate(policy: str, folder: Path) -> None:
        settings = {"model": model_name, "module": module, "lengths": lengths, "seed": seed, "policies": [policy],
                    "report": str((folder / "report.json").resolve()),
                    "progress": str((folder / "progress.txt").resolve())}
        try:
            test(built, TOP, TEST_MODULE, folder, waves=waves,
                 extra_env={"PIMPHONY_RUN": json.dumps(settings)}, quiet=True)
        except BaseException as exc:                 # reported by the caller, after the report if any
            failure.append(exc)

    bar = Progress(f"{model.name} through the RTL hub, RUNs", enabled=progress)
    aim: list[int] = []

    def baseline() -> None:                # the cycle model, on the core that the shorter run frees
        try:
            aim.append(aim_baseline(model, config, lengths, seed, timing))
        except Exception as exc:
            failure.append(exc)

    workers = [threading.Thread(target=simulate, args=item) for item in runs.items()]   # one per core
    workers.append(threading.Thread(target=baseline))
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):
        workers[0].join(0.5)
        counts = [c for c in map(_progress, runs.values()) if c is not None]
        if counts:
            bar(sum(c[0] for c in counts), max(c[1] for c in counts) * len(runs))
    report: dict = {}
    for policy, folder in runs.items():
        path = folder / "report.json"
        if not path.is_file():
            raise RuntimeError(f"the {policy} simulation wrote no report: "
                               f"{failure[0] if failure else 'unknown failure'} (see {folder / 'sim.log'})")
        report |= json.loads(path.read_text())
    if not aim:
        raise RuntimeError(f"the aim baseline (cycle model) failed: {failure[-1]}")
    report["aim"] = {"cycles": aim[0]}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    dumps = sorted(runs["dcs"].glob("*.fst")) + sorted(runs["dcs"].glob("*.vcd"))
    report.update(seconds=time.perf_counter() - start, simulator=sim,
                  waveform=str(dumps[0]) if waves and dumps else None, failure=str(failure[0]) if failure else None,
                  log=str(runs["dcs"] / "sim.log"))
    return report


def _progress(folder: Path) -> tuple[int, int] | None:
    """(operations done, operations) of the run in ``folder``, or None before its first complete write."""
    try:
        fields = (folder / "progress.txt").read_text().split()
    except OSError:
        return None
    if len(fields) != 2 or not all(f.isdigit() for f in fields):
        return None
    return int(fields[0]), int(fields[1])


POLICIES = ("static", "dcs")
"""The main job's two runs, each in its own simulator process (two cores: at the same time)."""


def aim_baseline(model, config, lengths: list[int], seed: int, timing) -> int:
    """Cycles of the same workload's RUNs on aim_simulator's controller (the ``aim`` policy, with refresh),
    from the cycle model: aim_simulator's controller has no RTL here."""
    from pimphony.scheduler.aim import predict_operations
    from pimphony.verification.env.hub import AttentionOnHub

    return predict_operations(AttentionOnHub(model, config, lengths, steps=0, seed=seed).operations(), config, timing)


def print_report(r: dict) -> bool:
    """Print the report; True when both runs are correct."""
    s, d = r["static"], r["dcs"]
    ok = all(x["error_ratio"] <= 1.0 and not x["errors"] and not x["failed_operations"]
             and x["golden_mismatches"] == 0 for x in (s, d))
    print(f"pimphony run: {r['model']} attention layer, {len(r['lengths'])} requests {r['lengths']}, "
          f"through the RTL hub ({r['channels']} channels) on {r['simulator']}")
    print(f"  correct against numpy: {'yes' if ok else 'NO'}  (max |error| {d['max_abs_error']:.3e}, "
          f"worst error / bound {max(s['error_ratio'], d['error_ratio']):.3g}; static and DCS)")
    print(f"  bit-exact against the golden model's in-order execution: "
          f"{'yes' if s['golden_mismatches'] == d['golden_mismatches'] == 0 else 'NO'} "
          f"({s['golden_mismatches']} + {d['golden_mismatches']} outputs differ)")
    a = r["aim"]["cycles"]
    print(f"  cycles of the RUNs: DCS {d['cycles']} (RTL, {d['commands']} channel commands; the program load, "
          f"OPEN and CLOSE took {d['management_cycles']} more) against the baselines:")
    print(f"    aim (aim_simulator's in-order AiM controller, cycle model) {a}  ->  DCS speed-up "
          f"{a / d['cycles']:.2f}x")
    print(f"    static (our nRDHUB-calibrated in-order controller, RTL) {s['cycles']}  ->  DCS speed-up "
          f"{s['cycles'] / d['cycles']:.2f}x")
    print(f"  DPA: {r['chunks_used']} of {r['chunks']} chunks used (1 MiB each), capacity utilisation "
          f"{r['capacity_utilisation']:.1%}")
    print(f"  waveform: {r['waveform'] or 'none (pimphony run --waves writes one)'}; log: {r['log']}")
    print(f"  {r['seconds']:.0f} s")
    for x in (s, d):
        for line in x["errors"]:
            print(f"  error: {line}")
    return ok
