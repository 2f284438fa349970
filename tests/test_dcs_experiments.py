"""The DCS experiments and ``pimphony reproduce dcs`` / ``bench dcs``."""

import pytest

from pimphony.cli.main import main
from pimphony.model.config import ModuleOrg, TimingPreset
from pimphony.model.isa import Opcode
from pimphony.model.queue import Policy
from pimphony.scheduler import dcs_experiments as X
from pimphony.scheduler.lower import LoweringError, lower_gemv

ORG = ModuleOrg.load("aimx-16ch")
AIM = TimingPreset.load("aim-gddr6")


def test_gemv_lowering_shape():
    ins = lower_gemv(ORG, 128, 128, obuf_entries=2)
    macs = [i for i in ins if i.op == Opcode.MAC]
    assert len(macs) == 8 and all(i.op_size == 8 for i in macs)     # 8 output slots of 16 rows, 8 bursts each
    assert sum(i.op == Opcode.ACT for i in ins) == 1                 # a 128 x 128 bf16 matrix is one row per bank
    with pytest.raises(LoweringError, match=r"n_in=24 must be a multiple of 16"):
        lower_gemv(ORG, 24, 16, 2)


def test_fig7_dcs_is_faster_and_legal():
    f7 = X.fig7(ORG, AIM)
    assert f7.dcs_cycles < f7.static_cycles
    assert f7.static_trace.violations == [] and f7.dcs_trace.violations == []


def test_fig8_static_utilisation_rises_with_dimension():
    rows = X.fig8(ORG, AIM, dims=(16, 64, 128))
    util = [r["static"] for r in rows]
    assert util == sorted(util)
    assert all(r["dcs"] >= r["static"] for r in rows)


def test_fig18_dcs_gains_over_ping_pong_grow_with_gqa():
    rows = X.fig18(ORG, AIM, groups=(1, 8), length=8192)
    assert rows[0]["ratio"] > 1.0 and rows[1]["ratio"] > rows[0]["ratio"]


def test_dcs_reaches_the_row_bound_of_qk():
    trace = X.attention_trace(ORG, AIM, 8, Policy.DCS, 8192, phase="qk")
    bound = X.qk_row_bound(ORG, AIM, 8)
    refresh_share = trace.breakdown["REF"] / trace.total_cycles
    assert trace.mac_utilisation <= bound
    assert trace.mac_utilisation >= bound - refresh_share - 0.03


def test_reproduce_dcs_writes_report_and_plots(tmp_path, capsys):
    assert main(["reproduce", "dcs", "--out", str(tmp_path), "--context", "4096"]) == 0
    text = (tmp_path / "dcs.md").read_text()
    assert "| Fig. 7 |" in text and "| Fig. 18 |" in text and "## What drives the gaps" in text
    for png in ("dcs_fig7.png", "dcs_fig8.png", "dcs_fig18.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_dcs_prints_rates(capsys):
    assert main(["bench", "dcs", "--commands", "20000", "--no-cocotb"]) == 0
    out = capsys.readouterr().out
    assert out.count("M commands/s") == 3
