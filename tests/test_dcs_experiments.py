"""The DCS experiments and ``pimphony reproduce dcs`` / ``bench dcs``."""

import re

import pytest

from pimphony.cli.main import main
from pimphony.model.config import ModuleOrg, TimingPreset
from pimphony.model.isa import Opcode
from pimphony.model.queue import Policy, QueueConfig
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


@pytest.mark.parametrize("group", [1, 4, 8])
@pytest.mark.parametrize("phase", ["qk", "sv"])
def test_dcs_reaches_the_row_bound(group, phase):
    """Below 85% (MHA, g = 4) the row switches are the limit, not the scheduler."""
    trace = X.attention_trace(ORG, AIM, group, Policy.DCS, 32768, phase=phase)
    bound = X.row_bound(ORG, AIM, group)
    refresh_share = trace.breakdown["REF"] / trace.total_cycles
    assert trace.violations == []
    assert trace.mac_utilisation <= bound
    assert trace.mac_utilisation >= bound - refresh_share - 0.03


@pytest.mark.parametrize("phase", ["qk", "sv"])
def test_dcs_reaches_85_percent_with_gqa_8_over_a_long_context(phase):
    """Issue 3's target at the default queues: one channel's share of 32K tokens, d_h = 128."""
    trace = X.attention_trace(ORG, AIM, 8, Policy.DCS, 32768, phase=phase)
    assert trace.violations == []
    assert trace.mac_utilisation >= 0.85


def test_a_compute_queue_shorter_than_an_sv_tile_stalls_the_mac_unit():
    """With 16 + 16 queues the in-order dispatcher holds the next tile's WR-INPs behind the MACs."""
    deep = X.attention_trace(ORG, AIM, 8, Policy.DCS, 8192, phase="sv")
    shallow = X.attention_trace(ORG, AIM, 8, Policy.DCS, 8192, phase="sv", **X.SHALLOW_QUEUES)
    assert QueueConfig.for_org(ORG, Policy.DCS).compute_depth >= ORG.gbuf_entries // 2
    assert shallow.mac_utilisation < deep.mac_utilisation
    assert shallow.breakdown["DT-GBuf"] > deep.breakdown["DT-GBuf"]


def test_reproduce_dcs_writes_report_and_plots(tmp_path, capsys):
    assert main(["reproduce", "dcs", "--out", str(tmp_path), "--context", "4096"]) == 0
    text = (tmp_path / "dcs.md").read_text()
    assert "| Fig. 7 |" in text and "| Fig. 18 |" in text and "## What drives the gaps" in text
    assert "| 16,384 |" in text and "## GQA g = 8 with DCS as the context grows" in text   # 4x the context
    assert "in the attention traces of the utilisation tables: 0." in text
    for png in ("dcs_fig7.png", "dcs_fig8.png", "dcs_fig18.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_dcs_prints_rates_and_fails_below_its_target(capsys):
    """Three policies' rates; the exit code is 1 exactly when one is below 1 M commands/s."""
    code = main(["bench", "dcs", "--commands", "20000", "--no-cocotb"])
    out = capsys.readouterr().out
    rates = [float(x) for x in re.findall(r"= +([0-9.]+) M commands/s", out)]
    assert len(rates) == 3
    assert code == (1 if min(rates) < 1 else 0)
