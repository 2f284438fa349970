"""DPA placement and DPA programs (Dyn-Loop / Dyn-Modi) for decode attention under TCP.

* :func:`place_dpa` opens the requests in a :class:`~pimphony.model.kvcache.DpaAllocator` and turns
  its VA2PA table into placements: virtual K/V row ``i`` of a (request, KV head) lives in row
  ``i mod rows_per_chunk`` of the physical chunk that holds virtual chunk ``i div rows_per_chunk``.
* :func:`lower_dpa` writes one pair's attention as a :class:`~pimphony.model.program.DpaProgram`: the
  plain lowering of a single full K row and a single full V row, annotated with DYN_MODI prefixes
  (row via VA2PA; GPR advance by the frame's row stride; the slot or tile each instruction touches)
  and wrapped in DYN_LOOPs. Its size does not depend on the context length.

The golden dispatcher (:class:`~pimphony.model.hub.DpaDispatcher`) expands such a program, for a
request's current length and VA2PA mapping, into exactly the instructions the plain lowering emits for
the same placement (tested).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from pimphony.model.config import ModuleOrg
from pimphony.model.isa import Instruction, Modi, Opcode, channel_mask, decode_all, dyn_loop, dyn_modi
from pimphony.model.kvcache import ChunkLayout, DpaAllocator, Status
from pimphony.model.program import DpaProgram

from .lower import AttentionLowering, LoweringError, sink_encoded
from .partition import PairPlacement, TokenCentricPartition


def place_dpa(partition: TokenCentricPartition, allocator: DpaAllocator, lengths, kv_heads: int,
              layer: int = 0) -> list[PairPlacement]:
    """Open every request (id = its index) in ``allocator`` and place its KV heads in the chunks it got."""
    if not isinstance(partition, TokenCentricPartition) or partition.modules != 1:
        raise LoweringError("DPA placement is defined for TCP on one module")
    out = []
    for r, length in enumerate(np.asarray(lengths).tolist()):
        status = allocator.open(r, length)
        if status != Status.OK:
            raise LoweringError(f"request {r} ({length} tokens) was not admitted: {status.name}")
        out += pair_placements(partition, allocator, r, kv_heads, layer)
    return out


def pair_placements(partition: TokenCentricPartition, allocator: DpaAllocator, request: int, kv_heads: int,
                    layer: int = 0) -> list[PairPlacement]:
    """The placements of an open request's KV heads at its current length, through its VA2PA mapping."""
    length = allocator.requests[request].length
    out = []
    for h in range(kv_heads):
        seg = layer * kv_heads + h
        module, k_channels, v_slices = partition.assign(request * kv_heads + h)
        k_rows, v_rows = partition.rows_needed(length, k_channels, v_slices)
        k_map = tuple(allocator.row_of(request, seg, 0, i) for i in range(k_rows))
        v_map = tuple(allocator.row_of(request, seg, 1, i) for i in range(v_rows))
        out.append(PairPlacement(request, h, length, module, k_channels, k_map, v_slices, v_map))
    return out


def dpa_block(lowering: AttentionLowering, p: PairPlacement) -> int:
    """The largest block that is whole K rows and whole V rows (so every block starts a row) and whose
    GPR frame fits."""
    return lowering.largest_block(p, math.lcm(*lowering.part.row_tokens(p.k_channels, p.v_slices)))


def lower_dpa(lowering: AttentionLowering, p: PairPlacement, block: int | None = None) -> DpaProgram:
    """The DPA program of pair ``p`` (any length: the program is the same for every length)."""
    if lowering.heads_per_pass < lowering.g:
        raise LoweringError("DPA programs need every query head of a group in the GBuf at once")
    block = dpa_block(lowering, p) if block is None else block
    frame = lowering.frame(p, block)
    k_row, v_row = lowering.part.row_tokens(p.k_channels, p.v_slices)
    k_tmpl = replace(p, length=k_row, k_row_map=(0,), v_row_map=(0,))
    v_tmpl = replace(p, length=v_row, k_row_map=(0,), v_row_map=(0,))
    qk, _ = lowering._lower_qk(k_tmpl, 0, k_row, frame)
    sv, _, _ = lowering._lower_sv(v_tmpl, 0, v_row, frame)
    qk, sv = decode_all(sink_encoded(qk)), decode_all(sink_encoded(sv))
    first_act = next(i for i, ins in enumerate(qk) if ins.op == Opcode.ACT)
    prologue, qk_body = qk[:first_act], qk[first_act:]
    kb = lowering.kb
    qk_code = _annotate(qk_body, {Opcode.RD_OUT: frame.qk_row}, _k_slots(qk_body, kb))
    sv_code = _annotate(sv, {Opcode.WR_INP: frame.probs_row, Opcode.RD_OUT: frame.partials_row}, _v_tiles(sv))
    k_mask = channel_mask(p.k_channels)
    v_mask = channel_mask(p.v_channels)
    return DpaProgram(block_tokens=block, prologue=prologue,
                      qk=[dyn_loop(0, k_row, len(qk_code), k_mask), *qk_code],
                      sv=[dyn_loop(1, v_row, len(sv_code), v_mask), *sv_code])


def _annotate(body: list[Instruction], gpr_strides: dict[Opcode, int], guards: list[int]) -> list[Instruction]:
    """Prefix every instruction with its DYN_MODIs: row (ACT, MAC), GPR stride, guard (+1; 0 = row level)."""
    out = []
    for ins, guard in zip(body, guards, strict=True):
        if ins.op in (Opcode.ACT, Opcode.MAC):
            out.append(dyn_modi(Modi.ROW))
        if ins.op in gpr_strides:
            out.append(dyn_modi(Modi.GPR, gpr_strides[ins.op]))
        if guard >= 0:
            out.append(dyn_modi(Modi.GUARD, guard + 1))
        out.append(ins)
    return out


def _k_slots(body: list[Instruction], kb: int) -> list[int]:
    """The key slot each QK^T instruction touches (-1: the whole row)."""
    macs = [(i, ins.col // kb, ins.obuf) for i, ins in enumerate(body) if ins.op == Opcode.MAC]
    out = []
    for i, ins in enumerate(body):
        if ins.op == Opcode.MAC:
            out.append(ins.col // kb)
        elif ins.op == Opcode.WR_BIAS:
            out.append(next(s for j, s, e in macs if j > i and ins.obuf <= e < ins.obuf + ins.op_size))
        elif ins.op == Opcode.RD_OUT:
            out.append(next(s for j, s, e in reversed(macs) if j < i and ins.obuf <= e < ins.obuf + ins.op_size))
        else:
            out.append(-1)
    return out


def _v_tiles(body: list[Instruction]) -> list[int]:
    """The tile column each SV WR_INP / MAC touches (-1: the whole row or slice)."""
    out = []
    for i, ins in enumerate(body):
        if ins.op == Opcode.MAC:
            out.append(ins.col)
        elif ins.op == Opcode.WR_INP:
            out.append(next(m.col for m in body[i + 1:] if m.op == Opcode.MAC and m.gbuf == ins.gbuf))
        else:
            out.append(-1)
    return out


def head_program(org: ModuleOrg, group: int, head_dim: int) -> DpaProgram:
    """The DPA program of one (request, KV head) pair with ``group`` query heads per KV head: under TCP
    on one module it is the same for every pair and every length (only VA2PA differs)."""
    part = TokenCentricPartition(org, head_dim)
    place = place_dpa(part, DpaAllocator(ChunkLayout(org, head_dim), 1, 1), [1], 1)[0]
    return lower_dpa(AttentionLowering(part, group, org.obuf_entries), place)
