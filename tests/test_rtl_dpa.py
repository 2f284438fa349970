# amaranth: UnusedElaboratable=no
"""DpaController RTL against the golden DPA controller, operation by operation, in amaranth.sim."""

import numpy as np
import pytest
from amaranth.hdl import Shape
from hypothesis import given, settings
from hypothesis import strategies as st

from pimphony.model.config import ModuleOrg
from pimphony.model.dpa import DpaConfig, DpaControllerModel, DpaOp, DpaOperation, load_program
from pimphony.model.isa import Format
from pimphony.model.kvcache import Status
from pimphony.rtl.dpa import DpaController
from pimphony.scheduler.dpa import head_program
from pimphony.verification.configs import dpa_testbench_config
from pimphony.verification.env.dpa import OperationSource, error_cases, fetched_entries
from pimphony.verification.sim import simulate_dpa

ORG = ModuleOrg.load("aimx-16ch")
FMT = Format.for_org(ORG)


def small_config(head_dim: int = 128, **kw) -> DpaConfig:
    args = {"max_requests": 4, "segments": 2, "max_chunks_per_segment": 4, "chunks": 24} | kw
    return DpaConfig(ORG, head_dim, **args)


def load_ops(group: int, head_dim: int = 128, block: int | None = None) -> list[DpaOperation]:
    """Operations that load the DPA program of one attention pair with ``group`` query heads per KV head."""
    return load_program(head_program(ORG, group, head_dim), FMT, block)


def check_against_golden(config: DpaConfig, ops: list[DpaOperation], ready_pattern=None):
    """Run ``ops`` through the RTL and the golden model; every response and instruction must agree."""
    rtl = simulate_dpa(DpaController(config), ops, ready_pattern)
    gold = DpaControllerModel(config)
    for i, op in enumerate(ops):
        response, emitted = gold.step(op)
        assert rtl.responses[i] == response, f"operation {i} {op}"
        assert rtl.emitted[i] == emitted, f"operation {i} {op}: instructions differ"
    gold.alloc.check()
    return rtl, gold


# -- constructor checks ---------------------------------------------------------------------------------

def test_config_messages():
    with pytest.raises(ValueError, match=r"^segments must be at least 1, got 0$"):
        DpaConfig(ORG, 128, segments=0)
    with pytest.raises(ValueError, match=r"^chunks must be in 1\.\.8192 \(the module's\), got 9000$"):
        DpaConfig(ORG, 128, chunks=9000)


def test_controller_needs_powers_of_two():
    with pytest.raises(ValueError, match=r"^DpaController needs k_tokens to be a power of two, got 6144$"):
        DpaController(DpaConfig(ORG, 80))


def test_default_storage_is_under_the_papers_200_kb():
    bits = DpaController.storage_bits(DpaConfig(ORG, 128))
    assert bits["va2pa"] == 16 * 2 * 32 * 32 * 13 and bits["free_list"] == 8192 * 13
    assert sum(bits.values()) / 8 < 200 * 1024


def test_storage_is_what_the_rtl_builds():
    """Each buffer's figure equals the bits of the elaborated design: the memories' depth x width, and
    the config buffer's slot registers (valid, id, length and chunks held)."""
    from amaranth.hdl import Fragment

    config = DpaConfig(ORG, 128)
    parts = {name: sub for sub, name, _ in Fragment.get(DpaController(config), None).subfragments}

    def memory_bits(part: str) -> int:
        memories = [sub._data for sub, _, _ in parts[part].subfragments]
        return sum(memory.depth * Shape.cast(memory.shape).width for memory in memories)

    registers = {sig.name: len(sig) for stmt in parts["config_buffer"].statements.get("sync", [])
                 for sig in stmt._lhs_signals()
                 if not sig.name.startswith(("w_", "hit", "found", "slot", "current"))}   # not the write, the lookup
    built = {"free_list": memory_bits("free_list"), "va2pa": memory_bits("va2pa"),
             "config_buffer": sum(registers.values()), "instruction_buffer": memory_bits("loader")}
    assert DpaController.storage_bits(config) == built


# -- equivalence ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("group", "head_dim"), [(4, 128), (1, 128), (2, 64)])
def test_attention_runs_equal_the_golden_dispatcher(group, head_dim):
    ops = load_ops(group, head_dim)
    for rid, length in enumerate([1, 17, 2047, 2049, 9000]):
        ops += [DpaOperation(DpaOp.OPEN, rid, arg=length), DpaOperation(DpaOp.RUN, rid, segment=rid % 2),
                DpaOperation(DpaOp.CLOSE, rid)]
    rtl, _ = check_against_golden(small_config(head_dim), ops)
    runs = [e for op, e in zip(ops, rtl.emitted, strict=True) if op.op == DpaOp.RUN]
    assert len(runs) == 5 and all(runs) and len(runs[-1]) > len(runs[0])


def test_decoder_sustains_one_entry_per_cycle_with_six_cycles_of_latency():
    program = head_program(ORG, 4, 128)
    ops = [*load_program(program, FMT), DpaOperation(DpaOp.OPEN, 3, arg=12000), DpaOperation(DpaOp.RUN, 3)]
    rtl = simulate_dpa(DpaController(small_config()), ops)
    fetched = fetched_entries(program, program.block_tokens, 12000)
    assert fetched > 500
    # accepted in cycle 0 (the config buffer looked up), its answer registered in 1, decided in 2,
    # entries fetched in cycles 3 .. F + 2, the last instruction out in F + 8, the response in F + 9
    assert rtl.cycles[-1] == fetched + 10
    assert rtl.first_out[-1] == 9          # fetched in cycle 3, decoded in 4 .. 8, on ins_out in 9


def random_ready(seed: int):
    rng = np.random.default_rng(seed)
    pattern = rng.random(4096) < 0.7
    return lambda cycle: bool(pattern[cycle % 4096])


operation = st.one_of(
    st.builds(lambda r, n: DpaOperation(DpaOp.OPEN, r, arg=n), st.integers(0, 5),
              st.one_of(st.integers(0, 17000), st.sampled_from([1, 4095, 4096, 4097, 16384, 16385]))),
    st.builds(lambda r, n: DpaOperation(DpaOp.APPEND, r, arg=n), st.integers(0, 5),
              st.one_of(st.integers(0, 3000), st.sampled_from([1, 4096]))),
    st.builds(lambda r: DpaOperation(DpaOp.CLOSE, r), st.integers(0, 5)),
    st.builds(lambda r, s, kv, t: DpaOperation(DpaOp.TRANSLATE, r, s, kv, t), st.integers(0, 5), st.integers(0, 2),
              st.integers(0, 1), st.integers(0, 17000)),
    st.builds(lambda r, s: DpaOperation(DpaOp.RUN, r, s), st.integers(0, 5), st.integers(0, 2)),
    st.builds(lambda op: DpaOperation(op), st.integers(7, 15)),
)


@pytest.mark.long(25)
@settings(max_examples=20, deadline=None)
@given(ops=st.lists(operation, min_size=1, max_size=25), block=st.sampled_from([None, 2048, 3000, 6144]),
       seed=st.integers(0, 2**16))
def test_random_operation_sequences_equal_the_golden_model(ops, block, seed):
    print(f"replay: ready-pattern seed {seed}")
    check_against_golden(small_config(), load_ops(4, block=block) + ops, random_ready(seed))


# -- every error path, with the status the specification gives ---------------------------------------------

def test_every_error_status_and_no_state_change():
    cfg = dpa_testbench_config()
    cases = error_cases(cfg)
    rtl, _ = check_against_golden(cfg, [op for op, _ in cases])
    assert [r.status for r in rtl.responses] == [s for _, s in cases]
    for i, (r, prev) in enumerate(zip(rtl.responses[1:], rtl.responses, strict=False), 1):
        if r.status != Status.OK:
            assert r.free == prev.free, f"operation {i} failed but changed the free list"
    assert rtl.emitted[-1] and rtl.emitted[-1] == rtl.emitted[-3]


def test_many_requests_come_and_go_without_leaking():
    """A seeded random walk of 400 operations over a fragmented pool, then every request closed."""
    cfg = dpa_testbench_config()
    rng = np.random.default_rng(7)
    source = OperationSource(cfg, rng)
    ops = load_ops(4, block=4096) + [source.next() for _ in range(400)] + source.close_all()
    rtl, gold = check_against_golden(cfg, ops, random_ready(7))
    statuses = {r.status for r in rtl.responses}
    assert {Status.OK, Status.OUT_OF_CHUNKS, Status.UNKNOWN_REQUEST, Status.TABLE_FULL} <= statuses
    grew = sum(1 for op, r in zip(ops, rtl.responses, strict=True)
               if op.op == DpaOp.APPEND and r.status == Status.OK and r.free < 32)
    assert grew > 20 and rtl.responses[-1].free == 32 and not gold.alloc.requests


def test_default_configuration_runs_attention():
    """The shipped parameters (16 requests, 32 segments, 8192 chunks): the free list is rebuilt in one
    cycle per chunk after reset, and a head_dim-128 program runs as the golden model says."""
    cfg = DpaConfig(ORG, 128)
    ops = [*load_ops(1), DpaOperation(DpaOp.OPEN, 9, arg=5000), DpaOperation(DpaOp.RUN, 9, segment=31), DpaOperation(DpaOp.CLOSE, 9)]
    rtl, _ = check_against_golden(cfg, ops)
    assert rtl.init_cycles == cfg.n_chunks
    assert rtl.responses[-1].free == cfg.n_chunks and rtl.emitted[-2]
