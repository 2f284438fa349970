"""ISA: bit-exact encode/decode round trips, widths from the organisation, unroll semantics."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pimphony.model.config import ModuleOrg
from pimphony.model.isa import (
    ADVANCING,
    CHANNEL_OPCODES,
    COMMAND_DTYPE,
    Command,
    Format,
    Instruction,
    IsaError,
    Opcode,
    channel_stream,
    dyn_loop,
    dyn_modi,
    from_commands,
    to_commands,
    unroll,
)

ORG = ModuleOrg.load("aimx-16ch")
FMT = Format.for_org(ORG)
CENT = Format.for_org(ModuleOrg.load("cent-32ch"))


def test_widths_follow_the_organisation():
    assert FMT.command_fields() == [("op", 4), ("row", 14), ("col", 6), ("gbuf", 6), ("obuf", 4), ("gpr", 14)]
    assert FMT.command_bits == 48
    assert dict(FMT.instruction_fields())["ch_mask"] == 16
    assert dict(CENT.instruction_fields())["ch_mask"] == 32
    assert FMT.max_op_size == 64


def commands(fmt):
    return st.builds(
        Command, op=st.sampled_from(list(Opcode)[:CHANNEL_OPCODES]),
        row=st.integers(0, (1 << fmt.row_bits) - 1), col=st.integers(0, (1 << fmt.col_bits) - 1),
        gbuf=st.integers(0, (1 << fmt.gbuf_bits) - 1), obuf=st.integers(0, (1 << fmt.obuf_bits) - 1),
        gpr=st.integers(0, (1 << fmt.gpr_bits) - 1))


@given(commands(FMT))
def test_command_round_trip(cmd):
    word = FMT.encode_command(cmd)
    assert 0 <= word < 1 << FMT.command_bits
    assert FMT.decode_command(word) == cmd


@st.composite
def instructions(draw, fmt):
    op = draw(st.sampled_from(list(Opcode)))
    size = draw(st.integers(1, fmt.max_op_size)) if ADVANCING[op] else 1
    return Instruction(op=op, ch_mask=draw(st.integers(1, (1 << fmt.channels) - 1)), op_size=size,
                       row=draw(st.integers(0, (1 << fmt.row_bits) - 1)), col=draw(st.integers(0, (1 << fmt.col_bits) - 1)),
                       gbuf=draw(st.integers(0, (1 << fmt.gbuf_bits) - 1)), obuf=draw(st.integers(0, (1 << fmt.obuf_bits) - 1)),
                       gpr=draw(st.integers(0, (1 << fmt.gpr_bits) - 1)))


@given(instructions(FMT))
def test_instruction_round_trip(ins):
    assert FMT.decode_instruction(FMT.encode_instruction(ins)) == ins


@given(instructions(CENT))
def test_instruction_round_trip_32_channels(ins):
    assert CENT.decode_instruction(CENT.encode_instruction(ins)) == ins


def test_fields_are_packed_lsb_first():
    word = FMT.encode_command(Command(Opcode.MAC, row=1, col=2, gbuf=3, obuf=4, gpr=5))
    assert word == 5 | 1 << 4 | 2 << 18 | 3 << 24 | 4 << 30 | 5 << 34


def test_encoding_errors():
    with pytest.raises(IsaError, match=r"field row=16384 does not fit in 14 bits \(0..16383\)"):
        FMT.encode_command(Command(Opcode.ACT, row=16384))
    with pytest.raises(IsaError, match=r"undefined opcode 15"):
        FMT.decode_command(15)
    with pytest.raises(IsaError, match=r"PRE takes op_size 1"):
        FMT.encode_instruction(Instruction(Opcode.PRE, ch_mask=1, op_size=2))
    with pytest.raises(IsaError, match=r"op_size 65 outside 1..64"):
        FMT.encode_instruction(Instruction(Opcode.MAC, ch_mask=1, op_size=65))
    with pytest.raises(IsaError, match=r"ch_mask 0x0 must select 1..16 channels"):
        FMT.encode_instruction(Instruction(Opcode.MAC, ch_mask=0))


def test_dpa_instructions_are_not_channel_commands():
    loop = dyn_loop(0, 2048, 90, 0xFFFF)
    assert FMT.decode_instruction(FMT.encode_instruction(loop)) == loop
    assert (loop.gbuf, loop.row, loop.gpr) == (0, 128, 90)
    modi = dyn_modi(1, 512)
    assert FMT.decode_instruction(FMT.encode_instruction(modi)) == modi
    with pytest.raises(IsaError, match=r"DYN_MODI is not a channel command"):
        FMT.decode_command(int(Opcode.DYN_MODI))
    with pytest.raises(IsaError, match=r"DYN_LOOP is a DPA instruction: the dispatcher expands it"):
        unroll(loop)


def test_command_arrays_round_trip():
    rng = np.random.default_rng(3)
    cmds = [Command(Opcode(int(rng.integers(0, 7))), row=int(rng.integers(0, 16384)), col=int(rng.integers(0, 64)),
                    gbuf=int(rng.integers(0, 64)), obuf=int(rng.integers(0, 16)), gpr=int(rng.integers(0, 16384)))
            for _ in range(200)]
    stream = from_commands(cmds)
    assert stream.dtype == COMMAND_DTYPE and to_commands(stream) == cmds


def test_unroll_advances_fields_and_gathers_rd_out():
    mac = unroll(Instruction(Opcode.MAC, ch_mask=0b101, op_size=3, row=7, col=8, gbuf=16, obuf=2))
    assert sorted(mac) == [0, 2]
    assert [str(c) for c in to_commands(mac[2])] == [
        "MAC(row=7, col=8, gbuf=16, obuf=2)", "MAC(row=7, col=9, gbuf=17, obuf=2)", "MAC(row=7, col=10, gbuf=18, obuf=2)"]
    rd = unroll(Instruction(Opcode.RD_OUT, ch_mask=0b1010, op_size=2, obuf=4, gpr=100))
    assert [(c.obuf, c.gpr) for c in to_commands(rd[1])] == [(4, 100), (5, 101)]
    assert [(c.obuf, c.gpr) for c in to_commands(rd[3])] == [(4, 102), (5, 103)]
    bias = unroll(Instruction(Opcode.WR_BIAS, ch_mask=1, op_size=3, obuf=5, gpr=0))
    assert [(c.obuf, c.gpr) for c in to_commands(bias[0])] == [(5, 0), (6, 0), (7, 0)]


@given(st.lists(instructions(FMT).filter(lambda i: i.op < CHANNEL_OPCODES), max_size=12), st.integers(0, 15))
def test_channel_stream_is_unroll_for_one_channel(program, channel):
    parts = [unroll(i)[channel] for i in program if channel in i.channels()]
    expected = np.concatenate(parts) if parts else np.zeros(0, dtype=COMMAND_DTYPE)
    assert np.array_equal(channel_stream(program, channel), expected)


def test_channel_stream_refuses_dpa_instructions():
    with pytest.raises(IsaError, match="a DPA instruction reached the sequencer"):
        channel_stream([dyn_loop(0, 128, 2, 1)], 0)
