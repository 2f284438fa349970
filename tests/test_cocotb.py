"""The cocotb testbenches (DCS queue, DPA controller, hub) on Icarus and Verilator, through the runner."""

import os
import random
from pathlib import Path

import pytest

from pimphony.rtl.build import write_verilog
from pimphony.verification.runner import SIMULATORS, SUITES, available, run_suite

ROOT = Path(__file__).resolve().parents[1]
TESTS = {"dcs": 4, "dpa": 4, "hub": 2}
"""cocotb tests per block suite."""


@pytest.mark.parametrize("sim", SIMULATORS)
@pytest.mark.parametrize("block", sorted(SUITES))
def test_block_testbench(block, sim, tmp_path):
    missing = available(sim)
    if missing:
        pytest.skip(missing)
    verilog = write_verilog(block, tmp_path, testbench=True)
    seed = int(os.environ.get("PIMPHONY_SEED") or random.randrange(1 << 31))
    print(f"replay with PIMPHONY_SEED={seed}")
    results = run_suite(block, sim, verilog, ROOT / "build" / "sim", seed)
    text = results.read_text()
    assert text.count("<testcase") == TESTS[block] and "<failure" not in text
