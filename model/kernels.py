"""The golden model's compiled execution path: a whole list of instructions in one call.

:func:`run_instructions` is the HUB's sequencer and the channels' command kernels
(:meth:`PimHub.execute <pimphony.model.hub.PimHub.execute>`,
:class:`~pimphony.model.channel.ChannelArray`) written as one loop over an encoded instruction
list (:func:`~pimphony.model.isa.encode`) and compiled with numba. It computes exactly what the
instruction-by-instruction path computes, bit for bit (a test holds the two equal on both partitions,
MHA and GQA, odd lengths):

* a MAC repetition multiplies bf16 pairs (exact in fp32) and sums the products with the same fixed
  binary tree (pairs, then pairs of pairs, ...); what differs is only the order in which *independent*
  sums are formed (every bank of a tree level at once), never the order of the additions inside one;
* an OBuf entry accumulates its repetitions in program order, one fp32 addition each;
* WR-INP, WR-BIAS and RD-OUT round to bf16 as :func:`~pimphony.model.numerics.to_bf16` does (nearest
  even; a NaN becomes the quiet NaN of its sign).

The kernel reads the banks' bf16 bit patterns where they are stored (``(channels, columns, banks)``
per row, so that one element of every bank is one contiguous vector) and widens each to float32 where a
MAC multiplies it (:func:`bf16_value`, exact): the MACs then multiply contiguous vectors of all banks,
which the compiler vectorises. (Widening each open row once per call into a float32 copy was slower,
by the copy's memory traffic, even where every head of a GQA group reads the row again.)

Errors: the kernel executes nothing it has not checked. It stops *before* the first instruction that
breaks a rule, or that it does not handle (DPA opcodes, a row command with an op-size), and returns
that instruction's index; the caller runs that one instruction on the reference path, which raises
the reference's own error or executes it, and resumes the kernel after it. The state is therefore at
every point what the reference would hold.
"""

from __future__ import annotations

import numpy as np

from .compiled import array_list, compiled
from .isa import Instruction, Opcode, encode

ACT, PRE, REF, WR_INP, WR_BIAS, MAC, RD_OUT = (int(op) for op in (
    Opcode.ACT, Opcode.PRE, Opcode.REF, Opcode.WR_INP, Opcode.WR_BIAS, Opcode.MAC, Opcode.RD_OUT))
"""The opcodes as plain ints, which compiled loops (here and in the scheduler's) read as constants."""


@compiled
def bf16_round(x):
    """One float32 rounded to bfloat16 (nearest even) and returned as float32, as ml_dtypes rounds."""
    u = np.float32(x).view(np.uint32)
    if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):                  # NaN: quiet, sign kept
        return np.uint32((u & np.uint32(0x80000000)) | np.uint32(0x7FC00000)).view(np.float32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return np.uint32(r).view(np.float32)


@compiled
def bf16_value(bits):
    """The float32 value of a bfloat16 bit pattern (uint16): exact, the pattern in the upper half."""
    return np.uint32(np.uint32(bits) << np.uint32(16)).view(np.float32)


@compiled
def mac16(data, gbuf, gb, col, size, acc):
    """``size`` MAC repetitions of one channel, accumulated into ``acc``, when a burst is 16 elements and
    the channel has 16 banks (the AiM geometry of every shipped module): the general loop of
    :func:`run_instructions` with both sizes known to the compiler and each bank's tree written out, its
    running sum in a local vector that cannot alias the operands, which the compiler then keeps in
    vector registers (about twice as fast, on one row, as the same tree through a scratch array in
    memory). The products and additions are the same, in the same order. ``data`` is the channel's
    open row as bf16 bits ``(columns, banks)``, ``gbuf`` its GBuf."""
    t = np.empty(16, np.float32)
    for b in range(16):
        t[b] = acc[b]
    for r in range(size):
        v = data[(col + r) * 16:(col + r + 1) * 16]
        g = gbuf[gb + r]
        for b in range(16):
            t0 = bf16_value(v[0, b]) * g[0] + bf16_value(v[1, b]) * g[1]
            t1 = bf16_value(v[2, b]) * g[2] + bf16_value(v[3, b]) * g[3]
            t2 = bf16_value(v[4, b]) * g[4] + bf16_value(v[5, b]) * g[5]
            t3 = bf16_value(v[6, b]) * g[6] + bf16_value(v[7, b]) * g[7]
            t4 = bf16_value(v[8, b]) * g[8] + bf16_value(v[9, b]) * g[9]
            t5 = bf16_value(v[10, b]) * g[10] + bf16_value(v[11, b]) * g[11]
            t6 = bf16_value(v[12, b]) * g[12] + bf16_value(v[13, b]) * g[13]
            t7 = bf16_value(v[14, b]) * g[14] + bf16_value(v[15, b]) * g[15]
            t[b] += ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7))
    for b in range(16):
        acc[b] = t[b]


@compiled
def run_instructions(enc, start, stop, lanes, slot_of_row, rows, open_row, gbuf, obuf, gpr, commands):
    """Execute ``enc[start:stop]`` (see :func:`~pimphony.model.isa.encode`; columns
    :data:`~pimphony.model.isa.FIELDS`, read by position) on one module's state, in place, for the
    channels in the bit mask ``lanes``.

    ``rows[slot_of_row[r]]`` holds bank row ``r`` as bf16 bits ``(channels, columns, banks)``; a row
    whose slot is -1 was never written and reads as zeros (the last of ``rows`` is a zero row). Returns
    ``(index, macs)``: the index of the first instruction not executed (``stop`` when all were) and
    the multiply-accumulates performed.

    Channels outside ``lanes`` are left alone, except their open rows: every call tracks all channels'
    rows in its ``open_row`` and checks every instruction on all its channels, so calls for disjoint
    lanes, each with its own copy of ``open_row``, stop at the same instruction. They may run at the
    same time (the loop releases the GIL) on a span without GPR hazards (:func:`gpr_hazard_free`):
    channels share nothing else.
    """
    n_ch, n_gbuf, w = gbuf.shape
    n_obuf, n_banks = obuf.shape[1], obuf.shape[2]
    n_gpr = gpr.shape[0]
    n_rows = slot_of_row.shape[0]
    n_cols = rows[0].shape[1]
    bursts = n_cols // w
    half = w // 2
    t = np.empty((half, n_banks), np.float32)
    acc = np.empty(n_banks, np.float32)
    chans = np.empty(n_ch, np.int64)
    macs = 0
    for k in range(start, stop):
        op, mask, size, row, col, gb, ob, gp = enc[k, 0], enc[k, 1], enc[k, 2], enc[k, 3], enc[k, 4], \
            enc[k, 5], enc[k, 6], enc[k, 7]
        if mask <= 0 or (mask >> n_ch) != 0 or size < 1:
            return k, macs
        m = 0
        for c in range(n_ch):
            if (mask >> c) & 1:
                chans[m] = c
                m += 1
        mine = mask & lanes
        if op == ACT:
            if size != 1 or row < 0 or row >= n_rows:
                return k, macs
            for i in range(m):
                if open_row[chans[i]] >= 0:
                    return k, macs
            for i in range(m):
                open_row[chans[i]] = row
        elif op == PRE:
            if size != 1:
                return k, macs
            for i in range(m):
                open_row[chans[i]] = -1
        elif op == REF:
            if size != 1:
                return k, macs
            for i in range(m):
                if open_row[chans[i]] >= 0:
                    return k, macs
        elif op == WR_INP:
            if gp < 0 or gp + size > n_gpr or gb < 0 or gb + size > n_gbuf:
                return k, macs
            for i in range(m):
                if (mine >> chans[i]) & 1:
                    for r in range(size):
                        for j in range(w):
                            gbuf[chans[i], gb + r, j] = bf16_round(gpr[gp + r, j])
        elif op == WR_BIAS:
            if gp < 0 or gp >= n_gpr or ob < 0 or ob + size > n_obuf:
                return k, macs
            for i in range(m):
                if (mine >> chans[i]) & 1:
                    for r in range(size):
                        for b in range(n_banks):
                            obuf[chans[i], ob + r, b] = bf16_round(gpr[gp, b])
        elif op == MAC:
            if col < 0 or col + size > bursts or gb < 0 or gb + size > n_gbuf or ob < 0 or ob >= n_obuf:
                return k, macs
            for i in range(m):
                if open_row[chans[i]] != row:
                    return k, macs
            slot = slot_of_row[row]
            data = rows[slot if slot >= 0 else len(rows) - 1]
            for i in range(m):
                c = chans[i]
                if not (mine >> c) & 1:
                    continue
                macs += n_banks * size * w
                for b in range(n_banks):
                    acc[b] = obuf[c, ob, b]
                if w == 16 and n_banks == 16:
                    mac16(data[c], gbuf[c], gb, col, size, acc)
                else:
                    for r in range(size):
                        base = (col + r) * w
                        for j in range(half):
                            g0 = gbuf[c, gb + r, 2 * j]
                            g1 = gbuf[c, gb + r, 2 * j + 1]
                            for b in range(n_banks):
                                p0 = bf16_value(data[c, base + 2 * j, b]) * g0
                                p1 = bf16_value(data[c, base + 2 * j + 1, b]) * g1
                                t[j, b] = p0 + p1
                        h = half // 2
                        while h >= 1:
                            for j in range(h):
                                for b in range(n_banks):
                                    t[j, b] = t[2 * j, b] + t[2 * j + 1, b]
                            h //= 2
                        for b in range(n_banks):
                            acc[b] += t[0, b]
                for b in range(n_banks):
                    obuf[c, ob, b] = acc[b]
        elif op == RD_OUT:
            if ob < 0 or ob + size > n_obuf or gp < 0 or gp + m * size > n_gpr:
                return k, macs
            for i in range(m):
                if (mine >> chans[i]) & 1:
                    for r in range(size):
                        for b in range(n_banks):
                            gpr[gp + i * size + r, b] = bf16_round(obuf[chans[i], ob + r, b])
        else:
            return k, macs
        for i in range(m):
            if (mine >> chans[i]) & 1:
                commands[chans[i], op] += size
    return stop, macs


@compiled
def gpr_hazard_free(enc, start, n_gpr):
    """The end of the longest span ``enc[start:end]`` in which no instruction reads a GPR entry that an
    RD-OUT before it in the span wrote, nor writes one that an instruction before it read or wrote:
    what one channel does to the GPR there cannot reach another channel's instructions, so the span's
    channels may run in any order. An attention phase is one such span (it reads queries, zeros or
    probabilities and writes scores or partial sums). Entries outside ``0 .. n_gpr - 1`` are left to
    :func:`run_instructions`, which refuses them."""
    state = np.zeros(n_gpr, np.int8)                   # 1: read in the span, 2: written
    for k in range(start, enc.shape[0]):
        op, mask, size, gp = enc[k, 0], enc[k, 1], enc[k, 2], enc[k, 7]
        if op in (WR_INP, WR_BIAS):
            lo, hi = gp, gp + (size if op == WR_INP else 1)
            for x in range(max(lo, 0), min(hi, n_gpr)):
                if state[x] == 2:
                    return k
                state[x] = 1
        elif op == RD_OUT:
            m = 0
            for c in range(63):
                m += (mask >> c) & 1
            for x in range(max(gp, 0), min(gp + m * size, n_gpr)):
                if state[x] != 0:
                    return k
            for x in range(max(gp, 0), min(gp + m * size, n_gpr)):
                state[x] = 2
    return enc.shape[0]


def warm_up() -> None:
    """Compile (or load from numba's disk cache) :func:`run_instructions` and :func:`gpr_hazard_free` now, for
    the argument types the
    hub passes: a caller may overlap the first compilation (several seconds) with other work, such as a
    simulator build."""
    row = np.zeros((1, 16, 2), dtype=np.uint16)
    enc = encode([Instruction(Opcode.PRE, 1)])
    run_instructions(enc, 0, 1, 1, np.full(1, -1, dtype=np.int64), array_list([row]),
                     np.full(1, -1, dtype=np.int64), np.zeros((1, 1, 2), np.float32), np.zeros((1, 1, 2), np.float32),
                     np.zeros((1, 2), np.float32), np.zeros((1, 7), np.int64))
    gpr_hazard_free(enc, 0, 1)
