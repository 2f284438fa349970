"""Issue policies: legality, true dependencies only, queue order, and results equal to program order."""

import numpy as np
import pytest
from helpers import model
from hypothesis import given, settings
from hypothesis import strategies as st

from pimphony.model.channel import ChannelArray
from pimphony.model.config import ModelConfig, ModuleOrg, TimingPreset
from pimphony.model.isa import COMMAND_DTYPE, IO_OPCODES, Command, Opcode, to_commands
from pimphony.model.numerics import bf16_bits
from pimphony.model.perf.channel import CATEGORIES, run_channel
from pimphony.model.policies import dependencies, issue_cycles, issuer
from pimphony.model.queue import Policy, QueueConfig
from pimphony.model.timing import blocking_table, latencies, latency_table
from pimphony.scheduler.lower import AttentionLowering, command_streams
from pimphony.scheduler.partition import make_partition

ORG = ModuleOrg.load("aimx-16ch")
AIM = TimingPreset.load("aim-gddr6")
LAT = latencies(AIM)


def attention_stream(m: ModelConfig, policy: Policy, length: int = 3000, channel: int = 0):
    cfg = QueueConfig.for_org(ORG, policy)
    part = make_partition("tcp", ORG, m.head_dim)
    prog = AttentionLowering(part, m.group, cfg.obuf_entries).lower(part.place(np.array([length]), m.kv_heads))[0]
    return command_streams(prog, ORG.channels)[channel], cfg


def random_stream(draw_ops, seed: int, gbuf: int, obuf: int) -> np.ndarray:
    """A well-formed stream: chains WR_BIAS, (WR_INP, MAC)*, RD_OUT on random entries, rows around them."""
    rng = np.random.default_rng(seed)
    cmds = [Command(Opcode.ACT, row=3)]
    for _ in range(draw_ops):
        e = int(rng.integers(0, obuf))
        cmds.append(Command(Opcode.WR_BIAS, obuf=e))
        for _ in range(int(rng.integers(1, 6))):
            g = int(rng.integers(0, gbuf))
            if rng.random() < 0.7:
                cmds.append(Command(Opcode.WR_INP, gbuf=g, gpr=len(cmds)))
            cmds.append(Command(Opcode.MAC, row=3, col=int(rng.integers(0, 64)), gbuf=g, obuf=e))
        cmds.append(Command(Opcode.RD_OUT, obuf=e, gpr=len(cmds)))
    cmds.append(Command(Opcode.PRE))
    out = np.zeros(len(cmds), dtype=COMMAND_DTYPE)
    for i, c in enumerate(cmds):
        out[i] = (int(c.op), c.row, c.col, c.gbuf, c.obuf, c.gpr)
    return out


def check_guarantees(stream: np.ndarray, cfg: QueueConfig):
    ops, g, o = stream["op"].astype(np.int64), stream["gbuf"].astype(np.int64), stream["obuf"].astype(np.int64)
    res = issue_cycles(ops, g, o, AIM, cfg)
    t = res.cycles
    assert (t >= 1).all() and len(np.unique(t)) == len(t)                    # one command per cycle
    lat = latency_table(AIM)
    if cfg.policy == Policy.STATIC:
        block = blocking_table(AIM)
        assert (np.diff(t) >= block[ops[:-1]]).all()                         # in order, each after completion
        rd = np.nonzero(ops[:-1] == Opcode.RD_OUT)[0]
        assert (t[rd + 1] - t[rd] >= AIM.nRDHUB).all()                       # a RD-OUT blocks until at the HUB
    else:
        for q in (np.isin(ops, list(IO_OPCODES)), ~np.isin(ops, list(IO_OPCODES))):
            assert (np.diff(t[q]) > 0).all()                                 # in order inside each queue
        dg, do = dependencies(ops, g, o, QueueConfig(policy=Policy.DCS, gbuf_entries=cfg.gbuf_entries,
                                                     obuf_entries=cfg.obuf_entries))
        for dep in (dg, do):
            has = dep >= 0
            assert (t[has] >= t[dep[has]] + lat[ops[dep[has]]]).all()       # every true hazard respected
    trace = run_channel(stream, AIM, issuer(cfg))
    assert trace.violations == []
    assert sum(trace.breakdown.values()) == trace.total_cycles
    return res


def execute(stream: np.ndarray, order: np.ndarray) -> dict[int, np.ndarray]:
    """Run the commands in ``order`` on a golden channel; WR data are a function of the command index."""
    chans = ChannelArray(ORG)
    rng = np.random.default_rng(0)
    chans.write_rows(np.array([0]), 3, bf16_bits(rng.standard_normal((1, 1, ORG.banks, ORG.columns))))
    view = chans.channel(0)
    out = {}
    for i in order.tolist():
        cmd = to_commands(stream[i:i + 1])[0]
        data = np.sin(np.arange(16) + i) if cmd.op in (Opcode.WR_INP, Opcode.WR_BIAS) else None
        if cmd.op == Opcode.WR_BIAS:
            data = np.zeros(16)
        r = view.execute(cmd, data)
        if r is not None:
            out[i] = r
    return out


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(list(Policy)), st.integers(1, 16), st.integers(1, 16))
def test_random_streams_keep_every_guarantee_and_compute_the_same(seed, policy, io_depth, compute_depth):
    cfg = QueueConfig(policy=policy, io_depth=io_depth, compute_depth=compute_depth, gbuf_entries=8,
                      obuf_entries=4 if policy != Policy.STATIC else 2)
    stream = random_stream(12, seed, cfg.gbuf_entries, cfg.obuf_entries)
    res = check_guarantees(stream, cfg)
    issued, program = execute(stream, np.argsort(res.cycles, kind="stable")), execute(stream, np.arange(len(stream)))
    assert issued.keys() == program.keys()
    for k in program:
        assert np.array_equal(issued[k], program[k])


@pytest.mark.parametrize("policy", list(Policy))
@pytest.mark.parametrize("name", ["qwen1.5-7b", "llama-3.1-8b"])
def test_attention_streams_are_legal(policy, name):
    stream, cfg = attention_stream(ModelConfig.load(name), policy)
    check_guarantees(stream, cfg)


def test_dcs_beats_ping_pong_beats_static_on_gqa():
    m = ModelConfig.load("llama-3.1-70b")
    util = {}
    for policy in Policy:
        stream, cfg = attention_stream(m, policy, length=8192)
        util[policy] = run_channel(stream, AIM, issuer(cfg)).mac_utilisation
    assert util[Policy.DCS] > util[Policy.PINGPONG] > util[Policy.STATIC]
    assert util[Policy.DCS] / util[Policy.PINGPONG] > 1.3


def test_refresh_is_inserted_every_nrefi():
    stream, cfg = attention_stream(model(8, 1, 128), Policy.DCS, length=20000)
    trace = run_channel(stream, AIM, issuer(cfg))
    assert trace.violations == []
    expected = trace.total_cycles // AIM.nREFI
    assert expected - 1 <= len(trace.refresh) <= expected
    assert trace.breakdown["REF"] >= len(trace.refresh) * AIM.nRFC * 0.9


def test_queue_config_errors():
    with pytest.raises(ValueError, match=r"io_depth must be at least 1, got 0"):
        QueueConfig(io_depth=0)
    with pytest.raises(ValueError, match=r"ping-pong needs at least 2 GBuf and 2 OBuf entries"):
        QueueConfig(policy=Policy.PINGPONG, obuf_entries=1)
    stream = random_stream(2, 0, 8, 4)
    with pytest.raises(ValueError, match=r"an OBuf index lies outside 0..1"):
        issue_cycles(stream["op"], stream["gbuf"], stream["obuf"], AIM, QueueConfig(obuf_entries=2))


def test_breakdown_categories():
    stream, cfg = attention_stream(ModelConfig.load("llama-3.1-8b"), Policy.STATIC)
    trace = run_channel(stream, AIM, issuer(cfg))
    assert set(trace.breakdown) == set(CATEGORIES)
    assert trace.breakdown["MAC"] == trace.mac_busy


@pytest.mark.parametrize("policy", list(Policy))
def test_compiled_engine_equals_the_python_reference(policy, monkeypatch):
    import pimphony.model.policies as pol

    stream, cfg = attention_stream(ModelConfig.load("llama-3.1-8b"), policy, length=1500)
    args = (stream["op"], stream["gbuf"], stream["obuf"], AIM, cfg)
    assert hasattr(pol._engine, "py_func")                     # the numba dispatcher, not the Python function
    compiled = issue_cycles(*args)
    monkeypatch.setattr(pol, "_engine", pol._engine_py)
    monkeypatch.setattr(pol, "_last_accessor", pol._last_accessor_py)
    reference = issue_cycles(*args)
    assert (compiled.cycles == reference.cycles).all() and (compiled.refresh == reference.refresh).all()
