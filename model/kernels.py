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
per row, so that one element of every bank is one contiguous vector) and widens a channel's open row to
float32 once per call, at its first MAC (the banks do not change during a call): the MACs then
multiply contiguous float32 vectors of all banks, which the compiler vectorises.

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


@compiled
def bf16_round(x):
    """One float32 rounded to bfloat16 (nearest even) and returned as float32, as ml_dtypes rounds."""
    u = np.float32(x).view(np.uint32)
    if (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000):                  # NaN: quiet, sign kept
        return np.uint32((u & np.uint32(0x80000000)) | np.uint32(0x7FC00000)).view(np.float32)
    r = (u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return np.uint32(r).view(np.float32)


@compiled
def mac16(values, gbuf, gb, col, size, acc, t):
    """``size`` MAC repetitions of one channel, accumulated into ``acc``, when a burst is 16 elements and
    the channel has 16 banks (the AiM geometry of every shipped module): the general loop of
    :func:`run_instructions` with both sizes known to the compiler, which then keeps each bank's tree in
    vector registers (2-3x faster). The products and additions are the same, in the same order.
    ``values`` is the channel's open row as float32 ``(columns, banks)``, ``gbuf`` its GBuf."""
    for r in range(size):
        base = (col + r) * 16
        for j in range(8):
            g0 = gbuf[gb + r, 2 * j]
            g1 = gbuf[gb + r, 2 * j + 1]
            v0 = values[base + 2 * j]
            v1 = values[base + 2 * j + 1]
            for b in range(16):
                p0 = v0[b] * g0
                p1 = v1[b] * g1
                t[j, b] = p0 + p1
        for b in range(16):
            acc[b] += ((t[0, b] + t[1, b]) + (t[2, b] + t[3, b])) + ((t[4, b] + t[5, b]) + (t[6, b] + t[7, b]))


@compiled
def run_instructions(enc, start, slot_of_row, rows, open_row, gbuf, obuf, gpr, commands):
    """Execute ``enc[start:]`` (see :func:`~pimphony.model.isa.encode`; columns :data:`~pimphony.model.isa.FIELDS`,
    read by position) on one module's state, in place.

    ``rows[slot_of_row[r]]`` holds bank row ``r`` as bf16 bits ``(channels, columns, banks)``; a row
    whose slot is -1 was never written and reads as zeros (the last of ``rows`` is a zero row). Returns
    ``(index, macs)``: the index of the first instruction not executed (``len(enc)`` when all were) and
    the multiply-accumulates performed.
    """
    n_ch, n_gbuf, w = gbuf.shape
    n_obuf, n_banks = obuf.shape[1], obuf.shape[2]
    n_gpr = gpr.shape[0]
    n_rows = slot_of_row.shape[0]
    n_cols = rows[0].shape[1]
    bursts = n_cols // w
    half = w // 2
    t = np.empty((half, n_banks), np.float32)
    held = np.full(n_ch, -1, np.int64)                  # the row each channel's float32 copy holds
    wide = np.empty((n_ch, n_cols, n_banks), np.uint32)
    values = wide.view(np.float32)
    acc = np.empty(n_banks, np.float32)
    chans = np.empty(n_ch, np.int64)
    macs = 0
    for k in range(start, enc.shape[0]):
        op, mask, size, row, col, gb, ob, gp = enc[k, 0], enc[k, 1], enc[k, 2], enc[k, 3], enc[k, 4], \
            enc[k, 5], enc[k, 6], enc[k, 7]
        if mask <= 0 or (mask >> n_ch) != 0 or size < 1:
            return k, macs
        m = 0
        for c in range(n_ch):
            if (mask >> c) & 1:
                chans[m] = c
                m += 1
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
                for r in range(size):
                    for j in range(w):
                        gbuf[chans[i], gb + r, j] = bf16_round(gpr[gp + r, j])
        elif op == WR_BIAS:
            if gp < 0 or gp >= n_gpr or ob < 0 or ob + size > n_obuf:
                return k, macs
            for i in range(m):
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
                if held[c] != row:                      # the open row as float32, once per call and row
                    for x in range(n_cols):
                        for b in range(n_banks):
                            wide[c, x, b] = np.uint32(data[c, x, b]) << np.uint32(16)
                    held[c] = row
                for b in range(n_banks):
                    acc[b] = obuf[c, ob, b]
                if w == 16 and n_banks == 16:
                    mac16(values[c], gbuf[c], gb, col, size, acc, t)
                else:
                    for r in range(size):
                        base = (col + r) * w
                        for j in range(half):
                            g0 = gbuf[c, gb + r, 2 * j]
                            g1 = gbuf[c, gb + r, 2 * j + 1]
                            for b in range(n_banks):
                                p0 = values[c, base + 2 * j, b] * g0
                                p1 = values[c, base + 2 * j + 1, b] * g1
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
            macs += m * n_banks * size * w
        elif op == RD_OUT:
            if ob < 0 or ob + size > n_obuf or gp < 0 or gp + m * size > n_gpr:
                return k, macs
            for i in range(m):
                for r in range(size):
                    for b in range(n_banks):
                        gpr[gp + i * size + r, b] = bf16_round(obuf[chans[i], ob + r, b])
        else:
            return k, macs
        for i in range(m):
            commands[chans[i], op] += size
    return enc.shape[0], macs


def warm_up() -> None:
    """Compile (or load from numba's disk cache) :func:`run_instructions` now, for the argument types the
    hub passes: a caller may overlap the first compilation (several seconds) with other work, such as a
    simulator build."""
    row = np.zeros((1, 16, 2), dtype=np.uint16)
    run_instructions(encode([Instruction(Opcode.PRE, 1)]), 0, np.full(1, -1, dtype=np.int64), array_list([row]),
                     np.full(1, -1, dtype=np.int64), np.zeros((1, 1, 2), np.float32), np.zeros((1, 1, 2), np.float32),
                     np.zeros((1, 2), np.float32), np.zeros((1, 7), np.int64))
