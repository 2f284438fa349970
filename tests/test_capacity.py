"""Capacity utilisation and effective batch (static T_max against DPA), and its commands."""

import re

import numpy as np
import pytest

from pimphony.cli.main import main
from pimphony.model.config import ModelConfig, ModuleOrg, WorkloadConfig
from pimphony.model.perf.capacity import capacity_run, sample_lengths

ORG = ModuleOrg.load("aimx-16ch")


def test_lengths_follow_table_two():
    wl = WorkloadConfig.load("multifieldqa")
    x = sample_lengths(wl, 20000, np.random.default_rng(1))
    assert x.min() >= wl.min and x.max() <= wl.max
    assert abs(x.mean() - wl.mean) < 0.05 * wl.mean                 # clipping moves the mean only a little
    assert np.array_equal(x, sample_lengths(wl, 20000, np.random.default_rng(1)))


@pytest.mark.parametrize(("workload", "model"), [("qmsum", "qwen1.5-7b"), ("loogle-sd", "llama-3.1-8b")])
def test_dpa_fits_more_and_wastes_less(workload, model):
    m, wl = ModelConfig.load(model), WorkloadConfig.load(workload)
    static = capacity_run(m, ORG, wl, 112 << 30, "static", seed=3)
    dpa = capacity_run(m, ORG, wl, 112 << 30, "dpa", seed=3)
    per_request = 2 * m.layers * m.kv_heads * m.context * m.head_dim * 2
    assert static.batch == (112 << 30) // per_request == 7        # docs/sources.md §models: ~6-7 requests at 128 GB
    assert dpa.batch > static.batch
    assert dpa.utilisation > static.utilisation
    assert static.utilisation == pytest.approx(static.naive, abs=0.15)
    assert dpa.chunks_used <= dpa.chunks


def test_more_capacity_never_shrinks_the_batch():
    m, wl = ModelConfig.load("qwen1.5-7b"), WorkloadConfig.load("musique")
    batches = [capacity_run(m, ORG, wl, gb << 30, "dpa", seed=0).batch for gb in (32, 64, 128)]
    assert batches == sorted(batches) and batches[0] >= 1


def test_reproduce_dpa_and_bench(tmp_path, capsys):
    assert main(["reproduce", "dpa", "--out", str(tmp_path), "--trials", "2", "--generate", "64"]) == 0
    text = (tmp_path / "dpa.md").read_text()
    assert "| qmsum | qwen1.5-7b (32768) |" in text and "## What drives the gaps" in text
    assert (tmp_path / "dpa_capacity.png").read_bytes()[:4] == b"\x89PNG"
    capsys.readouterr()
    code = main(["bench", "dpa", "--requests", "4", "--steps", "5000", "--no-cocotb"])
    out = capsys.readouterr().out
    assert "; 0 failed;" in out and "no leak" in out
    rate = float(re.search(r"= ([0-9.]+) M appends/s", out).group(1))
    assert code == (1 if rate < 1 else 0)                   # the exit code follows the 1 M appends/s target
