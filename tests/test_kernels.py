"""The compiled execution path (model/kernels.py) against the reference paths, state and errors alike."""

import ml_dtypes
import numpy as np
import pytest

from pimphony.model import kernels
from pimphony.model.config import ModuleOrg
from pimphony.model.hub import PimHub
from pimphony.model.isa import Instruction, Opcode
from pimphony.model.numerics import bf16_bits

ORG = ModuleOrg.load("aimx-16ch")
GPR_USED = 400


def test_bf16_rounding_matches_ml_dtypes_on_special_and_random_patterns():
    rng = np.random.default_rng(2026)
    special = [0x7F800001, 0xFF800001, 0x7FC00000, 0x7F7FFFFF, 0x3F808000, 0x3F818000, 0x80000000,
               0x7F800000, 0x00008000, 0x00018000, 0x807FFFFF, 0x7F7F8000]
    patterns = np.concatenate([np.array(special, np.uint32), rng.integers(0, 2**32, 4000, dtype=np.uint32)])
    values = patterns.view(np.float32)
    with np.errstate(invalid="ignore", over="ignore"):
        want = values.astype(ml_dtypes.bfloat16).astype(np.float32).view(np.uint32)
    got = np.array([kernels.bf16_round(v) for v in values], dtype=np.float32).view(np.uint32)
    assert np.array_equal(got, want)


def _random_program(rng, n: int, broken: float) -> list[Instruction]:
    """Instructions that follow the rules (the generator tracks the open rows), each replaced with
    probability ``broken`` by one drawn at random, which may break a rule (closed or wrong row, an index
    past its buffer, a DPA opcode, a channel outside the module)."""
    open_row = np.full(ORG.channels, -1)
    out = []
    for _ in range(n):
        if rng.random() < broken:
            op = Opcode(int(rng.integers(0, 9)))
            mask = int(rng.integers(1, 1 << ORG.channels)) if rng.random() < 0.9 else 1 << ORG.channels
            size = int(rng.integers(1, 9)) if op in (Opcode.WR_INP, Opcode.WR_BIAS, Opcode.MAC, Opcode.RD_OUT) else 1
            ins = Instruction(op, mask, op_size=size, row=int(rng.choice([0, 2, 9, 17000])), col=int(rng.integers(0, 66)),
                              gbuf=int(rng.integers(0, 66)), obuf=int(rng.integers(0, 17)),
                              gpr=int(rng.choice([0, 5, ORG.gpr_entries - 3])))
        else:
            span = int(rng.choice([1, 2, 4, 8, 16]))
            first = int(rng.integers(0, ORG.channels // span)) * span
            chans = np.arange(first, first + span)
            rows = set(open_row[chans].tolist())
            mask = int(sum(1 << int(c) for c in chans))
            size = int(rng.integers(1, 9))
            if rows == {-1}:
                ins = Instruction(Opcode.ACT, mask, row=int(rng.choice([0, 1, 2, 3, 9])))
            elif len(rows) > 1 or rng.random() < 0.1:
                ins = Instruction(Opcode.PRE, mask)
            else:
                op = Opcode(int(rng.choice([Opcode.WR_INP, Opcode.WR_BIAS, Opcode.MAC, Opcode.MAC, Opcode.RD_OUT])))
                fields = {"row": rows.pop(), "col": int(rng.integers(0, 64 - size)),
                          "gbuf": int(rng.integers(0, 64 - size)), "obuf": int(rng.integers(0, 16 - size)),
                          "gpr": int(rng.integers(0, GPR_USED - size * len(chans)))}
                ins = Instruction(op, mask, op_size=size, **fields)
        if ins.op == Opcode.ACT and ins.ch_mask < 1 << ORG.channels:
            open_row[[c for c in range(ORG.channels) if ins.ch_mask >> c & 1]] = ins.row
        elif ins.op == Opcode.PRE and ins.ch_mask < 1 << ORG.channels:
            open_row[[c for c in range(ORG.channels) if ins.ch_mask >> c & 1]] = -1
        out.append(ins)
    return out


def _run(mode: str, program: list[Instruction], seed: int):
    hub = PimHub(ORG, 0.125, mode=mode)
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((3, ORG.channels, ORG.banks, ORG.columns)) * 3
    hub.channels.write_rows(np.arange(ORG.channels), 1, bf16_bits(data))   # rows 1..3 backed, 0 and 9 read zeros
    hub.gpr.write(np.arange(1, GPR_USED), rng.standard_normal((GPR_USED - 1, 16)) * 4, "setup")
    try:
        hub.execute_all(program)
        error = None
    except (IndexError, ValueError, RuntimeError) as exc:
        error = (type(exc), str(exc))
    a = hub.channels
    return error, {"open_row": a.open_row, "gbuf": a.gbuf, "obuf": a.obuf, "gpr": hub.gpr.data,
                   "commands": hub.commands, "mac_ops": np.array([a.mac_ops]),
                   "row_buffer": a.row_buffer[a.open_row >= 0]}


@pytest.mark.parametrize("seed", range(12))
def test_random_programs_leave_the_same_state_and_raise_the_same_error(seed):
    """Each program runs on the compiled path and on the instruction path: both stop at the same
    instruction with the same exception and message, or both finish, and every buffer holds the same bits."""
    print(f"seed {seed}")
    _same_on_both_paths(seed)


def _same_on_both_paths(seed: int) -> None:
    program = _random_program(np.random.default_rng(seed), 400, broken=0.01 if seed % 2 else 0.0)
    fast_error, fast = _run("compiled", program, seed)
    ref_error, ref = _run("instructions", program, seed)
    assert fast_error == ref_error
    for name, value in ref.items():
        assert np.array_equal(fast[name].view(np.uint8), value.view(np.uint8)), name


@pytest.mark.parametrize("cores", [1, 3])
def test_any_number_of_threads_leaves_the_same_state(cores, monkeypatch):
    """The compiled path on one thread and on three (16 channels dealt unevenly): the same state and errors
    as the instruction path, whatever the machine's cores."""
    from pimphony.model import threads

    monkeypatch.setattr(threads, "cores", lambda: cores)
    for seed in (1, 4):
        _same_on_both_paths(seed)


def test_random_programs_reach_both_ends():
    """The draw above is not degenerate: some programs finish and some stop at a broken rule."""
    ends = [_run("instructions", _random_program(np.random.default_rng(s), 400, broken=0.01 if s % 2 else 0.0), s)
            for s in range(12)]
    assert all(error is None for error, _ in ends[0::2])
    assert all(error is not None for error, _ in ends[1::2])
    assert all(state["mac_ops"][0] > 0 for _, state in ends[0::2])


def test_warm_up_compiles_the_signature_the_hub_calls():
    """``pimphony run`` compiles the loop while the simulator builds; the golden channels of the
    simulations must then find that very signature in numba's cache, not compile another."""
    kernels.warm_up()
    _run("compiled", _random_program(np.random.default_rng(0), 50, broken=0.0), 0)
    signatures = getattr(kernels.run_instructions, "signatures", None)
    assert signatures is None or len(signatures) == 1
