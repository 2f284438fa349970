"""Regression suites: the files are valid, and the quick suite passes on Icarus and Verilator."""

import re

import pytest

from pimphony.cli.main import main
from pimphony.verification.regress import SuiteError, load_suite, select_blocks, suite_names
from pimphony.verification.runner import SIMULATORS, SUITES, available
from pimphony.verification.runner import testcases as block_testcases


def test_every_suite_loads_and_smoke_covers_every_testbench():
    assert {"quick", "smoke", "full", "stress"} <= set(suite_names())
    for name in suite_names():
        assert load_suite(name)
    assert {r.block for r in load_suite("smoke")} == set(SUITES) == {r.block for r in load_suite("quick")}
    assert [r.seed for r in load_suite("full", seed=7)] == [7] * len(load_suite("full", seed=7))


def test_bad_suites_name_the_problem(tmp_path, monkeypatch):
    import pimphony.verification.regress as regress

    monkeypatch.setattr(regress, "SUITE_DIR", tmp_path)
    (tmp_path / "bad.yaml").write_text("runs:\n  - {block: nope}\n")
    with pytest.raises(SuiteError, match=r"bad\.yaml: runs\[0\]: block must be one of"):
        load_suite("bad")
    with pytest.raises(SuiteError, match="no suite 'missing'; choose one of bad"):
        load_suite("missing")


QUICK = {"icarus": (("dcs", "dpa"), []), "verilator": (("dcs",), ["--waves"])}
"""What ``make test`` runs of the quick suite on each simulator: the DCS queue's and the DPA controller's
testcases on Icarus; on Verilator the DCS queue's from a traced build (one Verilator build of ~1 min
cold, where the three blocks take ~3.5 min). The hub's cocotb bench runs in ``make test`` through
``tests/test_run.py`` (a small main job through a 4-channel hub on Icarus); its MHA workload with
back-pressure (~25 s with its build) in ``pimphony regress --suite quick``, which runs all three blocks
on either simulator, and ``pimphony run`` the 16-channel hub."""


def _quick_cases(block: str) -> int:
    """Testcases the quick suite runs (and passes) of ``block``: those it names, else every one but the
    stress test (skipped outside a stress suite)."""
    run = next(r for r in load_suite("quick") if r.block == block)
    return len(run.tests) if run.tests else len([t for t in block_testcases(block) if t != "stress"])


@pytest.mark.long(75)
@pytest.mark.parametrize("sim", SIMULATORS)
def test_quick_suite_passes(sim, tmp_path, capsys):
    """The quick suite on Icarus; its DCS part on Verilator, traced, with the queue's insides in the VCD."""
    missing = available(sim)
    if missing:
        pytest.skip(missing)
    blocks, extra = QUICK[sim]
    selection = [arg for block in blocks for arg in ("--block", block)]
    code = main(["regress", "--suite", "quick", "--sim", sim, "--out", str(tmp_path), *selection, *extra])
    text = capsys.readouterr().out
    assert code == 0, text
    total = sum(_quick_cases(b) for b in blocks)
    assert f"{total}/{total} passed" in text and (tmp_path / f"quick-{sim}.xml").is_file()
    coverage = {line.split()[0]: line.split()[1] for line in text.splitlines() if line.startswith("  d")}
    assert coverage["dcs.hazard"] == "14/14", text
    assert coverage["dpa.response"] == ("26/26" if "dpa" in blocks else "0/26"), text
    assert (tmp_path / f"quick-{sim}-coverage.yml").is_file()
    if "--waves" in extra:
        [wave] = (tmp_path / "waves" / "sim" / sim / "dcs_queue").glob("*.vcd")
        header = wave.read_text(errors="replace")[:2_000_000]
        assert re.search(r"\$scope module dtable_gbuf \$end(?:(?!\$upscope).)*? scrub_ptr ", header, re.S)


def test_waves_hold_the_design_inside(tmp_path):
    """A traced Icarus run writes an FST waveform (Verilator's VCD: :func:`test_quick_suite_passes`)."""
    missing = available("icarus")
    if missing:
        pytest.skip(missing)
    from pimphony.rtl.build import write_block_verilog
    from pimphony.verification.runner import run

    source = write_block_verilog("dcs", tmp_path / "rtl")
    run("icarus", source, "dcs_queue", "pimphony.verification.tests.tb_dcs", tmp_path / "sim", waves=True,
        quiet=True, extra_env={"PIMPHONY_SEED": "1"}, testcase=["gemv_every_policy"])
    [wave] = (tmp_path / "sim" / "icarus" / "dcs_queue").glob("*.fst")
    assert wave.stat().st_size > 10_000


def test_stress_suite_reaches_ten_million_cycles_and_replays_from_its_seed():
    runs = load_suite("stress", random_seed=11)
    assert sum(r.cycles for r in runs) >= 10_000_000 and {r.block for r in runs} == set(SUITES)
    assert all(r.tests == ("stress",) for r in runs)
    assert load_suite("stress", random_seed=11) == runs != load_suite("stress", random_seed=12)
    assert load_suite("stress", seed=11) == runs                 # --seed S replays suite seed S


TINY = """name: tiny-stress
runs:
  - {block: dcs, seeds: random, count: 1, tests: [stress], cycles: 3000}
  - {block: dpa, seeds: random, count: 1, tests: [stress], cycles: 3000}
"""


@pytest.mark.long(40)
def test_stress_counts_replays_and_runs_on_dask(tmp_path, capsys):
    """A short stress suite on a local Dask cluster (two worker processes), then again locally from the
    printed seed: every counter equal, nothing lost, duplicated, illegal or leaked, resets at least one
    per 50 K cycles."""
    missing = available("icarus")
    if missing:
        pytest.skip(missing)
    from distributed import LocalCluster

    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        code = main(["regress", "--suite", str(suite), "--sim", "icarus", "--seed", "3", "--out",
                     str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address])
    on_dask = capsys.readouterr().out
    assert code == 0, on_dask
    code = main(["regress", "--suite", str(suite), "--sim", "icarus", "--seed", "3", "--out", str(tmp_path / "local")])
    local = capsys.readouterr().out
    assert code == 0, local
    counters = [line for line in on_dask.splitlines() if line.strip().startswith("stress counters:")]
    assert counters and counters == [line for line in local.splitlines() if line.strip().startswith("stress counters:")]
    values = dict(item.rsplit(" ", 1) for item in counters[0].split(":", 1)[1].split(", "))
    values = {k.strip(): int(v.replace(",", "")) for k, v in values.items()}
    assert values["cycles"] >= 6_000 and values["commands"] > 0 and values["responses"] > 0
    assert values["resets"] >= values["cycles"] // 50_000 + 1
    assert values["lost"] == values["duplicated"] == values["illegal"] == values["leaked"] == 0


def test_block_selection_keeps_the_suite_seeds_and_names_a_missing_block():
    whole = load_suite("full", random_seed=5)
    picked = select_blocks(whole, ["dpa"], "full")
    assert picked == [r for r in whole if r.block == "dpa"] and picked
    assert select_blocks(whole, None, "full") == whole
    tiny = [r for r in whole if r.block == "dcs"]
    with pytest.raises(SuiteError, match="suite 'tiny' has no run of block hub; its blocks: dcs"):
        select_blocks(tiny, ["hub", "dcs"], "tiny")


def test_readme_states_each_block_suites_size():
    """The README's suite sizes are the suites' (they drifted once: '4 tests' for five)."""
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for block, name in (("dcs", "DcsQueue"), ("dpa", "DpaController")):
        assert f"cocotb block suite of `{name}` ({len(block_testcases(block))} tests)" in readme
