# amaranth: UnusedElaboratable=no
"""DcsQueue RTL against the reference engine, cycle for cycle, in amaranth.sim."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimphony.model.config import ModuleOrg, TimingPreset
from pimphony.model.isa import CHANNEL_OPCODES, COMMAND_DTYPE, IO_OPCODES, Command, Format, Opcode, from_commands
from pimphony.model.policies import issue_cycles
from pimphony.model.queue import Policy, QueueConfig
from pimphony.model.timing import check_trace
from pimphony.rtl.dcs import DcsQueue, table_bytes
from pimphony.rtl.layouts import OpcodeShape, command_layout
from pimphony.scheduler.dcs_experiments import attention_program
from pimphony.scheduler.lower import command_streams
from pimphony.verification.sim import simulate_queue

ORG = ModuleOrg.load("aimx-16ch")
AIM = TimingPreset.load("aim-gddr6")
FMT = Format.for_org(ORG)


def config(policy: Policy, dual_port: bool = True, **depths: int) -> QueueConfig:
    """The shipped queue (default depths) on this module's buffers, running ``policy``."""
    return QueueConfig(policy=policy, gbuf_entries=ORG.gbuf_entries, obuf_entries=ORG.obuf_entries,
                       obuf_dual_port=dual_port, **depths)


def assert_cycle_exact(stream: np.ndarray, cfg: QueueConfig):
    rtl = simulate_queue(DcsQueue(FMT, AIM, cfg), stream, cfg.policy)
    ref = issue_cycles(stream["op"], stream["gbuf"], stream["obuf"], AIM, cfg)
    got = [(c, s) for c, s, r in zip(rtl.cycles, rtl.seqs, rtl.refresh, strict=True) if not r]
    want = sorted((int(c), i % (1 << 16)) for i, c in enumerate(ref.cycles))
    assert got == want
    assert [c for c, r in zip(rtl.cycles, rtl.refresh, strict=True) if r] == ref.refresh.tolist()
    return rtl


@pytest.mark.long(15)
@pytest.mark.parametrize("policy", list(Policy))
def test_attention_stream_cycle_exact_with_refresh(policy):
    cfg = config(policy)
    stream = command_streams(attention_program(ORG, 4, 9000, cfg.obuf_entries), ORG.channels)[0]
    rtl = assert_cycle_exact(stream, cfg)
    assert rtl.counters["refreshes"] >= 1                                       # crosses nREFI
    for op in list(Opcode)[:CHANNEL_OPCODES]:
        if op != Opcode.REF:
            assert rtl.counters[f"issued_{op.name}"] == int((stream["op"] == op).sum())


def random_stream(seed: int, chains: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cmds = [Command(Opcode.ACT, row=int(rng.integers(0, 100)))]
    for _ in range(chains):
        e = int(rng.integers(0, ORG.obuf_entries))
        cmds.append(Command(Opcode.WR_BIAS, obuf=e))
        for _ in range(int(rng.integers(1, 5))):
            g = int(rng.integers(0, ORG.gbuf_entries))
            if rng.random() < 0.7:
                cmds.append(Command(Opcode.WR_INP, gbuf=g, gpr=int(rng.integers(0, 1000))))
            cmds.append(Command(Opcode.MAC, row=cmds[0].row, col=int(rng.integers(0, 64)), gbuf=g, obuf=e))
        cmds.append(Command(Opcode.RD_OUT, obuf=e, gpr=int(rng.integers(0, 1000))))
        if rng.random() < 0.2:
            cmds += [Command(Opcode.PRE), Command(Opcode.ACT, row=cmds[0].row)]
    cmds.append(Command(Opcode.PRE))
    return from_commands(cmds)


@settings(max_examples=12, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from(list(Policy)), st.sampled_from([2, 4, 16, 32]),
       st.sampled_from([2, 16, 32]), st.booleans())
def test_random_streams_cycle_exact(seed, policy, io_depth, compute_depth, dual_port):
    print(f"replay: seed={seed} policy={policy.name} io_depth={io_depth} compute_depth={compute_depth} "
          f"dual_port={dual_port}")
    assert_cycle_exact(random_stream(seed, 10), config(policy, dual_port, io_depth=io_depth,
                                                       compute_depth=compute_depth))


def test_aim_baseline_hardware_static_cycle_exact():
    """The RTL elaborated for AiM's single-ported output registers, running the static baseline."""
    cfg = QueueConfig.for_org(ORG, Policy.STATIC, obuf_entries=ORG.obuf_entries)
    assert not cfg.obuf_dual_port
    stream = command_streams(attention_program(ORG, 4, 1500, cfg.obuf_entries), ORG.channels)[0]
    assert_cycle_exact(stream, cfg)


def test_sustains_one_command_per_cycle():
    """ACT, then WR_INPs and MACs on unrelated entries alternate: nothing blocks after the row opens."""
    cmds = [Command(Opcode.ACT, row=1)]
    for i in range(60):
        cmds.append(Command(Opcode.WR_INP, gbuf=32 + i % 32))
        cmds.append(Command(Opcode.MAC, row=1, col=i % 64, gbuf=i % 32, obuf=0))
    stream = from_commands(cmds)
    rtl = assert_cycle_exact(stream, config(Policy.DCS))
    first_mac = rtl.cycles[rtl.ops.index(int(Opcode.MAC))]
    last_wr = max(c for c, o in zip(rtl.cycles, rtl.ops, strict=True) if o == Opcode.WR_INP)
    steady = [c for c in rtl.cycles if first_mac + 2 <= c <= last_wr]           # both kinds available
    assert len(steady) > 60
    assert steady == list(range(steady[0], steady[0] + len(steady)))           # an issue in every cycle
    assert rtl.counters["issued_MAC"] + rtl.counters["issued_WR_INP"] + rtl.counters["issued_ACT"] == len(cmds)
    assert rtl.counters["dependency"] == 0 and rtl.counters["backpressure"] == 0


@pytest.mark.parametrize("policy", list(Policy))
def test_backpressure_keeps_every_guarantee(policy):
    stream = random_stream(5, 40)
    rng = np.random.default_rng(9)
    pattern = rng.random(100_000) < 0.6
    rtl = simulate_queue(DcsQueue(FMT, AIM, config(policy)), stream, policy, ready_pattern=lambda c: pattern[c])
    cmd = [(c, s, o) for c, s, o, r in zip(rtl.cycles, rtl.seqs, rtl.ops, rtl.refresh, strict=True) if not r]
    assert sorted(s for _, s, _ in cmd) == list(range(len(stream)))            # nothing lost or duplicated
    assert check_trace(np.array(rtl.ops), np.array(rtl.cycles), AIM, obuf_dual_port=True) == []  # legal
    io = [s for _, s, o in cmd if policy == Policy.STATIC or Opcode(o) in IO_OPCODES]
    assert io == sorted(io)                                                    # in order inside a queue
    assert rtl.counters["backpressure"] > 0
    ops = stream["op"][[s for _, s, _ in cmd]]
    assert (ops == np.array([o for _, _, o in cmd])).all()


def test_constructor_errors():
    with pytest.raises(ValueError, match=r"^io_depth must be a power of two and at least 2, got 12$"):
        DcsQueue(FMT, AIM, config(Policy.DCS, io_depth=12))
    with pytest.raises(ValueError, match=r"^obuf_entries \(8\) must equal the command format's 2\^4 entries$"):
        DcsQueue(FMT, AIM, QueueConfig(obuf_entries=8))


def test_command_layout_is_the_isa_encoding():
    layout = command_layout(FMT)
    assert layout.size == FMT.command_bits
    cmd = Command(Opcode.MAC, row=16383, col=5, gbuf=63, obuf=9, gpr=1234)
    const = layout.const({"op": OpcodeShape.MAC, "row": 16383, "col": 5, "gbuf": 63, "obuf": 9, "gpr": 1234})
    assert const.as_value().value == FMT.encode_command(cmd)
    assert [m.name for m in OpcodeShape] == [o.name for o in Opcode]
    assert np.zeros(1, COMMAND_DTYPE).dtype.names[0] == "op"


@pytest.mark.long(30)
def test_verilog_and_synth_commands(tmp_path, capsys, monkeypatch):
    """``verilog dcs``, and ``synth`` on the sequencer (the DCS queue's synthesis takes ~30 s; its figures
    are regenerated with ``pimphony synth dcs``, and its tables are priced by
    :func:`test_table_bytes_are_the_registers_the_rtl_builds`)."""
    from pimphony.cli.main import main

    monkeypatch.chdir(tmp_path)
    assert main(["verilog", "dcs", "--out", str(tmp_path / "v")]) == 0
    text = (tmp_path / "v" / "dcs_queue.v").read_text()
    assert "module dcs_queue(" in text and "cmd_in__payload" in text and "cmd_out__ready" in text
    assert main(["synth", "sequencer", "--out", str(tmp_path / "v")]) == 0
    out = capsys.readouterr().out
    stats = {line.split()[0]: int(line.split()[1]) for line in out.splitlines()[2:] if line.startswith("  ")}
    assert stats["flip_flops"] > 50 and stats["ice40_lut4"] > 1000 and stats["ice40_ff"] == stats["flip_flops"]
    assert (tmp_path / "v" / "sequencer.v").is_file()


def _registers(fragment) -> dict[str, int]:
    """Name -> width of every register a fragment drives in its sync domain."""
    found = {}
    for stmt in fragment.statements.get("sync", []):
        for sig in stmt._lhs_signals():
            found[sig.name] = len(sig)
    return found


def test_table_bytes_are_the_registers_the_rtl_builds():
    """The D/S-Table figure equals the bits of the tables' registers in the elaborated design (the D-Tables'
    scrubbers aside: their pointers and the entry each read last): 64 + 16 entries of valid + 16-bit sequence number + queue bit, and the S-Table's
    slots (its registered compares aside: they are derived from the slots)."""
    from amaranth.hdl import Fragment

    dut = DcsQueue(FMT, AIM, QueueConfig.rtl_default(ORG))
    parts = {name: sub for sub, name, _ in Fragment.get(dut, None).subfragments}
    d_bits = sum(w for t in ("dtable_gbuf", "dtable_obuf") for n, w in _registers(parts[t]).items()
                 if not n.startswith("scrub_"))
    s_bits = sum(w for n, w in _registers(parts["stable"]).items() if not n.startswith("match"))
    assert d_bits == (64 + 16) * 18
    tables = table_bytes(AIM, QueueConfig.rtl_default(ORG))
    assert (tables["d_table"], tables["s_table"]) == (-(-d_bits // 8), -(-s_bits // 8))
    assert tables["total"] == -(-(d_bits + s_bits) // 8)
