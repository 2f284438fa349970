"""Formal checks of the DCS queue and the DPA controller (SymbiYosys): the quick bounded proofs, a broken rule's
counterexample that names the rule, the property names in a trace, the golden replay of the DPA traces, and the
CLI."""

import dataclasses

import pytest
from amaranth.hdl import Fragment

from pimphony.cli.main import main
from pimphony.model.config import TimingPreset
from pimphony.model.dpa import DpaOp
from pimphony.model.kvcache import Status
from pimphony.model.timing import rules
from pimphony.verification.formal.configs import formal_dpa, formal_timing
from pimphony.verification.formal.sby import ProofTask, failed_properties, read_trace, run_task
from pimphony.verification.formal.tasks import BASE_TIMING, DCS_TASKS, DPA_TASKS, dcs_harness, dpa_harness, harness_for

QUICK = {("dcs", "timing"): 10, ("dcs", "handshake"): 8, ("dcs", "idle"): 8, ("dcs", "refresh"): 14,
         ("dpa", "status"): 16, ("dpa", "protocol"): 14}
"""Blocks, groups and depths of the quick proofs in make test (the full depths run in `pimphony prove`)."""


def test_every_rule_of_the_table_is_a_named_property():
    harness = dcs_harness(["timing"])
    from amaranth.back import rtlil

    rtlil.convert(harness, ports=harness.inputs())
    names = {name for group, name in harness.properties.asserted if group == "timing"}
    table = rules(formal_timing(TimingPreset.load(BASE_TIMING)), obuf_dual_port=True)
    assert {r.name for r in table} <= names
    assert {g for g, _ in harness.properties.asserted} == {"timing"}


def test_the_formal_preset_keeps_every_rule_and_its_order():
    base = TimingPreset.load(BASE_TIMING)
    small = formal_timing(base)
    assert small.nRC >= small.nRAS + small.nRP and small.nRDHUB >= small.nCLREG + small.nBL
    gaps = {r.name: r.gap for r in rules(small, True)}
    assert max(gaps.values()) == gaps["REF-ACT"] < small.nREFI
    assert [r.name for r in rules(small, True)] == [r.name for r in rules(base, True)]


@pytest.mark.long(10)
@pytest.mark.parametrize(("block", "group"), sorted(QUICK), ids=[f"{b}-{g}" for b, g in sorted(QUICK)])
def test_quick_bounded_proof(block, group, tmp_path):
    task = ProofTask(block, group, "bmc", QUICK[block, group])
    result = run_task(task, harness_for(task), tmp_path)
    assert result.ok, (result.status, result.failed, result.detail)


def test_a_broken_rule_gives_a_counterexample_naming_it(tmp_path):
    """The block built from a copy of the table whose nRC (3 cycles in the proofs' preset: the ACT -> ACT
    and ACT -> REF gaps) is 0 opens rows or refreshes two cycles after an ACT (the compute queue issues
    at most every other cycle, so only a rule longer than two cycles between one queue's commands can be
    broken); the monitor checks the shipped table, and the trace names a rule whose gap is nRC."""
    base = TimingPreset.load(BASE_TIMING)
    broken = dataclasses.replace(base, nRC=0)
    task = ProofTask("dcs", "timing", "bmc", 10)
    result = run_task(task, dcs_harness(["timing"], dut_timing=broken), tmp_path)
    assert result.status == "FAIL"
    from_nrc = {f"timing.{r.name}" for r in rules(formal_timing(base), obuf_dual_port=True) if r.param == "nRC"}
    assert result.failed and set(result.failed) <= from_nrc, (result.failed, from_nrc)
    assert result.trace is not None and result.trace.is_file() and result.step is not None


def test_failed_properties_reads_the_last_step(tmp_path):
    vcd = tmp_path / "t.vcd"
    vcd.write_text("$scope module top $end\n$var wire 1 ! timing__PRE_ACT $end\n$var wire 1 \" order__x $end\n"
                   "$var wire 4 # since $end\n$upscope $end\n$enddefinitions $end\n"
                   "#0\n1!\n1\"\nb0001 #\n#10\n0!\n#20\n1!\n0\"\n")
    assert failed_properties(vcd, {"timing__PRE_ACT", "order__x"}) == ["order__x"]
    vcd.write_text("$scope module top $end\n$var wire 1 n1 timing__ACT_PRE $end\n$upscope $end\n"
                   "#0\nb1 n1\n#10\nb0 n1\nb0 n2\n")
    assert failed_properties(vcd, {"timing__ACT_PRE"}) == ["timing__ACT_PRE"]


def test_catalogue_depths_cover_the_longest_rule_gap():
    longest = max(r.gap for r in rules(formal_timing(TimingPreset.load(BASE_TIMING)), True))
    assert all(t.depth > longest for t in DCS_TASKS)
    rebuild = formal_dpa().n_chunks
    assert all(t.depth > 2 * rebuild for t in DPA_TASKS)


def test_cli_runs_a_group_in_a_relative_folder(tmp_path, monkeypatch, capsys):
    """The work folder is given relative to the current folder, as a user types it (SymbiYosys runs inside it)."""
    monkeypatch.chdir(tmp_path)
    assert main(["prove", "dcs", "--group", "handshake", "--depth", "6", "--out", "build/prove"]) == 0
    out = capsys.readouterr().out
    assert "dcs   handshake    bmc        6 pass" in out and "1/1 tasks passed" in out


def test_cli_lists_the_catalogue_and_refuses_an_unknown_group(capsys):
    assert main(["prove", "--list"]) == 0
    out = capsys.readouterr().out
    assert all(t.group in out for t in DCS_TASKS) and "cover" in out
    assert main(["prove", "dcs", "--group", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--group nope: no such property group; choose from handshake, hazards, idle, order, progress, " in err


def test_read_trace_keeps_the_witness_steps(tmp_path):
    """A SymbiYosys trace writes the state after its last step as one more step; the witness file says
    how many steps the trace has."""
    vcd = tmp_path / "trace0.vcd"
    vcd.write_text("$var integer 32 t smt_step $end\n$scope module top $end\n$var wire 1 n1 run__x $end\n"
                   "$upscope $end\n#0\nb0 t\nb0 n1\n#5\n#10\nb1 t\nb1 n1\n#15\n#20\nb10 t\nb0 n1\n")
    assert [s["run__x"] for s in read_trace(vcd, {"run__x"})] == [0, 1, 0]
    (tmp_path / "trace0.yw").write_text('{"steps": [{}, {}]}')
    assert [s["run__x"] for s in read_trace(vcd, {"run__x"})] == [0, 1]


def _steps(*events):
    """Port values of the DPA harness, one step per event: ("op", payload), ("resp", payload) or ("rst",)."""
    idle = {"rst": 0, "mgmt__valid": 0, "mgmt__ready": 1, "mgmt__payload": 0, "resp__valid": 0, "resp__ready": 1,
            "resp__payload": 0, "ins_out__valid": 0, "ins_out__ready": 1, "ins_out__payload": 0}
    out = []
    for kind, *payload in events:
        step = dict(idle)
        if kind == "rst":
            step["rst"] = 1
        else:
            prefix = "mgmt" if kind == "op" else "resp"
            step.update({f"{prefix}__valid": 1, f"{prefix}__payload": payload[0]})
        out.append(step)
    return out


def test_the_replay_compares_every_answer_with_the_golden_model():
    """OPEN of one token takes a K and a V chunk per segment: the golden model answers OK with the pool
    less 2 x segments; a response that reports one chunk more free is named with its step."""
    harness = dpa_harness(covers_only=True)
    Fragment.get(harness, None)                    # built, as in a cover task
    dut, config = harness.dut, formal_dpa()
    opened = dut.req_layout.const({"op": DpaOp.OPEN, "request": 1, "arg": 1}).as_bits()
    left = config.n_chunks - 2 * config.segments

    def answer(free):
        return dut.resp_layout.const({"status": Status.OK, "free": free}).as_bits()

    assert harness.replay(_steps(("op", opened), ("resp", answer(left)))) == []
    assert harness.replay(_steps(("op", opened), ("resp", answer(left + 1)))) == [
        f"step 1: response ({Status.OK!r}, 0, 0, {left + 1}), golden ({Status.OK!r}, 0, 0, {left})"]
    assert harness.replay(_steps(("op", opened), ("rst",), ("resp", answer(left)))) == [
        f"step 2: response ({Status.OK!r}, 0, 0, {left}), golden None"]
