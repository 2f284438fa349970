"""Lowering of one decode step of attention to PIM programs (plain form).

For each (request, KV head) placed by a :class:`~pimphony.scheduler.partition.Partition`, the token
range is cut into blocks that fit the HUB's GPR, and each block becomes a
:class:`~pimphony.model.program.Step`:

QK^T (K rows, one ``ACT``/``PRE`` per row, GQA row reuse: every query head of the group runs while
the row is open)::

    WR_INP  (K channels, op_size = heads*d/16)        queries -> GBuf 0..
    for each K row:  ACT row
        for each key slot in the row, for each chunk of c query heads (c <= OBuf entries):
            WR_BIAS op_size=c, obuf=e..e+c-1 (zeros)   start c chains
            MAC     op_size=d/16, col=slot*d/16, gbuf=h*d/16, obuf=e+h   (for each head h)
            RD_OUT  op_size=c, obuf=e.. -> 16 scores per channel and head (one per bank)
        PRE

SV (V^T rows; per row and slice, a tile of up to 64 bursts of 16 tokens)::

    for each V row:  ACT row
        for each slice, for each chunk of c query heads:
            WR_BIAS op_size=c, obuf=e..e+c-1             one chain per head for the whole row
            for each tile (half the GBuf, alternating halves), for each head h:
                WR_INP op_size=n probability tiles -> GBuf half
                MAC    op_size=n, col=tile start, gbuf=half, obuf=e+h
            RD_OUT  op_size=c -> partial sums of 16 dimensions per channel and head
        PRE

OBuf entries are used round robin in blocks of c (``obuf_entries`` of them), so the same program runs on the
baseline's 2 output registers and on a DCS OBuf; the order of commands in each channel is the
program order that the golden model executes and the issue policies reorder.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pimphony.model.compiled import compiled
from pimphony.model.config import ModuleOrg, ceil_div
from pimphony.model.isa import (
    COMMAND_DTYPE,
    FIELDS,
    Format,
    Instruction,
    Opcode,
    channel_mask,
    decode_all,
    encode,
    encoded,
    unroll,
)
from pimphony.model.kernels import ACT, MAC, PRE, RD_OUT, WR_BIAS, WR_INP
from pimphony.model.program import GPR_ZERO, AttentionUnit, GprMap, Program, Step

from .partition import PairPlacement, Partition


class LoweringError(ValueError):
    """The workload cannot be lowered (e.g. a block does not fit the GPR)."""


@dataclass(frozen=True)
class GprFrame:
    """Fixed GPR regions of one block, so that every row of a block uses the same offsets (the
    property that lets a DPA program describe a row once). Row ``r`` of the block (counted from the
    block's first row) uses ``qk + r * qk_row``, ``probs + r * probs_row``, ``partials + r * partials_row``."""

    query: int
    qk: int
    qk_row: int
    probs: int
    probs_row: int
    partials: int
    partials_row: int
    end: int




class AttentionLowering:
    """Lowers decode attention for placed pairs into one :class:`Program` per module.

    Parameters
    ----------
    partition:
        The partition that placed the pairs (gives geometry and layouts).
    group:
        GQA group size (query heads per KV head).
    obuf_entries:
        OBuf entries per bank that the program may use (round robin).
    block_tokens:
        Tokens per block; default: the largest whole number of K rows whose GPR frame fits.
    """

    def __init__(self, partition: Partition, group: int, obuf_entries: int, block_tokens: int | None = None):
        self.part = partition
        self.org = partition.org
        self.fmt = Format.for_org(self.org)
        self.g = group
        self.kb = partition.kb
        self.d = partition.head_dim
        if obuf_entries < 1:
            raise LoweringError(f"obuf_entries must be at least 1, got {obuf_entries}")
        self.obuf_entries = obuf_entries
        self.heads_per_pass = min(group, self.org.gbuf_entries // self.kb)
        if self.heads_per_pass < 1:
            raise LoweringError(
                f"head_dim {self.d} needs {self.kb} GBuf entries; the channel has {self.org.gbuf_entries}")
        if block_tokens is not None and block_tokens < 1:
            raise LoweringError(f"block_tokens must be at least 1, got {block_tokens}")
        self.block_tokens = block_tokens
        self.sv_tile = max(1, self.org.gbuf_entries // 2)
        """SV probability tiles use half the GBuf, alternating halves, so loading one overlaps MACs on the other."""
        self._tile = min(self.org.bursts_per_row, self.sv_tile, self.fmt.max_op_size)
        self._e = 0

    def _obuf(self, n: int) -> int:
        """First of ``n`` consecutive OBuf entries, round robin."""
        if self._e + n > self.obuf_entries:
            self._e = 0
        e = self._e
        self._e = (self._e + n) % self.obuf_entries
        return e

    def _tile_base(self, s: int, chunk: range, tile: int, j: int) -> int:
        """GBuf base of the probability tile of slice ``s``, head ``chunk[j]``, tile ``tile`` of a row:
        tiles rotate over GBuf regions of ``sv_tile`` entries (two halves by default) in emission order,
        computed from the position so that a row with tiles left out keeps the others' places."""
        regions = max(1, self.org.gbuf_entries // self.sv_tile)
        tiles = self._tiles_per_row()
        index = s * tiles * self.g + chunk.start * tiles + tile * len(chunk) + j
        return (index % regions) * self.sv_tile

    def _head_chunks(self, heads: range) -> list[range]:
        """Heads in chunks that fit the OBuf (each head's chain needs its own entry)."""
        c = min(len(heads), self.obuf_entries)
        return [range(h, min(heads.stop, h + c)) for h in range(heads.start, heads.stop, c)]

    def largest_block(self, p: PairPlacement, unit: int) -> int:
        """The largest multiple of ``unit`` tokens whose GPR frame (:meth:`frame`) fits."""
        if self._frame_end(p, unit) > self.org.gpr_entries:
            raise LoweringError(f"the GPR ({self.org.gpr_entries} entries) cannot hold the frame of a "
                                f"{unit}-token block")
        n = 1
        while self._frame_end(p, 2 * n * unit) <= self.org.gpr_entries:
            n *= 2
        lo, hi = n, 2 * n                                 # fits at lo, not at hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self._frame_end(p, mid * unit) <= self.org.gpr_entries else (lo, mid)
        return lo * unit

    def lower(self, placements: list[PairPlacement]) -> list[Program]:
        """One program per module, steps in placement order."""
        programs = [Program(module=m) for m in range(self.part.modules)]
        for p in placements:
            block = self.block_tokens or self.largest_block(p, self.part.row_tokens(p.k_channels, p.v_slices)[0])
            programs[p.module].steps.extend(self._lower_pair(p, block))
        return programs

    def _lower_pair(self, p: PairPlacement, block: int) -> list[Step]:
        steps = []
        starts = list(range(0, p.length, block))
        frame = self.frame(p, block)
        for j, t0 in enumerate(starts):
            t1 = min(p.length, t0 + block)
            qk, scores = self._lower_qk(p, t0, t1, frame)
            sv, probs, partials = self._lower_sv(p, t0, t1, frame)
            qk, sv = sink_encoded(qk), sink_encoded(sv)
            unit = AttentionUnit(request=p.request, kv_head=p.kv_head, t0=t0, t1=t1, group=self.g,
                                 head_dim=self.d, query_gpr=frame.query, scores=scores, probs=probs,
                                 partials=partials, first=j == 0, last=j == len(starts) - 1)
            steps.append(Step(unit=unit, qk=qk, sv=sv))
        return steps

    # -- QK^T ---------------------------------------------------------------------------------------

    def _frame(self, p: PairPlacement, block: int) -> GprFrame:
        k_row_tokens, v_row_tokens = self.part.row_tokens(p.k_channels, p.v_slices)
        s_count = len(p.v_slices)
        k_rows = ceil_div(block, k_row_tokens) + 1            # + 1: a block may start inside a row
        v_rows = ceil_div(block, v_row_tokens) + 1
        query = GPR_ZERO + 1
        qk = query + self.g * self.kb
        qk_row = self.part.kpr * self.g * len(p.k_channels)
        probs = qk + k_rows * qk_row
        probs_row = s_count * self._tiles_per_row() * self.g * self._tile_size()
        partials = probs + v_rows * probs_row
        partials_row = s_count * self.g * self.kb
        return GprFrame(query, qk, qk_row, probs, probs_row, partials, partials_row,
                        partials + v_rows * partials_row)

    def _frame_end(self, p: PairPlacement, block: int) -> int:
        return self._frame(p, block).end

    def frame(self, p: PairPlacement, block: int) -> GprFrame:
        """GPR regions for blocks of ``block`` tokens of pair ``p``."""
        frame = self._frame(p, block)
        if frame.end > self.org.gpr_entries:
            largest = self.largest_block(p, self.part.row_tokens(p.k_channels, p.v_slices)[0])
            raise LoweringError(f"request {p.request}, KV head {p.kv_head}: blocks of {block} tokens need "
                                f"{frame.end} GPR entries, the GPR has {self.org.gpr_entries}; at most {largest} "
                                f"tokens per block fit")
        return frame

    def _tile_size(self) -> int:
        return self._tile

    def _tiles_per_row(self) -> int:
        return ceil_div(self.org.bursts_per_row, self._tile)

    def _lower_qk(self, p: PairPlacement, t0: int, t1: int, frame: GprFrame):
        nb, kpr = self.org.banks, self.part.kpr
        kch = np.asarray(p.k_channels)
        lanes = len(kch) * nb
        all_mask = channel_mask(kch)
        every = np.arange(len(kch))
        pieces: list[np.ndarray] = []                              # encoded instructions, in order
        records: list[np.ndarray] = []                            # (dest, slot, first head, heads, ranks) each
        ranks: list[np.ndarray] = []                              # the channel ranks of every record, in order
        i_lo, i_hi = t0 // lanes, (t1 - 1) // lanes
        first_row = i_lo // kpr
        first_tok = every * nb                                    # lane offset of each channel
        for h0 in range(0, self.g, self.heads_per_pass):
            heads = range(h0, min(self.g, h0 + self.heads_per_pass))
            chunks = self._head_chunks(heads)
            pieces.append(np.array([encoded(WR_INP, all_mask, op_size=len(heads) * self.kb,
                                            gpr=frame.query + h0 * self.kb, gbuf=0)], dtype=np.int64))
            full = {"row": [], "base": [], "first_slot": []}          # a run of rows whose every slot is full
            template = None
            for row_i in range(i_lo // kpr, i_hi // kpr + 1):
                row, row_base = p.k_row_map[row_i], frame.qk + (row_i - first_row) * frame.qk_row
                slots = range(max(i_lo, row_i * kpr), min(i_hi, row_i * kpr + kpr - 1) + 1)
                if len(slots) == kpr and t0 <= slots[0] * lanes and (slots[-1] + 1) * lanes <= t1:
                    template = template or self._qk_row(0, 0, [(s, every, all_mask) for s in range(kpr)], h0,
                                                        chunks, len(kch))
                    for key, value in zip(full, (row, row_base, row_i * kpr), strict=True):
                        full[key].append(value)
                    continue
                self._qk_rows(template, full, pieces, records, ranks)
                per_slot = []
                for i in slots:
                    if t0 <= i * lanes and (i + 1) * lanes <= t1:  # every lane of the slot holds a token
                        per_slot.append((i, every, all_mask))
                        continue
                    lo = i * lanes + first_tok
                    pos = np.nonzero((lo < t1) & (lo + nb > t0))[0]
                    per_slot.append((i, pos, channel_mask(kch[pos])))
                enc, recs, pos = self._qk_row(row, row_base, per_slot, h0, chunks, len(kch))
                pieces.append(enc)
                records.append(recs)
                ranks.append(pos)
            self._qk_rows(template, full, pieces, records, ranks)
        # RD-OUT record (dest, i, h0, c, pos): channel rank k, head j -> entry dest + k*c + j
        dest, slot, h_first, c, npos = np.concatenate(records).T
        pos_all = np.concatenate(ranks)
        size = npos * c
        local = local_entries(size)
        c_of = np.repeat(c, size)
        rank = local // c_of
        ch_pos = pos_all[np.repeat(np.cumsum(npos) - npos, size) + rank]
        entry = np.repeat(dest, size) + local
        head = (np.repeat(h_first, size) + local % c_of)[:, None]
        tok = (np.repeat(slot, size) * lanes + ch_pos * nb)[:, None] + np.arange(nb)[None, :]
        index = np.where((tok >= t0) & (tok < t1), head * (t1 - t0) + tok - t0, -1)
        return np.concatenate(pieces), GprMap(entry, index)

    def _qk_row(self, row: int, row_base: int, per_slot: list, h0: int, chunks: list[range], n_ch: int):
        """One K row of QK^T: ACT, for each slot ``(i, channel ranks, mask)`` and chunk of heads a chain
        (WR-BIAS, a MAC per head, RD-OUT), PRE. Returns the instructions encoded and their RD-OUT
        records (dest, slot, first head, heads, ranks per record) and the ranks of every record."""
        kb, kpr = self.kb, self.part.kpr
        self._e = 0                                               # every row uses the OBuf alike
        row_mask = 0
        for _, _, mask in per_slot:
            row_mask |= mask
        ins = [encoded(ACT, row_mask, row=row)]
        recs = []
        for i, pos, mask in per_slot:
            col = (i % kpr) * kb
            for chunk in chunks:
                c = len(chunk)
                e = self._obuf(c)
                dest = row_base + ((i % kpr) * self.g + chunk.start) * n_ch
                ins.append(encoded(WR_BIAS, mask, op_size=c, obuf=e, gpr=GPR_ZERO))
                for j, h in enumerate(chunk):
                    ins.append(encoded(MAC, mask, op_size=kb, row=row, col=col, gbuf=(h - h0) * kb, obuf=e + j))
                ins.append(encoded(RD_OUT, mask, op_size=c, obuf=e, gpr=dest))
                recs.append((dest, i, chunk.start, c, pos))
        ins.append(encoded(PRE, row_mask))
        table = np.array([(dest, i, h, c, len(pos)) for dest, i, h, c, pos in recs], dtype=np.int64)
        return np.array(ins, dtype=np.int64), table, np.concatenate([pos for *_, pos in recs])

    @staticmethod
    def _qk_rows(template, full: dict[str, list[int]], pieces: list, records: list, ranks: list) -> None:
        """Emit the run of full rows gathered in ``full`` (and empty it) from ``template``, the row of
        :meth:`_qk_row` at row 0, GPR base 0 and slots from 0: every full row is the template with its
        row in ACT and the MACs, its GPR base added to the RD-OUT destinations and its slots."""
        if not full["row"]:
            return
        enc, table, pos = template
        rows, bases, first = (np.array(full[k], dtype=np.int64)[:, None] for k in ("row", "base", "first_slot"))
        pieces.append(_repeat_row(enc, rows, {RD_OUT: bases}))
        records.append(_repeat_records(table, {0: bases, 1: first}))
        ranks.append(np.tile(pos, len(rows)))
        for values in full.values():
            values.clear()

    # -- SV -----------------------------------------------------------------------------------------

    def _lower_sv(self, p: PairPlacement, t0: int, t1: int, frame: GprFrame):
        org, kb = self.org, self.kb
        w, bpr = org.burst_elements, org.bursts_per_row
        slices = [np.asarray(s) for s in p.v_slices]
        s_count = len(slices)
        u_lo, u_hi = t0 // w, (t1 - 1) // w
        w_lo = [ceil_div(max(0, u_lo - s), s_count) for s in range(s_count)]
        w_hi = [(u_hi - s) // s_count if u_hi >= s else -1 for s in range(s_count)]
        live = [s for s in range(s_count) if w_lo[s] <= w_hi[s]]
        pieces: list[np.ndarray] = []                             # encoded instructions, in order
        probs: list[np.ndarray] = []                              # (src, c0, n, s, h) per WR-INP, in order
        partials: list[np.ndarray] = []                           # (dest, c, h0) per RD-OUT, in order
        rows = range(min(w_lo[s] for s in live) // bpr, max(w_hi[s] for s in live) // bpr + 1)
        full: dict[str, list[int]] = {"row": [], "probs": [], "partials": [], "first_burst": []}
        template = None
        for row_i in rows:
            probs_base = frame.probs + (row_i - rows.start) * frame.probs_row
            part_base = frame.partials + (row_i - rows.start) * frame.partials_row
            r_lo, r_hi = row_i * bpr, row_i * bpr + bpr - 1
            spans = {s: (max(w_lo[s], r_lo), min(w_hi[s], r_hi)) for s in live if w_lo[s] <= r_hi and w_hi[s] >= r_lo}
            if not spans:
                continue
            row = p.v_row_map[row_i]
            if len(spans) == s_count and all(span == (r_lo, r_hi) for span in spans.values()):
                template = template or self._sv_row(0, 0, 0, 0, {s: (0, bpr - 1) for s in range(s_count)}, slices)
                for key, value in zip(full, (row, probs_base, part_base, r_lo), strict=True):
                    full[key].append(value)
                continue
            self._sv_rows(template, full, pieces, probs, partials)
            enc, row_probs, row_partials = self._sv_row(row, probs_base, part_base, r_lo, spans, slices)
            pieces.append(enc)
            probs.append(row_probs)
            partials.append(row_partials)
        self._sv_rows(template, full, pieces, probs, partials)
        # WR-INP record (src, c0, n, s, h): entry src + u holds burst (c0 + u) * s_count + s of head h
        src, c0, n, s_of, h = np.concatenate(probs).T
        local = local_entries(n)
        pentry_probs = np.repeat(src, n) + local
        tok = (np.repeat(c0, n) + local)[:, None] * (s_count * w) + np.repeat(s_of, n)[:, None] * w \
            + np.arange(w)[None, :]
        head = np.repeat(h, n)[:, None]
        pidx = np.where((tok >= t0) & (tok < t1), head * (t1 - t0) + tok - t0, -1)
        # RD-OUT record (dest, c, h0): channel rank m (dimensions 16m..), head j -> entry dest + m*c + j
        dest, c, h0 = np.concatenate(partials).T
        size = kb * c
        local = local_entries(size)
        c_of = np.repeat(c, size)
        pentry = np.repeat(dest, size) + local
        dims = (local // c_of * w)[:, None] + np.arange(w)[None, :]
        qidx = (np.repeat(h0, size) + local % c_of)[:, None] * self.d + dims
        return np.concatenate(pieces), GprMap(pentry_probs, pidx), GprMap(pentry, qidx)

    def _sv_row(self, row: int, probs_base: int, part_base: int, r_lo: int, spans: dict[int, tuple[int, int]],
                slices: list[np.ndarray]):
        """One V row of SV: ACT, for each slice ``s`` with bursts ``spans[s]`` (absolute, the row's first
        is ``r_lo``) and chunk of heads a chain (WR-BIAS, a WR-INP and a MAC per tile and head, RD-OUT),
        PRE. Returns the instructions encoded and the WR-INP and RD-OUT records as arrays."""
        kb, tile, tiles_per_row = self.kb, self._tile_size(), self._tiles_per_row()
        self._e = 0                                               # every row uses the OBuf alike
        row_mask = channel_mask(np.concatenate([slices[s] for s in spans]))
        ins = [encoded(ACT, row_mask, row=row)]
        probs, partials = [], []
        for s, (a, b) in spans.items():
            mask = channel_mask(slices[s])
            for chunk in self._head_chunks(range(self.g)):
                # one chain per head across every tile of the row: drained once per row
                c = len(chunk)
                e = self._obuf(c)
                ins.append(encoded(WR_BIAS, mask, op_size=c, obuf=e, gpr=GPR_ZERO))
                for c0 in range(a, b + 1, tile):
                    n = min(tile, b + 1 - c0)
                    for j, h in enumerate(chunk):
                        src = probs_base + ((s * tiles_per_row + (c0 - r_lo) // tile) * self.g + h) * tile
                        base = self._tile_base(s, chunk, (c0 - r_lo) // tile, j)
                        ins.append(encoded(WR_INP, mask, op_size=n, gpr=src, gbuf=base))
                        ins.append(encoded(MAC, mask, op_size=n, row=row, col=c0 - r_lo, gbuf=base, obuf=e + j))
                        probs.append((src, c0, n, s, h))
                dest = part_base + (s * self.g + chunk.start) * kb
                ins.append(encoded(RD_OUT, mask, op_size=c, obuf=e, gpr=dest))
                partials.append((dest, c, chunk.start))
        ins.append(encoded(PRE, row_mask))
        return (np.array(ins, dtype=np.int64), np.array(probs, dtype=np.int64).reshape(-1, 5),
                np.array(partials, dtype=np.int64).reshape(-1, 3))

    @staticmethod
    def _sv_rows(template, full: dict[str, list[int]], pieces: list, probs: list, partials: list) -> None:
        """Emit the run of full rows gathered in ``full`` (and empty it) from ``template``, the row of
        :meth:`_sv_row` at row 0, GPR bases 0 and first burst 0: every full row is the template with its
        row in ACT and the MACs, its bases added to the WR-INP sources and the RD-OUT destinations and
        its first burst to the records'."""
        if not full["row"]:
            return
        enc, t_probs, t_partials = template
        rows, p_base, q_base, first = (np.array(full[k], dtype=np.int64)[:, None]
                                       for k in ("row", "probs", "partials", "first_burst"))
        pieces.append(_repeat_row(enc, rows, {WR_INP: p_base, RD_OUT: q_base}))
        probs.append(_repeat_records(t_probs, {0: p_base, 1: first}))
        partials.append(_repeat_records(t_partials, {0: q_base}))
        for values in full.values():
            values.clear()


def _repeat_row(enc: np.ndarray, rows: np.ndarray, gpr_bases: dict[int, np.ndarray]) -> np.ndarray:
    """``enc``, one row's instructions at row 0 and GPR bases 0, once per entry of ``rows`` (n, 1): each copy
    with its row in ACT and the MACs, and ``gpr_bases[op]`` (n, 1) added to the GPR field of that opcode's
    instructions."""
    op = enc[:, FIELDS.index("op")]
    block = np.broadcast_to(enc, (len(rows), *enc.shape)).copy()
    block[:, (op == ACT) | (op == MAC), FIELDS.index("row")] = rows
    for code, bases in gpr_bases.items():
        block[:, op == code, FIELDS.index("gpr")] += bases
    return block.reshape(-1, enc.shape[1])


def _repeat_records(table: np.ndarray, offsets: dict[int, np.ndarray]) -> np.ndarray:
    """``table``, one row's records, once per entry of the (n, 1) offsets, ``offsets[k]`` added to column
    ``k`` of each copy."""
    n = len(next(iter(offsets.values())))
    block = np.broadcast_to(table, (n, *table.shape)).copy()
    for column, add in offsets.items():
        block[:, :, column] += add
    return block.reshape(-1, table.shape[1])


def local_entries(sizes: np.ndarray) -> np.ndarray:
    """0, 1, .., sizes[0] - 1, 0, 1, .., sizes[1] - 1, ...: the position of each element in its record."""
    return np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)


def sink_rd_out(ins: list[Instruction]) -> list[Instruction]:
    """Software pipelining: move each RD-OUT after the next chain's WR-BIAS and its first MAC.

    A controller's I/O queue is in order, so an RD-OUT that waits for the last MAC of its chain would
    hold up the next chain's initialisation; placed one chain later, the next chain starts while
    this one drains. An RD-OUT never moves past an instruction that touches its OBuf entries (on any
    channel they share), past another RD-OUT, or past a row command (so every row is self-contained, as
    a DPA loop body must be); channels are independent and RD-OUT destinations are never read within
    a phase, so the program computes exactly the same.
    """
    return decode_all(sink_encoded(encode(ins)))


def sink_encoded(enc: np.ndarray) -> np.ndarray:
    """:func:`sink_rd_out` on instructions encoded by :func:`~pimphony.model.isa.encode`."""
    op, size, obuf = enc[:, FIELDS.index("op")], enc[:, FIELDS.index("op_size")], enc[:, FIELDS.index("obuf")]
    touches = (op == MAC) | (op == WR_BIAS) | (op == RD_OUT)
    first = np.where(touches, obuf, 0)
    end = np.where(op == MAC, obuf + 1, np.where(touches, obuf + size, 0))
    return enc[sink_order(op, first, end)]


@compiled
def sink_order(ops, first, end):
    """The order of :func:`sink_rd_out` as indices: in each run between row commands, each RD-OUT moved
    past the instructions that neither touch its OBuf entries (``first[k]`` to ``end[k]``, empty for
    WR-INP) nor are an RD-OUT, up to and including the first MAC after a WR-BIAS."""
    n = len(ops)
    out = np.arange(n)
    start = 0
    for stop in range(n + 1):
        if stop < n and ops[stop] != ACT and ops[stop] != PRE:
            continue
        i = start
        while i < stop:
            k = out[i]
            if ops[k] == RD_OUT:
                j, seen_bias = i + 1, False
                while j < stop:
                    m = out[j]
                    if ops[m] == RD_OUT or (first[m] < end[k] and first[k] < end[m]):
                        break
                    j += 1
                    seen_bias = seen_bias or ops[m] == WR_BIAS
                    if seen_bias and ops[m] == MAC:
                        break
                if j > i + 1 and seen_bias:
                    out[i:j - 1] = out[i + 1:j].copy()
                    out[j - 1] = k
            i += 1
        start = stop + 1
    return out


def command_streams(program: Program, channels: int) -> list[np.ndarray]:
    """Per-channel command streams (:data:`~pimphony.model.isa.COMMAND_DTYPE`) in program order."""
    parts: list[list[np.ndarray]] = [[] for _ in range(channels)]
    for ins in program.instructions():
        for ch, cmds in unroll(ins).items():
            parts[ch].append(cmds)
    return [np.concatenate(p) if p else np.zeros(0, dtype=COMMAND_DTYPE) for p in parts]


def lower_gemv(org: ModuleOrg, n_in: int, n_out: int, obuf_entries: int, channel: int = 0) -> list[Instruction]:
    """A GEMV y = W x on one channel, CENT's layout: output row ``o`` in bank ``o mod banks``, whole
    rows of W packed along each bank's DRAM rows, x in GBuf entries ``0 .. n_in/16 - 1``.

    One chain per output slot: WR_BIAS, MAC (op_size n_in/16), RD_OUT (16 outputs, one per bank),
    OBuf entries round robin, RD-OUTs software-pipelined as in the attention lowering.
    """
    w = org.burst_elements
    widest = min(org.columns, org.gbuf_entries * w)
    if n_in % w or n_in > widest:
        raise LoweringError(f"n_in={n_in} must be a multiple of {w} and at most {widest}")
    if n_out < 1:
        raise LoweringError(f"n_out={n_out} must be at least 1")
    kb = n_in // w
    per_row = org.bursts_per_row // kb
    slots = ceil_div(n_out, org.banks)
    mask = 1 << channel
    ins = [Instruction(Opcode.WR_INP, mask, op_size=kb, gpr=1, gbuf=0)]
    e = 0
    for row in range(ceil_div(slots, per_row)):
        ins.append(Instruction(Opcode.ACT, mask, row=row))
        for s in range(row * per_row, min(slots, (row + 1) * per_row)):
            ins.append(Instruction(Opcode.WR_BIAS, mask, obuf=e, gpr=GPR_ZERO))
            ins.append(Instruction(Opcode.MAC, mask, op_size=kb, row=row, col=(s % per_row) * kb, gbuf=0, obuf=e))
            ins.append(Instruction(Opcode.RD_OUT, mask, obuf=e, gpr=1 + kb + s))
            e = (e + 1) % obuf_entries
        ins.append(Instruction(Opcode.PRE, mask))
    return sink_rd_out(ins)
