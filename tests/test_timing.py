"""Timing rules as data and the legality checker."""

from pimphony.model.config import TimingPreset
from pimphony.model.isa import Opcode
from pimphony.model.timing import check_trace, gap_matrix, latencies, rules

AIM = TimingPreset.load("aim-gddr6")


def test_rules_take_their_values_from_the_preset():
    gaps = {r.name: r.gap for r in rules(AIM)}
    assert gaps["ACT-MAC"] == 56 and gaps["PRE-ACT"] == 32 and gaps["ACT-ACT"] == 89
    assert gaps["RD-WRGB"] == gaps["RD-WRMAC16"] == 5 and gaps["WRGB-RD"] == 12     # turnarounds
    assert gaps["WRMAC16-RD"] == 12 and gaps["WRMAC16-RD-L"] == 14                   # the nWTRL rule binds
    assert gaps["COL-COL"] == 2 and gaps["WR-WR"] == 2 and gaps["REF-ACT"] == 210
    slow = TimingPreset.load("aim-gddr6-1ns")
    assert {r.name: r.gap for r in rules(slow)} == gaps        # same cycles, different tCK


def test_dual_ported_obuf_frees_the_column_slot():
    single, dual = gap_matrix(AIM), gap_matrix(AIM, obuf_dual_port=True)
    assert single[Opcode.MAC, Opcode.RD_OUT] == 2 and single[Opcode.RD_OUT, Opcode.MAC] == 2
    assert dual[Opcode.MAC, Opcode.RD_OUT] == 0 and dual[Opcode.RD_OUT, Opcode.MAC] == 0
    assert dual[Opcode.RD_OUT, Opcode.RD_OUT] == 2 and dual[Opcode.MAC, Opcode.MAC] == 2     # bus, column
    assert dual[Opcode.WR_INP, Opcode.RD_OUT] == 12 and dual[Opcode.RD_OUT, Opcode.WR_INP] == 5
    ops, cycles = waveform("""
        0 ACT
        56 MAC
        57 RD_OUT
        58 MAC
    """)
    assert check_trace(ops, cycles, AIM, obuf_dual_port=True) == []
    assert len(check_trace(ops, cycles, AIM)) == 4          # COL-COL and MAC16-COL at 57 and at 58


def test_gap_matrix_and_latencies():
    g = gap_matrix(AIM)
    assert g[Opcode.MAC, Opcode.MAC] == 2 and g[Opcode.MAC, Opcode.RD_OUT] == 2
    assert g[Opcode.WR_INP, Opcode.MAC] == 0                    # a data dependency, not a timing rule
    lat = latencies(AIM)
    assert (lat[Opcode.WR_INP], lat[Opcode.WR_BIAS], lat[Opcode.MAC], lat[Opcode.RD_OUT]) == (3, 3, 1, 2)


def waveform(text: str):
    """Parse an ASCII trace: one line per command, ``<cycle> <OPCODE>``."""
    ops, cycles = [], []
    for line in text.strip().splitlines():
        c, op = line.split()
        ops.append(int(Opcode[op]))
        cycles.append(int(c))
    return ops, cycles


def test_a_legal_row_cycle_passes():
    ops, cycles = waveform("""
        0 ACT
        1 WR_INP
        3 WR_BIAS
        56 MAC
        58 MAC
        60 RD_OUT
        70 PRE
        102 ACT
    """)
    assert check_trace(ops, cycles, AIM) == []


def test_violations_name_rule_and_cycle():
    ops, cycles = waveform("""
        0 ACT
        1 WR_INP
        10 RD_OUT
        15 WR_INP
        55 MAC
        56 MAC
        60 PRE
        80 ACT
        80 WR_BIAS
    """)
    found = check_trace(ops, cycles, AIM)
    assert "cycle 10: WRGB-RD: RD_OUT (command 2) 9 cycles after WR_INP (command 1) at cycle 1; needs nCWLGB + nBL + nWTRS = 12" in found
    assert "cycle 55: ACT-MAC: MAC (command 4) 55 cycles after ACT (command 0) at cycle 0; needs nRCDRDMAC = 56" in found
    assert "cycle 56: COL-COL: MAC (command 5) 1 cycles after MAC (command 4) at cycle 55; needs nCCDS = 2" in found
    assert "cycle 60: MAC-PRE: PRE (command 6) 4 cycles after MAC (command 5) at cycle 56; needs nRTP = 12" in found
    assert "cycle 80: PRE-ACT: ACT (command 7) 20 cycles after PRE (command 6) at cycle 60; needs nRP = 32" in found
    assert "cycle 80: ACT-ACT: ACT (command 7) 80 cycles after ACT (command 0) at cycle 0; needs nRC = 89" in found
    assert any(line.startswith("cycle 80: BUS:") for line in found)
    assert len(found) == 8
