"""ECP5 place and route (``pimphony synth BLOCK --target ecp5``): the flow runs on a small block, the report
names RTL signals, a missed frequency exits 1, a missing tool is one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from pimphony.cli.main import main
from pimphony.rtl import pnr
from pimphony.rtl.pnr import CriticalPath, PlaceRouteError, PlaceRouteReport, rtl_name


def test_cell_names_map_back_to_rtl_names():
    assert rtl_name("io_queue.rp__addr_TRELLIS_FF_DI_1") == "io_queue.rp__addr"
    assert rtl_name("io_queue.ram.0.14$DPRAM_COMB1") == "io_queue.ram.0.14"
    assert rtl_name("io_queue.ram.0.21_DO_2") == "io_queue.ram.0.21"
    assert rtl_name("decoder.$588_MULT18X18D_P0") == "decoder.$588"
    assert rtl_name("held_sel_LUT4_D_Z_L6MUX21_Z_1_D0_L6MUX21_Z_D1_PFUMX_Z_ALUT_LUT4_Z") == "held_sel"
    assert rtl_name("timing.$92_CCU2C_B0$CCU2_COMB1") == "timing.$92"
    assert rtl_name("\\$100_CCU2C_S0$CCU2_COMB1") == "$100"
    assert rtl_name("$nextpnr_CCU2C_35$CCU2_COMB0") == "(carry)"


def test_a_missing_tool_is_named_with_its_install_step():
    with pytest.raises(PlaceRouteError, match=r"^no-such-tool is not installed \(apt-get install it\)$"):
        pnr._tool("no-such-tool", "apt-get install it")


@pytest.mark.long(40)
def test_the_sequencer_places_routes_and_meets_100_mhz(tmp_path, capsys, monkeypatch):
    """The whole flow on the smallest block: synthesis, placement and routing on the ECP5-85F, the report's
    resources, frequency and a critical path whose names are the Verilog's."""
    if shutil.which("yosys") is None:
        pytest.skip("the system Yosys is not installed (apt-get install yosys; .ci/run installs it)")
    monkeypatch.chdir(tmp_path)
    assert main(["synth", "sequencer", "--target", "ecp5", "--out", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    assert "LFE5U-85F-6 CABGA381, out of context" in out and "(target 100 MHz: met)" in out
    fmax = float(out.split("fmax clk")[1].split()[0])
    assert 100 <= fmax < 1000
    luts = int(out.split("  luts")[1].split()[0])
    assert 100 < luts < 83640
    path_line = next(line for line in out.splitlines() if "critical path" in line)
    start, end = path_line.split(", ")[-1].split(" -> ")
    verilog = (tmp_path / "v" / "sequencer.v").read_text()
    through = next(line for line in out.splitlines() if line.strip().startswith("through")).split(None, 1)[1]
    for name in {start, end, *through.split(" > ")} - {"(carry)"}:
        assert name.split(".")[-1] in verilog, f"{name} is not a name of the Verilog"
    assert not list(tmp_path.glob(".pnr-*")), "the work folder was left behind"


def test_a_killed_runs_work_folder_is_removed_and_a_running_ones_kept(tmp_path):
    """A folder named for a process that is gone goes (with its files); one of a live process (this one)
    stays, and so does a folder the flow does not name."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    dead = tmp_path / f"{pnr.WORK_PREFIX}{gone.stdout.strip()}-abc"
    live = tmp_path / f"{pnr.WORK_PREFIX}{os.getpid()}-def"
    other = tmp_path / f"{pnr.WORK_PREFIX}notapid"
    for folder in (dead, live, other):
        folder.mkdir()
        (folder / "design.json").write_text("{}")
    assert pnr.sweep_stale_work(tmp_path) == [dead]
    assert not dead.exists() and live.exists() and other.exists()


def test_a_missed_frequency_exits_1_and_json_holds_the_report(tmp_path, capsys, monkeypatch):
    def fake(path, top, freq, seed):
        return PlaceRouteReport(top, pnr.DEVICE, freq, {"clk": 42.5}, 6000, 2000, 0, 100, 256, 83640,
                                [CriticalPath("clk", 23.5, "a", "b", 40, 12, ["a", "x", "b"])], 1.0)

    monkeypatch.setattr(pnr, "place_and_route", fake)
    monkeypatch.chdir(tmp_path)
    assert main(["synth", "dcs", "--target", "ecp5", "--json", "--out", str(tmp_path / "v")]) == 1
    doc = json.loads(capsys.readouterr().out)
    rep = doc["place_and_route"]["dcs"]
    assert rep["met"] is False and rep["fmax_mhz"] == {"clk": 42.5} and rep["target_mhz"] == 100.0
    assert rep["critical_paths"][0]["through"] == ["a", "x", "b"]
    assert doc["dcs_table_bytes"]["total"] == 185


def test_bad_frequency_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["synth", "dcs", "--target", "ecp5", "--freq", "0"])
    assert exc.value.code == 2
    assert "--freq: expected a frequency in (0, 1000] MHz, got 0" in capsys.readouterr().err
