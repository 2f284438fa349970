"""DPA programs: the dispatcher's expansion equals the plain lowering for the same placement, the
program does not grow with the context, and attention through DPA matches the reference."""

from collections import deque

import numpy as np
import pytest
from helpers import model

from pimphony.model.config import ModelConfig, ModuleOrg
from pimphony.model.hub import DpaDispatcher
from pimphony.model.isa import Opcode
from pimphony.model.kvcache import ChunkLayout, DpaAllocator
from pimphony.scheduler.dpa import dpa_block, lower_dpa, place_dpa
from pimphony.scheduler.golden import AttentionInputs, run_golden_attention
from pimphony.scheduler.lower import AttentionLowering, LoweringError
from pimphony.scheduler.partition import TokenCentricPartition

ORG = ModuleOrg.load("aimx-16ch")
LENGTHS = [1, 17, 255, 2047, 2048, 2049, 4097, 9000, 30000]


def fragmented_allocator(kv_heads: int, head_dim: int) -> DpaAllocator:
    """An allocator whose free list is in random order, as after many requests came and went."""
    a = DpaAllocator(ChunkLayout(ORG, head_dim), segments=kv_heads, max_requests=32)
    a.free = deque(np.random.default_rng(0).permutation(list(a.free)).tolist())
    return a


@pytest.mark.parametrize(("heads", "kv_heads", "head_dim"), [(8, 8, 128), (8, 2, 128), (8, 1, 128), (4, 2, 64),
                                                             (4, 4, 80)])
def test_expansion_equals_the_plain_lowering(heads, kv_heads, head_dim):
    m = model(heads, kv_heads, head_dim)
    part = TokenCentricPartition(ORG, head_dim)
    alloc = fragmented_allocator(kv_heads, head_dim)
    places = place_dpa(part, alloc, LENGTHS, kv_heads)
    assert any(p.k_row_map != tuple(range(p.k_row_map[0], p.k_row_map[0] + p.k_rows)) for p in places)
    lowering = AttentionLowering(part, m.group, ORG.obuf_entries)
    lowering.block_tokens = dpa_block(lowering, places[0])
    steps = iter(lowering.lower(places)[0].steps)
    dispatcher = DpaDispatcher(ORG, head_dim)
    for p in places:
        program = lower_dpa(AttentionLowering(part, m.group, ORG.obuf_entries), p, lowering.block_tokens)
        blocks = dispatcher.expand(program, lambda kind, row, p=p: alloc.row_of(p.request, p.kv_head, kind, row),
                                   p.length)
        for qk, sv in blocks:
            step = next(steps)
            assert (qk, sv) == (step.qk, step.sv), f"request {p.request} ({p.length} tokens), KV head {p.kv_head}"
    assert next(steps, None) is None


def test_program_size_does_not_grow_with_context():
    m = ModelConfig.load("llama-3.1-8b")
    part = TokenCentricPartition(ORG, 128)
    alloc = DpaAllocator(ChunkLayout(ORG, 128), segments=m.kv_heads, max_requests=4)
    places = place_dpa(part, alloc, [1, 4096, 131072], m.kv_heads)
    lowering = AttentionLowering(part, m.group, ORG.obuf_entries)
    programs = [lower_dpa(lowering, p) for p in places[::m.kv_heads]]
    assert len({prog.size() for prog in programs}) == 1
    prog = programs[0]
    assert prog.qk[0].op == Opcode.DYN_LOOP and prog.sv[0].op == Opcode.DYN_LOOP
    assert prog.size() < 300
    plain = sum(len(s.qk) + len(s.sv) for s in lowering.lower(places[-m.kv_heads:-m.kv_heads + 1])[0].steps)
    assert plain > 20 * prog.size()                   # the plain program of a 128K-token head is far larger


@pytest.mark.parametrize(("name", "lengths"), [("llama-3.1-8b", [3000, 17, 4097]), ("qwen1.5-7b", [2049, 1])])
def test_attention_through_dpa_matches_the_reference(name, lengths):
    m = ModelConfig.load(name)
    inp = AttentionInputs.random(m, lengths, seed=2)
    dpa = run_golden_attention(m, ORG, inp, allocation="dpa")
    plain = run_golden_attention(m, ORG, inp, block_tokens=dpa_block(
        AttentionLowering(TokenCentricPartition(ORG, m.head_dim), m.group, ORG.obuf_entries),
        place_dpa(TokenCentricPartition(ORG, m.head_dim), DpaAllocator(ChunkLayout(ORG, m.head_dim), m.kv_heads, 8),
                  lengths, m.kv_heads)[0]))
    assert np.array_equal(dpa.out, plain.out)         # same values, other rows: bit-identical
    err = np.abs(dpa.out - dpa.reference.out).max(axis=2)
    assert (err <= dpa.reference.tolerance()).all()


def test_dpa_needs_tcp_on_one_module_and_whole_groups():
    m = model(16, 1, 128)                             # 16 heads x 8 entries > 64 GBuf entries
    part = TokenCentricPartition(ORG, 128)
    places = place_dpa(part, DpaAllocator(ChunkLayout(ORG, 128), 1, 2), [100], 1)
    with pytest.raises(LoweringError, match=r"DPA programs need every query head of a group in the GBuf at once"):
        lower_dpa(AttentionLowering(part, m.group, ORG.obuf_entries), places[0])
    with pytest.raises(LoweringError, match=r"DPA placement is defined for TCP on one module"):
        place_dpa(TokenCentricPartition(ORG, 128, modules=2), DpaAllocator(ChunkLayout(ORG, 128), 1, 2), [100], 1)


def test_cli_runs_attention_through_dpa(capsys):
    from pimphony.cli.main import main

    assert main(["attention", "--model", "llama-3.1-8b", "--lengths", "3000,17", "--alloc", "dpa", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "dpa KV placement" in out and "-> PASS" in out
    assert main(["attention", "--alloc", "dpa", "--partition", "hfp", "--quiet"]) == 2
    assert capsys.readouterr().err == "pimphony: error: DPA placement is defined for TCP on one module\n"
