# amaranth: UnusedElaboratable=no
"""PimHub RTL (DPA controller -> sequencer/multicast -> DCS queues) in amaranth.sim, 4 channels."""

import dataclasses

import pytest
from helpers import model

from pimphony.model.config import TimingPreset
from pimphony.model.dpa import DpaControllerModel, DpaOp, DpaOperation, load_program
from pimphony.model.isa import Format, to_commands, unroll
from pimphony.model.queue import Policy, QueueConfig
from pimphony.model.timing import check_trace
from pimphony.rtl.hub import PimHub
from pimphony.scheduler.dpa import head_program
from pimphony.verification import configs
from pimphony.verification.configs import hub_testbench_config
from pimphony.verification.env.hub import AttentionOnHub
from pimphony.verification.sim import simulate_hub

CONFIG = hub_testbench_config()
ORG4 = CONFIG.org
AIM = TimingPreset.load("aim-gddr6")
FMT = Format.for_org(ORG4)


def workload() -> list[DpaOperation]:
    """GQA (g = 2) heads of two requests of odd lengths, one decode step (APPEND) between two RUNs."""
    program = head_program(ORG4, 2, 64)
    return [*load_program(program, FMT), DpaOperation(DpaOp.OPEN, 1, arg=1500), DpaOperation(DpaOp.OPEN, 2, arg=37),
            DpaOperation(DpaOp.RUN, 1, segment=1), DpaOperation(DpaOp.RUN, 2), DpaOperation(DpaOp.APPEND, 2, arg=1),
            DpaOperation(DpaOp.RUN, 2, segment=1), DpaOperation(DpaOp.CLOSE, 1), DpaOperation(DpaOp.CLOSE, 2)]


def golden_streams(ops) -> tuple[list[list], list[list[bool]]]:
    """Per channel, the golden commands in program order and whether each belongs to an SV phase."""
    gold = DpaControllerModel(CONFIG)
    cmds: list[list] = [[] for _ in range(ORG4.channels)]
    sv_flags: list[list[bool]] = [[] for _ in range(ORG4.channels)]
    for op in ops:
        _, emitted = gold.step(op)
        for ins, sv in emitted:
            for ch, stream in unroll(ins).items():
                got = to_commands(stream)
                cmds[ch] += got
                sv_flags[ch] += [sv] * len(got)
    return cmds, sv_flags


@pytest.fixture
def runs(once):
    """``runs(*policies)``: the workload's operations and the hub simulated under each policy, every policy
    simulated once per test run (~13 s each) whichever workers need it."""

    def simulate(policy: Policy):
        cfg = dataclasses.replace(QueueConfig.rtl_default(ORG4), policy=policy)
        return simulate_hub(PimHub(CONFIG, AIM, cfg), workload(), policy, epu_cycles=3)

    def get(*policies: Policy):
        return workload(), {p: once(f"hub-run-{p.name}", lambda p=p: simulate(p)) for p in policies}

    return get


SLOW = pytest.mark.slow
"""The hub's amaranth.sim runs under static and ping-pong issue (~15-20 s each): ``make test`` simulates the
hub under DCS; the cocotb hub bench runs GQA attention under every policy in ``pimphony regress --suite
smoke`` and ``full`` on both simulators, with its own checks: every output against the golden model,
every command legal on its channel, DCS < ping-pong <= static."""


@pytest.mark.long(15)
@pytest.mark.parametrize("policy", [p if p is Policy.DCS else pytest.param(p, marks=SLOW) for p in Policy])
def test_every_channel_issues_the_golden_commands_legally(runs, policy):
    ops, results = runs(policy)
    res = results[policy]
    assert [r.status.name for r in res.responses[-7:]] == ["OK"] * 7
    want, _ = golden_streams(ops)
    cfg = QueueConfig.rtl_default(ORG4)
    for ch in range(ORG4.channels):
        issued = [(seq, cmd) for _, seq, cmd, refresh in res.issued[ch] if not refresh]
        assert [cmd for _, cmd in sorted(issued, key=lambda x: x[0])] == want[ch], f"channel {ch}"
        trace = res.issued[ch]
        errors = check_trace([int(cmd.op) for _, _, cmd, _ in trace], [cyc for cyc, _, _, _ in trace], AIM,
                             cfg.obuf_dual_port)
        assert not errors, errors[:5]


def test_phases_are_separated_by_drained_barriers(runs):
    """No command of a phase issues before the barrier that ends the previous phase."""
    ops, results = runs(Policy.DCS)
    res = results[Policy.DCS]
    _, sv_flags = golden_streams(ops)
    assert len(res.syncs) >= 3
    for ch in range(ORG4.channels):
        cycles = [cyc for _, cyc in sorted((seq, cyc) for cyc, seq, _, refresh in res.issued[ch] if not refresh)]
        phases = sv_flags[ch]
        for cyc, sv, prev_cyc, prev_sv in zip(cycles[1:], phases[1:], cycles, phases, strict=False):
            if sv != prev_sv:
                assert any(prev_cyc < s < cyc for s, _ in res.syncs), f"channel {ch}: phase change at {cyc}"


@SLOW
def test_dcs_is_faster_than_static_on_the_same_workload(runs):
    _, results = runs(*Policy)
    cycles = {p: r.cycles for p, r in results.items()}
    assert cycles[Policy.DCS] < cycles[Policy.PINGPONG] <= cycles[Policy.STATIC], cycles



@pytest.mark.long(30)
@pytest.mark.parametrize(("heads", "kv_heads", "policy"),
                         [pytest.param(4, 2, Policy.DCS, id="gqa-dcs"),
                          pytest.param(2, 2, Policy.STATIC, id="mha-static", marks=SLOW)])
def test_decode_attention_through_the_hub_matches_the_reference(heads, kv_heads, policy):
    """Two requests (odd lengths), two decode steps with an APPEND between them: golden channels execute
    every command the RTL issues, in issue order, with data; the EPU runs at the barriers; every
    output of every step equals, bit for bit, the golden model's in-order execution of the golden DPA
    controller's instructions and lies within the derived error bound of the float64 reference. GQA under
    DCS, MHA under static issue (both policies on one workload: :func:`test_dcs_is_faster_than_static_on_the_same_workload`
    and ``tests/test_run.py``)."""
    work = AttentionOnHub(model(heads, kv_heads, 64), CONFIG, [300, 1029], steps=1, seed=3)
    cfg = dataclasses.replace(QueueConfig.rtl_default(ORG4), policy=policy)
    res = simulate_hub(PimHub(CONFIG, AIM, cfg), work.operations(), policy, epu_cycles=2, hooks=work)
    assert not work.errors, work.errors[:3]
    assert all(r.status.name == "OK" for r in res.responses)
    assert work.mismatches() == 0
    ratios = work.error_ratios()
    assert len(ratios) == 2 and max(ratios) <= 1.0, ratios


def test_hub_verilog_holds_one_queue_module_for_every_channel(tmp_path):
    """The queue is converted once and instantiated per channel (Verilator then builds it once, as a
    hierarchical block)."""
    from pimphony.rtl.build import write_block_verilog, write_verilog
    from pimphony.verification.runner import hierarchical_blocks, repeated_modules

    text = write_block_verilog("hub", tmp_path, **configs.testbench_options("hub")).read_text()
    assert text.count("\nmodule pim_hub_queue(") == 1
    assert [f"queue{c}" for c in range(4)] == sorted(
        line.split()[1] for line in text.splitlines() if line.startswith("  pim_hub_queue "))
    assert text.count("\nmodule \\pim_hub.dpa ") == 1 and text.count("\nmodule \\pim_hub.sequencer ") == 1
    assert repeated_modules(text) == ["pim_hub_queue"]
    control = hierarchical_blocks(tmp_path / "pim_hub.v", tmp_path / "hier.vlt")
    assert control.read_text() == '`verilator_config\nhier_block -module "pim_hub_queue"\n'
    assert hierarchical_blocks(write_verilog("dcs", tmp_path / "dcs"), tmp_path / "none.vlt") is None
