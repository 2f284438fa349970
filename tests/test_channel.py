"""Golden PIM channel: MAC numerics, row-buffer rules, index checks, sparse storage."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pimphony.model.channel import ChannelArray, PimCommandError
from pimphony.model.config import ModuleOrg
from pimphony.model.isa import Command, Opcode
from pimphony.model.numerics import bf16_bits, to_bf16

ORG = ModuleOrg.load("aimx-16ch")


def loaded(seed=0, rows=2):
    a = ChannelArray(ORG)
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((rows, ORG.channels, ORG.banks, ORG.columns))
    a.write_rows(np.arange(ORG.channels), 0, bf16_bits(data))
    return a, to_bf16(data)


def test_mac_is_bf16_products_accumulated_in_fp32():
    a, data = loaded()
    ch = a.channel(3)
    vecs = to_bf16(np.random.default_rng(1).standard_normal((4, 16)))
    ch.execute(Command(Opcode.ACT, row=1))
    ch.execute(Command(Opcode.WR_BIAS, obuf=2), np.zeros(16))
    for i in range(4):
        ch.execute(Command(Opcode.WR_INP, gbuf=10 + i), vecs[i])
        ch.execute(Command(Opcode.MAC, row=1, col=5 + i, gbuf=10 + i, obuf=2))
    got = ch.execute(Command(Opcode.RD_OUT, obuf=2))
    row = data[1, 3].astype(np.float64)                          # (banks, columns)
    exact = sum(row[:, (5 + i) * 16:(6 + i) * 16] @ vecs[i].astype(np.float64) for i in range(4))
    assert np.array_equal(got, to_bf16(a.obuf[3, 2]))            # RD-OUT rounds the fp32 accumulator
    np.testing.assert_allclose(a.obuf[3, 2], exact, rtol=0, atol=64 * 2**-24 * np.abs(row).max() * 4 * 16)
    np.testing.assert_allclose(got, exact, rtol=2**-8, atol=1e-6)


def test_accumulation_follows_program_order():
    a = ChannelArray(ORG)
    ch = a.channel(0)
    big, small = np.float32(2**24), np.float32(1.0)
    row = np.zeros((1, 1, ORG.banks, ORG.columns))
    row[0, 0, :, 0], row[0, 0, :, 16] = big, small
    a.write_rows(np.array([0]), 0, bf16_bits(row))
    ch.execute(Command(Opcode.ACT, row=0))
    ch.execute(Command(Opcode.WR_INP, gbuf=0), np.eye(16)[0])
    ch.execute(Command(Opcode.MAC, row=0, col=1, gbuf=0, obuf=0))       # + 1
    ch.execute(Command(Opcode.MAC, row=0, col=0, gbuf=0, obuf=0))       # + 2^24 -> 2^24 + 1 rounds to 2^24
    ch.execute(Command(Opcode.MAC, row=0, col=1, gbuf=0, obuf=0))       # + 1 lost again
    assert a.obuf[0, 0, 0] == np.float32(2**24)
    b = ChannelArray(ORG)
    b.write_rows(np.array([0]), 0, bf16_bits(row))
    b.act(np.array([0]), 0)
    b.wr_inp(np.array([0]), np.array([0, 1]), np.stack([np.eye(16)[0]] * 2))
    b.mac(np.array([0]), 0, 1, 0, 0, n=1)
    b.mac(np.array([0]), 0, 0, 0, 0, n=2)                                # col 0 then col 1: same order
    assert b.obuf[0, 0, 0] == a.obuf[0, 0, 0]


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 16), st.integers(0, 48), st.integers(0, 2**31 - 1))
def test_vectorised_mac_equals_one_command_at_a_time(n, col, seed):
    a, _ = loaded(seed % 97)
    b, _ = loaded(seed % 97)
    rng = np.random.default_rng(seed)
    vec = to_bf16(rng.standard_normal((n, 16)) * np.exp(rng.standard_normal((n, 1)) * 4))
    chans = np.array([1, 2, 5, 9])
    a.act(chans, 0)
    a.wr_inp(chans, np.arange(n), vec)
    a.mac(chans, 0, col, 0, 7, n=n)
    for c in chans:
        view = b.channel(int(c))
        view.execute(Command(Opcode.ACT, row=0))
        for i in range(n):
            view.execute(Command(Opcode.WR_INP, gbuf=i), vec[i])
            view.execute(Command(Opcode.MAC, row=0, col=col + i, gbuf=i, obuf=7))
    assert np.array_equal(a.obuf, b.obuf)


ILLEGAL = [
    ([Command(Opcode.MAC, row=0)], r"MAC\(row=0, col=0, gbuf=0, obuf=0\) on channel 0: no open row \(rule: ACT before MAC\)"),
    ([Command(Opcode.ACT, row=1), Command(Opcode.MAC, row=2)], r"on channel 0: row 2 is not the open row 1"),
    ([Command(Opcode.ACT, row=1), Command(Opcode.ACT, row=2)], r"ACT\(row=2\) on channel 0: row 1 is already open \(rule: PRE before ACT\)"),
    ([Command(Opcode.ACT, row=1), Command(Opcode.MAC, row=1, col=64)], r"column burst index 64 out of range 0..63"),
    ([Command(Opcode.WR_INP, gbuf=64)], r"WR_INP on channel 0: GBuf index 64 out of range 0..63"),
    ([Command(Opcode.RD_OUT, obuf=16)], r"RD_OUT on channel 0: OBuf index 16 out of range 0..15"),
    ([Command(Opcode.ACT, row=3), Command(Opcode.REF)], r"REF on channel 0: a row is open \(rule: all banks precharged before REF\)"),
    ([Command(Opcode.ACT, row=16384)], r"row 16384 out of range 0..16383"),
]


@pytest.mark.parametrize(("cmds", "message"), ILLEGAL)
def test_illegal_commands_name_the_command_and_rule(cmds, message):
    ch = ChannelArray(ORG).channel(0)
    with pytest.raises(PimCommandError, match=message):
        for c in cmds:
            ch.execute(c, np.zeros(16) if c.op in (Opcode.WR_INP, Opcode.WR_BIAS) else None)


def test_legal_row_cycle_and_refresh():
    """ACT opens a row on its channel only, PRE closes it (a second PRE is legal and changes nothing), REF
    with every row closed is legal, and a row opened after it can be read."""
    a = ChannelArray(ORG)
    ch = a.channel(0)
    opened = []
    for c in [Command(Opcode.ACT, row=1), Command(Opcode.PRE), Command(Opcode.REF), Command(Opcode.ACT, row=2),
              Command(Opcode.PRE), Command(Opcode.PRE), Command(Opcode.ACT, row=3)]:
        assert ch.execute(c) is None
        opened.append(int(a.open_row[0]))
    assert opened == [1, -1, -1, 2, -1, -1, 3]
    assert (a.open_row[1:] == -1).all()
    ch.execute(Command(Opcode.MAC, row=3))


def test_baseline_output_registers():
    a = ChannelArray(ORG, obuf_entries=ORG.outreg_entries)
    with pytest.raises(PimCommandError, match=r"OBuf index 2 out of range 0..1"):
        a.channel(0).execute(Command(Opcode.WR_BIAS, obuf=2), np.zeros(16))


def test_memory_follows_data_not_capacity():
    a = ChannelArray(ORG)
    assert a.bytes_allocated == 0
    a.write_rows(np.array([4]), 16000, bf16_bits(np.ones((1, 1, ORG.banks, 64))))
    one_row = ORG.channels * ORG.banks * ORG.columns * 2
    assert a.bytes_allocated == one_row                # 512 KB of an 8 GB module
    a.act(np.array([4]), 9000)                          # reading an unwritten row allocates nothing
    a.mac(np.array([4]), 9000, 0, 0, 0)
    assert a.bytes_allocated == one_row
    assert a.read_bank(4, 3, 16000)[:64].tolist() == [1.0] * 64
    assert not a.read_bank(4, 3, 123).any()


def test_backdoor_write_updates_an_open_row_buffer():
    a = ChannelArray(ORG)
    a.act(np.array([0]), 5)
    a.write_rows(np.array([0]), 5, bf16_bits(np.full((1, 1, ORG.banks, 16), 2.0)))
    a.wr_inp(np.array([0]), np.array([0]), np.ones((1, 16)))
    a.mac(np.array([0]), 5, 0, 0, 0)
    assert (a.obuf[0, 0] == 32.0).all()


def test_write_rows_takes_either_layout():
    data = bf16_bits(np.random.default_rng(4).standard_normal((2, 3, ORG.banks, 48)))
    a, b = ChannelArray(ORG), ChannelArray(ORG)
    chans = np.array([2, 7, 8])
    a.write_rows(chans, 40, data, col0=16)
    b.write_rows(chans, 40, np.ascontiguousarray(data.transpose(0, 1, 3, 2)), col0=16, banks_last=True)
    for c in chans.tolist():
        for row in (40, 41):
            for bank in (0, 5, 15):
                assert np.array_equal(a.read_bank(c, bank, row), b.read_bank(c, bank, row))
    assert np.array_equal(bf16_bits(a.read_bank(7, 5, 41)[16:64]), data[1, 1, 5])


def test_adopted_rows_read_as_written_rows():
    data = bf16_bits(np.random.default_rng(8).standard_normal((2, ORG.channels, ORG.columns, ORG.banks)))
    a, b = ChannelArray(ORG), ChannelArray(ORG)
    a.act(np.array([3]), 11)                                    # an open row is latched again
    b.act(np.array([3]), 11)
    a.write_rows(np.arange(ORG.channels), 10, data, banks_last=True)
    b.adopt_rows(10, data)
    assert np.array_equal(a.row_buffer, b.row_buffer) and b.row_buffer[3].any()
    for c, bank, row in ((0, 0, 10), (3, 15, 11), (15, 7, 10)):
        assert np.array_equal(a.read_bank(c, bank, row), b.read_bank(c, bank, row))
    with pytest.raises(ValueError, match="is not whole rows of 16 channels"):
        b.adopt_rows(0, data[:, :4])
