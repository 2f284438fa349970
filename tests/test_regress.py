"""Regression suites: the files are valid, and the smoke suite passes on Icarus and Verilator."""

import pytest

from pimphony.cli.main import main
from pimphony.verification.regress import SuiteError, load_suite, suite_names
from pimphony.verification.runner import SIMULATORS, SUITES, available


def test_every_suite_loads_and_smoke_covers_every_testbench():
    assert {"smoke", "full", "stress"} <= set(suite_names())
    for name in suite_names():
        assert load_suite(name)
    assert {r.block for r in load_suite("smoke")} == set(SUITES)
    assert [r.seed for r in load_suite("full", seed=7)] == [7] * len(load_suite("full", seed=7))


def test_bad_suites_name_the_problem(tmp_path, monkeypatch):
    import pimphony.verification.regress as regress

    monkeypatch.setattr(regress, "SUITE_DIR", tmp_path)
    (tmp_path / "bad.yaml").write_text("runs:\n  - {block: nope}\n")
    with pytest.raises(SuiteError, match=r"bad\.yaml: runs\[0\]: block must be one of"):
        load_suite("bad")
    with pytest.raises(SuiteError, match="no suite 'missing'; choose one of bad"):
        load_suite("missing")


@pytest.mark.parametrize("sim", SIMULATORS)
def test_smoke_suite_passes(sim, tmp_path, capsys):
    missing = available(sim)
    if missing:
        pytest.skip(missing)
    code = main(["regress", "--suite", "smoke", "--sim", sim, "--out", str(tmp_path)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "12/12 passed" in text and (tmp_path / f"smoke-{sim}.xml").is_file()
    coverage = {line.split()[0]: line.split()[1] for line in text.splitlines()[-8:] if line.startswith("  d")}
    assert coverage["dpa.response"] == "26/26" and coverage["dcs.hazard"] == "14/14", text
    assert (tmp_path / f"smoke-{sim}-coverage.yml").is_file()


@pytest.mark.parametrize(("sim", "dump"), [("icarus", "*.fst"), ("verilator", "*.vcd")])
def test_waves_hold_the_design_inside(sim, dump, tmp_path):
    """A traced run writes a waveform with the queue's internal signals (Verilator: VCD from a flat build)."""
    missing = available(sim)
    if missing:
        pytest.skip(missing)
    from pimphony.rtl.build import write_verilog
    from pimphony.verification.runner import run

    source = write_verilog("dcs", tmp_path / "rtl", testbench=True)
    run(sim, source, "dcs_queue", "pimphony.verification.tests.tb_dcs", tmp_path / "sim", waves=True, quiet=True,
        extra_env={"PIMPHONY_SEED": "1"}, testcase=["gemv_every_policy"])
    [wave] = (tmp_path / "sim" / sim / "dcs_queue").glob(dump)
    if sim == "verilator":
        assert "dtable_gbuf_scrub" in wave.read_text(errors="replace")[:2_000_000]
    else:
        assert wave.stat().st_size > 10_000
