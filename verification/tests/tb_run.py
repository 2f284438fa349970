"""The main job (``pimphony run``): decode attention of a model's layer through ``pim_hub`` under static
and DCS issue. Configured by ``PIMPHONY_RUN`` (JSON: model, module, lengths, seed, policies, report path,
progress path, written by :func:`pimphony.cli.run.run_main_job`, which runs one process per policy); writes the
report as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock

from pimphony.model.config import DEFAULT_MODULE, DEFAULT_TIMING, ModelConfig, TimingPreset
from pimphony.model.dpa import DpaOp
from pimphony.model.queue import Policy, QueueConfig
from pimphony.rtl.build import run_config
from pimphony.rtl.hub import PimHub
from pimphony.verification.env import coverage
from pimphony.verification.env.hub import AttentionOnHub, HubBench, HubLayouts, reset_hub

SETTINGS = json.loads(os.environ.get("PIMPHONY_RUN", "{}"))


class _Progress:
    """RUNs done, written to a file the CLI polls for its progress bar (the RUNs take nearly all of a
    run's cycles, one (request, KV head) pair each; the loads, opens and closes take few)."""

    def __init__(self, path: str | None, total: int):
        self.path, self.total, self.done = path, total, 0

    def tick(self) -> None:
        self.done += 1
        if self.path:
            Path(self.path).write_text(f"{self.done} {self.total}\n")


@cocotb.test()
async def main_job(dut):
    """Each policy of the settings (static, then DCS, by default) on the same workload; the outputs of
    each against the float64 reference."""
    model = ModelConfig.load(SETTINGS.get("model", "llama-3.1-8b"))
    lengths = SETTINGS.get("lengths", [2048, 2047])
    seed = int(SETTINGS.get("seed", 0))
    config = run_config(model, lengths, SETTINGS.get("module", DEFAULT_MODULE))
    timing = TimingPreset.load(DEFAULT_TIMING)
    queue = QueueConfig.rtl_default(config.org)
    hub = PimHub(config, timing, queue)
    layouts = HubLayouts.of(hub)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    report: dict = {"model": model.name, "lengths": lengths, "seed": seed, "channels": config.org.channels}
    policies = [Policy[name.upper()] for name in SETTINGS.get("policies", ["static", "dcs"])]
    runs = sum(op.op == DpaOp.RUN for op in AttentionOnHub(model, config, lengths, 0, seed).operations())
    progress = _Progress(SETTINGS.get("progress"), runs * len(policies))
    for policy in policies:
        await reset_hub(dut, config.org.channels, policy)
        work = AttentionOnHub(model, config, lengths, steps=0, seed=seed)
        bench = HubBench(dut, work, layouts, timing, queue.obuf_dual_port, np.random.default_rng(seed))
        cycles = management = 0          # the RUNs' cycles (what the aim baseline counts), the rest's
        held = None
        for op in work.operations():
            if op.op == DpaOp.CLOSE and held is None:
                held = (work.mirror.alloc.held_chunks(), work.mirror.alloc.utilisation())
            spent = await bench.run([op])
            if op.op == DpaOp.RUN:
                cycles += spent
                progress.tick()
            else:
                management += spent
        ratios = work.error_ratios()
        ref = work.references()[0]
        report[policy.name.lower()] = {
            "cycles": cycles, "management_cycles": management, "commands": bench.commands,
            "errors": (bench.errors + work.errors)[:10],
            "error_ratio": max(ratios), "max_abs_error": float(np.abs(work.outputs[0] - ref.out).max()),
            "golden_mismatches": work.mismatches(),
            "failed_operations": sum(1 for r in bench.responses if r["status"] != 0)}
        report["chunks_used"], report["capacity_utilisation"] = held
    report["chunks"] = config.n_chunks
    Path(SETTINGS.get("report", "run_report.json")).write_text(json.dumps(report, indent=1))
    coverage.export()
    for policy in policies:
        r = report[policy.name.lower()]
        assert not r["errors"] and not r["failed_operations"], f"{policy.name}: {r['errors']}"
        assert r["golden_mismatches"] == 0, f"{policy.name}: {r['golden_mismatches']} outputs differ from the golden"
