"""The DCS queue's cocotb block testbench on Icarus and Verilator (launched through the runner)."""

import os
import random
from pathlib import Path

import pytest

from pimphony.rtl.build import write_verilog
from pimphony.verification.runner import SIMULATORS, available, run_suite

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def dcs_verilog(tmp_path_factory):
    return write_verilog("dcs", tmp_path_factory.mktemp("rtl"))


@pytest.mark.parametrize("sim", SIMULATORS)
def test_dcs_block_testbench(sim, dcs_verilog, tmp_path):
    missing = available(sim)
    if missing:
        pytest.skip(missing)
    seed = int(os.environ.get("PIMPHONY_SEED") or random.randrange(1 << 31))
    print(f"replay with PIMPHONY_SEED={seed}")
    results = run_suite("dcs", sim, dcs_verilog, ROOT / "build" / "sim", seed)
    text = results.read_text()
    assert text.count("<testcase") == 4 and "<failure" not in text
