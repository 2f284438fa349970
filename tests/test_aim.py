"""The ``aim`` policy against the public AiM simulator's recorded outputs, the rule table against its
source, and the aim trace format (``tests/data/aim``, see its README)."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pimphony.cli.main import main
from pimphony.model import aimtrace
from pimphony.model.config import ModelConfig, ModuleOrg, TimingPreset
from pimphony.model.isa import COMMAND_DTYPE, Opcode
from pimphony.model.perf.channel import run_channel
from pimphony.model.policies import issuer
from pimphony.model.queue import Policy, QueueConfig
from pimphony.model.timing import gap_matrix
from pimphony.scheduler import aim

DATA = Path(__file__).parent / "data" / "aim"
CORPUS = yaml.safe_load((DATA / "corpus.yaml").read_text())
NAMES = [t["name"] for t in CORPUS["traces"]]


def test_the_corpus_is_large_enough_and_complete():
    assert len(NAMES) >= 15
    for name in NAMES:
        for suffix in (".trace", ".stats.gz", ".commands.csv.gz"):
            assert (DATA / f"{name}{suffix}").is_file(), name + suffix


def _gz(path: Path) -> str:
    with gzip.open(path, "rt") as f:
        return f.read()


@pytest.mark.parametrize("name", NAMES)
def test_trace_run_equals_aim_simulator_command_for_command(name, tmp_path, capsys):
    entry = next(t for t in CORPUS["traces"] if t["name"] == name)
    stats = _gz(DATA / f"{name}.stats.gz")
    total = int(next(line for line in stats.splitlines() if "memory_system_cycles" in line).split()[1])
    assert total == entry["memory_system_cycles"]
    out = tmp_path / "commands.csv"
    assert main(["trace", "run", str(DATA / f"{name}.trace"), "--policy", "aim", "--refresh", "off",
                 "--commands", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    reference = _gz(DATA / f"{name}.commands.csv.gz").splitlines()
    ours = out.read_text().splitlines()
    assert ours[0] == reference[0] == "cycle,channel,command,row"
    first = next((i for i, (a, b) in enumerate(zip(ours, reference, strict=False)) if a != b), None)
    assert first is None, f"line {first}: ours {ours[first]!r}, aim_simulator {reference[first]!r}"
    assert len(ours) == len(reference) == entry["commands"] + 1
    assert summary["cycles"] == total
    assert summary["commands"] == entry["commands"]


def _aim_gaps(preset: TimingPreset) -> dict[tuple[str, str], int]:
    names = {k: v for k, v, _, _ in preset.describe()}
    gaps: dict[tuple[str, str], int] = {}
    with (DATA / "rules.csv").open() as f:
        for row in csv.DictReader(f):
            value = eval(row["expression"], {"__builtins__": {}}, names)   # the file's own expressions
            for p in row["previous"].split():
                for n in row["next"].split():
                    gaps[p, n] = max(gaps.get((p, n), 0), value)
    return gaps


def _check_rule_table(preset: TimingPreset) -> None:
    theirs = _aim_gaps(preset)
    ours = aim.gap_table(preset)
    for i, p in enumerate(aim.COMMANDS):
        for j, n in enumerate(aim.COMMANDS):
            assert ours[i, j] == theirs.get((p, n), 0), f"{p} -> {n}: ours {ours[i, j]}, aim {theirs.get((p, n), 0)}"
    assert (aim.gap_table(preset)[:aim.TMOD, :aim.TMOD] == gap_matrix(preset, obuf_dual_port=False)).all()


@pytest.mark.parametrize("name", ["aim-gddr6", "aim-gddr6-1ns"])
def test_rule_table_gives_aim_simulators_gap_for_every_ordered_pair(name):
    _check_rule_table(TimingPreset.load(name))


def test_wr_bias_to_rd_out_is_nwtrl_bound():
    gaps = gap_matrix(TimingPreset.load("aim-gddr6"))
    assert gaps[Opcode.WR_BIAS, Opcode.RD_OUT] == 14 and gaps[Opcode.WR_INP, Opcode.RD_OUT] == 12


PARAMS = [f.name for f in dataclasses.fields(TimingPreset) if f.metadata.get("range")]


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({k: st.integers(0, 400) for k in PARAMS if k not in ("tck_ps", "nCCDS", "nREFI")}))
def test_rule_table_has_aim_simulators_shape_on_random_presets(values):
    """Random values make every expression distinct, so equal gaps mean equal rules, not a coincidence."""
    preset = dataclasses.replace(TimingPreset.load("aim-gddr6"), **values)
    _check_rule_table(preset)


def test_dcs_keeps_the_corrected_rule_on_gqa_attention():
    timing = TimingPreset.load("aim-gddr6")
    org = ModuleOrg.load("aimx-16ch")
    stream = aim.attention_stream(ModelConfig.load("llama-3.1-70b"), org, [4096], 0, pair=True)
    trace = run_channel(stream, timing, issuer(QueueConfig.for_org(org, Policy.DCS)))
    assert trace.violations == []
    bias = trace.cycles[stream["op"] == Opcode.WR_BIAS]
    reads = trace.cycles[stream["op"] == Opcode.RD_OUT]
    after = reads[:, None] - bias[None, :]
    assert after[after > 0].min() >= 14 or not (after > 0).any()


def _stream(ops_rows):
    s = np.zeros(len(ops_rows), dtype=COMMAND_DTYPE)
    for i, (op, row) in enumerate(ops_rows):
        s[i]["op"], s[i]["row"], s[i]["gpr"] = op, row, i
    return s


def test_from_stream_groups_runs_and_drops_row_commands(tmp_path):
    A, P, W, B, M, R = Opcode.ACT, Opcode.PRE, Opcode.WR_INP, Opcode.WR_BIAS, Opcode.MAC, Opcode.RD_OUT
    s = _stream([(W, 0), (W, 0), (A, 3), (B, 0), (M, 3), (M, 3), (M, 3), (R, 0), (R, 0), (P, 0), (A, 4), (M, 4)])
    t = aimtrace.from_stream(s, channel=5)
    names = [aimtrace.ISR_NAMES[k] for k in t.kind]
    assert names == ["WR_GB", "WR_BIAS", "MAC_ABK", "RD_MAC", "RD_MAC", "MAC_ABK", "EOC"]
    assert t.opsize.tolist() == [2, 1, 3, 1, 1, 1, 1]
    assert t.row.tolist() == [-1, -1, 3, -1, -1, 4, -1]
    path = tmp_path / "t.trace"
    t.write(path, "header")
    text = path.read_text()
    assert text.splitlines()[0] == "# header" and "AiM MAC_ABK 3 0x4000000 3" in text
    back = aimtrace.read(path)
    assert back.channel == 5
    for field in ("kind", "opsize", "row", "gpr"):
        assert getattr(back, field).tolist() == getattr(t, field).tolist()


def test_to_stream_opens_and_closes_rows():
    t = aimtrace.parse("AiM WR_GB 2 7 0x1\nAiM MAC_ABK 2 0x1 3\nAiM MAC_ABK 1 0x1 3\nAiM MAC_ABK 1 0x1 5\nAiM EOC\n")
    s = aimtrace.to_stream(t, gbuf_entries=64)
    assert [Opcode(o).name for o in s["op"]] == ["WR_INP", "WR_INP", "ACT", "MAC", "MAC", "MAC", "PRE", "ACT", "MAC"]
    assert s["gpr"][:2].tolist() == [7, 8] and s["row"][7] == 5


@pytest.mark.parametrize("policy", ["static", "pingpong", "dcs"])
def test_every_policy_times_a_corpus_trace(policy, capsys):
    assert main(["trace", "run", str(DATA / "attn_llama8b_pair_2048.trace"), "--policy", policy, "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["issued"]["MAC16"] == 512 and r["issued"]["TMOD"] == 0 and r["cycles"] > 1024


def test_dcs_beats_the_aim_controller_on_an_attention_pair():
    tp = TimingPreset.load("aim-gddr6")
    t = aimtrace.read(DATA / "attn_llama8b_pair_2048.trace")
    base = aim.time_trace(t, "aim", tp)
    dcs = aim.time_trace(t, "dcs", tp, QueueConfig.for_org(ModuleOrg.load("aimx-16ch"), Policy.DCS))
    assert base.total_cycles == 3402 and dcs.total_cycles < base.total_cycles / 2


def test_refresh_on_inserts_refreshes_for_aim():
    tp = TimingPreset.load("aim-gddr6")
    t = aimtrace.read(DATA / "gemv_4096x256.trace")
    off, on = aim.run(t, tp, refresh=False), aim.run(t, tp, refresh=True)
    assert off.counts()["REFab"] == 0
    assert on.counts()["REFab"] == on.total_cycles // tp.nREFI > 0
    assert on.total_cycles > off.total_cycles
    ref_cycles = on.cycle[on.command == Opcode.REF]
    act_cycles = on.cycle[on.command == Opcode.ACT]
    later = act_cycles[:, None] - ref_cycles[None, :]
    assert later[later > 0].min() >= tp.nRFC


BAD = [
    ("AiM EWMUL 4 0x1 0\nAiM EOC\n", ":1: ISR EWMUL is not modelled"),
    ("# c\nAiM WR_GB 4 0 0x1\nAiM AF 0x1\nAiM EOC\n", ":3: ISR AF is not modelled"),
    ("W GPR 0\nAiM EOC\n", ":1: host W lines"),
    ("AiM WR_GB 4 0 0x1\n", "ends without 'AiM EOC'"),
    ("AiM WR_GB 4 0 0x3\nAiM EOC\n", ":1: the mask 0x3 addresses 2 channels; give --channel"),
    ("AiM WR_GB 4 0 0x1\nAiM WR_GB 4 0 0x2\nAiM EOC\n", ":2: channel 30, but earlier lines address channel 31"),
    ("AiM WR_GB four 0 0x1\nAiM EOC\n", ":1: 'four' is not a number"),
    ("AiM MAC_ABK 4 0x1\nAiM EOC\n", ":1: MAC_ABK takes 3 fields (opsize mask row), got 2"),
    ("AiM FOO 1\nAiM EOC\n", ":1: unknown ISR 'FOO'"),
    ("AiM WR_GB 0 0 0x1\nAiM EOC\n", ":1: opsize 0 must lie in"),
    ("#comment glued to the hash\nAiM EOC\n", ":1: expected 'AiM <ISR> <fields>'"),
    ("AiM WR_GB 4 0 0x0\nAiM EOC\n", ":1: channel mask 0x0 must be a non-zero 32-bit mask"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_trace_run_refuses_bad_traces_in_one_line(text, message, tmp_path, capsys):
    path = tmp_path / "bad.trace"
    path.write_text(text)
    assert main(["trace", "run", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and str(path) in err[0], err


def test_trace_run_keeps_one_channel_of_a_multichannel_trace(tmp_path):
    whole = (DATA / "aim_micro_rdmac_1024_16banks_ch31.trace").read_text().replace("0x1", "0xffffffff")
    path = tmp_path / "all.trace"
    path.write_text(whole)
    cut = aimtrace.read(DATA / "aim_micro_rdmac_1024_16banks_ch31.trace")
    kept = aimtrace.read(path, channel=31)
    assert kept.kind.tolist() == cut.kind.tolist() and kept.channel == 31


def test_trace_export_writes_a_trace_the_run_reads(tmp_path, capsys):
    out = tmp_path / "pair.trace"
    assert main(["trace", "export", "--model", "llama-3.1-8b", "--lengths", "2048", "--pair", "--out", str(out)]) == 0
    assert out.read_text() == (DATA / "attn_llama8b_pair_2048.trace").read_text()
    capsys.readouterr()
    assert main(["trace", "export", "--gemv", "12x7", "--out", str(out)]) == 2
    assert main(["trace", "export", "--out", str(out)]) == 2
    assert main(["trace", "export", "--lengths", "64", "--channel", "40", "--out", str(out)]) == 2
    assert main(["trace", "export", "--gemv", "64x64", "--out", str(tmp_path / "no" / "dir.trace")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("pimphony: error: ") for line in err)
