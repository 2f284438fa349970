"""The mutation check: the catalogue applies to the current RTL, a mutant changes the generated
Verilog and nothing else, and one mutant goes through the smoke suite and is caught."""

import subprocess
import sys
from pathlib import Path

import pytest

from pimphony.cli.main import main
from pimphony.model.config import DEFAULT_TIMING, TimingPreset
from pimphony.model.isa import Opcode
from pimphony.model.timing import rules
from pimphony.verification.mutation import CATALOGUE, MODULES, Mutant, MutationError, mutant, run_mutants, source_of
from pimphony.verification.runner import available


def test_catalogue_has_at_least_thirty_realistic_faults_over_every_block():
    assert len(CATALOGUE) >= 30
    assert {m.block for m in CATALOGUE} == set(MODULES)
    assert len({m.name for m in CATALOGUE}) == len(CATALOGUE)


def test_readme_states_the_catalogue_size():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"mutation check that injects {len(CATALOGUE)} realistic RTL faults" in readme
    assert f"**{len(CATALOGUE)}/{len(CATALOGUE)} mutants caught**" in readme


@pytest.mark.parametrize("m", CATALOGUE, ids=lambda m: m.name)
def test_every_mutant_applies_once_and_compiles(m):
    path, text = source_of(m)
    assert m.mutated in text and m.original != m.mutated
    compile(text, path, "exec")


def test_stale_mutant_is_an_error_naming_the_snippet():
    stale = Mutant("stale", "dcs", "gone", "this text is not in the source", "x")
    with pytest.raises(MutationError, match=r"occurs 0 times in .*dcs\.py \(must be once\)"):
        source_of(stale)
    with pytest.raises(MutationError, match="no mutant 'nope'; choose from timing-gap-short"):
        mutant("nope")


def test_mutated_verilog_differs_and_the_shipped_rtl_does_not_change(tmp_path):
    """In a fresh process the mutant's block is built from the faulty source; this process's RTL is intact."""
    script = ("import sys; from pimphony.verification.mutation import apply, mutant; "
              "apply(mutant('queue-overflow')); from pimphony.rtl.build import write_verilog; "
              "write_verilog('dcs', __import__('pathlib').Path(sys.argv[1]))")
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "bad")], check=True)
    from pimphony.rtl.build import write_verilog

    good = write_verilog("dcs", tmp_path / "good").read_text()
    bad = (tmp_path / "bad" / "dcs_queue.v").read_text()
    assert good != bad and len(good.splitlines()) == pytest.approx(len(bad.splitlines()), rel=0.01)


def test_cli_lists_the_catalogue(capsys):
    assert main(["mutate", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(m.name in out for m in CATALOGUE)


@pytest.mark.long(15)
@pytest.mark.skipif(available("icarus") is not None, reason="Icarus Verilog not installed")
def test_a_dropped_command_is_caught_by_the_smoke_suite(tmp_path):
    [result] = run_mutants(["drop-under-backpressure"], "icarus", tmp_path, methods=("sim",))
    assert result.caught, result
    assert result.by_sim == "tb_dcs seed 1" and result.by_proof == "-"


def test_a_short_row_gap_is_caught_by_the_timing_proof(tmp_path):
    """The DCS queue built with its row-command counters one cycle short breaks a named row rule of the
    timing group (at the quick depth of make test, in a fresh process with the mutant applied;
    ``pimphony mutate`` runs every group at its full depth)."""
    script = ("import sys; from pimphony.verification.mutation import apply, mutant; "
              "apply(mutant('row-gap-short')); from pimphony.cli.main import main; "
              "sys.exit(main(['prove', 'dcs', '--group', 'timing', '--depth', '10', '--out', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = proc.stdout.split("fails: ", 1)[1].splitlines()[0]
    names = {item.split(" at step")[0] for item in failed.split(", ")}
    row_rules = {f"timing.{r.name}" for r in rules(TimingPreset.load(DEFAULT_TIMING))
                 if set(r.next) & {Opcode.ACT, Opcode.PRE, Opcode.REF}}
    assert names and names <= row_rules, proc.stdout


@pytest.mark.long(20)
def test_a_lost_error_check_is_caught_by_the_status_proof(tmp_path):
    """The DPA controller built without its DUPLICATE_REQUEST check answers a second OPEN of the same id with
    OK; the harness's reference expects DUPLICATE_REQUEST (the status group at a quick depth, in a fresh
    process with the mutant applied)."""
    script = ("import sys; from pimphony.verification.mutation import apply, mutant; "
              "apply(mutant('duplicate-open-accepted')); from pimphony.cli.main import main; "
              "sys.exit(main(['prove', 'dpa', '--group', 'status', '--depth', '28', '--out', sys.argv[1]]))")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "fails: status.status-as-specified at step" in proc.stdout
