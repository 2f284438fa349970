"""Head-first (HFP) and token-centric (TCP) partitioning of the KV cache over PIM modules.

Both map every (request, KV head, token) to (module, channel, bank, row, column) with the layouts
of docs/design.md §layouts; they differ in *which* banks a pair's tokens use.

K (for QK^T): a pair owns a list of *lanes* (banks); token ``t`` goes to lane ``t mod L`` at local
index ``i = t div L`` (CENT's round robin); ``kpr = bursts_per_row div (d/16)`` whole keys share a
row, so the key sits in row ``k_row0 + i div kpr``, column bursts ``(i mod kpr) * d/16 ...``.

V (for SV), transposed: a *slice* is ``d/16`` channels, channel ``m`` of a slice holding dimensions
``16m .. 16m+15`` (one per bank) with tokens along the row. 16-token bursts are dealt round robin
over the pair's ``S`` slices: burst ``u = t div 16`` goes to slice ``u mod S`` at local burst
``w = u div S``: row ``v_row0 + w div bursts_per_row``, burst column ``w mod bursts_per_row``.

* :class:`HeadFirstPartition` (the baseline): a pair's K spans ``span`` channels (round robin over their
  banks, ``L`` = span x banks) and its V the slice that holds them (or, for ``span`` > d/16, the
  slices those channels make up); pairs are dealt round robin over slices first, then over the
  channel groups inside a slice, then over modules. ``span`` = 1 is the paper's head-first
  partitioning (a pair per channel, Fig. 6); ``span`` = d/16 puts K and V on one slice, as CENT's
  layouts give a head its d/16 channels. A V row holds one dimension per bank, so V never spans
  fewer than d/16 channels: with its V on one channel (NeuPIMs' code) a pair would be slower still.
* :class:`TokenCentricPartition` (PIMphony): a pair's K spans every bank of its module
  (``L = channels x banks``) and its V every slice (``S = channels div (d/16)``); pairs are dealt
  round robin over modules. With 16 x 16 banks every channel has QK^T work once a request holds more
  than 256 tokens.

Rows are allocated per channel with a cursor; a pair's rows start at the same index in all the
channels it uses. The space is exactly what the lengths need. A placement maps each *virtual* row of
a pair (0, 1, ...) to a physical row, so a pair may also live in non-contiguous DPA chunks
(:func:`~pimphony.scheduler.dpa.place_dpa`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from pimphony.model import threads
from pimphony.model.compiled import compiled
from pimphony.model.config import ModuleOrg, ceil_div
from pimphony.model.perf.system import PARTITIONS as PARTITION_NAMES


class PartitionError(ValueError):
    """The KV cache cannot be laid out on the given modules."""


@dataclass(frozen=True)
class PairPlacement:
    """Where one (request, KV head) lives."""

    request: int
    kv_head: int
    length: int
    module: int
    k_channels: tuple[int, ...]
    k_row_map: tuple[int, ...]
    v_slices: tuple[tuple[int, ...], ...]
    v_row_map: tuple[int, ...]

    @property
    def v_channels(self) -> tuple[int, ...]:
        return tuple(c for s in self.v_slices for c in s)

    @property
    def k_rows(self) -> int:
        return len(self.k_row_map)

    @property
    def v_rows(self) -> int:
        return len(self.v_row_map)


class Partition(abc.ABC):
    """Common geometry; subclasses choose the lanes and slices of each pair."""

    name = ""

    def __init__(self, org: ModuleOrg, head_dim: int, modules: int = 1):
        if head_dim % org.burst_elements:
            raise PartitionError(f"head_dim {head_dim} must be a multiple of {org.burst_elements}")
        self.org = org
        self.head_dim = head_dim
        self.modules = modules
        self.kb = head_dim // org.burst_elements
        """Bursts per key (d/16) = channels per V slice."""
        if self.kb > org.bursts_per_row:
            raise PartitionError(f"head_dim {head_dim} does not fit one row ({org.columns} elements)")
        if self.kb > org.channels:
            raise PartitionError(
                f"head_dim {head_dim} needs {self.kb} channels for one V slice; the module has {org.channels}")
        self.kpr = org.bursts_per_row // self.kb
        """Whole keys per row."""

    # -- to be chosen by subclasses ------------------------------------------------------------------

    @abc.abstractmethod
    def assign(self, pair_index: int) -> tuple[int, tuple[int, ...], tuple[tuple[int, ...], ...]]:
        """(module, K channels, V slices) of the ``pair_index``-th pair."""

    # -- geometry of a pair --------------------------------------------------------------------------

    def row_tokens(self, k_channels, v_slices) -> tuple[int, int]:
        """Tokens held by one K row and by one V row of a pair with these channels."""
        org = self.org
        return len(k_channels) * org.banks * self.kpr, len(v_slices) * org.bursts_per_row * org.burst_elements

    def rows_needed(self, length: int, k_channels, v_slices) -> tuple[int, int]:
        """K rows and V rows that ``length`` tokens of a pair occupy."""
        org = self.org
        return (ceil_div(ceil_div(length, len(k_channels) * org.banks), self.kpr),
                ceil_div(ceil_div(ceil_div(length, org.burst_elements), len(v_slices)), org.bursts_per_row))

    # -- placement -----------------------------------------------------------------------------------

    def place(self, lengths: np.ndarray, kv_heads: int) -> list[PairPlacement]:
        """Allocate rows for every (request, KV head), request-major."""
        org = self.org
        cursor = np.zeros((self.modules, org.channels), dtype=np.int64)
        out = []
        for r, length in enumerate(np.asarray(lengths).tolist()):
            if length < 1:
                raise PartitionError(f"request {r}: length {length} must be at least 1")
            for h in range(kv_heads):
                module, kch, slices = self.assign(r * kv_heads + h)
                k_rows, v_rows = self.rows_needed(length, kch, slices)
                k0 = self._take(cursor[module], kch, k_rows, r, h, module)
                vch = [c for s in slices for c in s]
                v0 = self._take(cursor[module], vch, v_rows, r, h, module)
                out.append(PairPlacement(r, h, length, module, kch, tuple(range(k0, k0 + k_rows)), slices,
                                         tuple(range(v0, v0 + v_rows))))
        return out

    def _take(self, cursor: np.ndarray, chans, n_rows: int, r: int, h: int, module: int) -> int:
        idx = list(chans)
        base = int(cursor[idx].max())
        if base + n_rows > self.org.rows:
            raise PartitionError(
                f"request {r}, KV head {h}: needs rows {base}..{base + n_rows - 1} in module {module}, "
                f"channels {idx[0]}..{idx[-1]}; a bank has {self.org.rows} rows (use more modules or shorter contexts)")
        cursor[idx] = base + n_rows
        return base

    # -- coordinates (for tests and tools) ----------------------------------------------------------

    def locate_k(self, p: PairPlacement, t: np.ndarray) -> dict[str, np.ndarray]:
        """Channel, bank, row and first element column of the keys of tokens ``t``."""
        nb = self.org.banks
        lanes = len(p.k_channels) * nb
        lane, i = t % lanes, t // lanes
        return {"module": np.full_like(t, p.module), "channel": np.asarray(p.k_channels)[lane // nb],
                "bank": lane % nb, "row": np.asarray(p.k_row_map)[i // self.kpr],
                "column": (i % self.kpr) * self.head_dim}

    def locate_v(self, p: PairPlacement, t: np.ndarray, dim: np.ndarray) -> dict[str, np.ndarray]:
        """Channel, bank, row and element column of V[t, dim]."""
        org, w = self.org, self.org.burst_elements
        s_count = len(p.v_slices)
        u = t // w
        s, local = u % s_count, u // s_count
        slices = np.asarray(p.v_slices)
        return {"module": np.full_like(t, p.module), "channel": slices[s, dim // w], "bank": dim % w,
                "row": np.asarray(p.v_row_map)[local // org.bursts_per_row],
                "column": (local % org.bursts_per_row) * w + t % w}

    # -- packing (vectorised writes of whole rows) ---------------------------------------------------

    def store(self, channels, p: PairPlacement, k: np.ndarray, v: np.ndarray) -> None:
        """Write a pair's K and V into a :class:`~pimphony.model.channel.ChannelArray` (back door), packed
        by :func:`pack_k_bits` / :func:`pack_v_bits`: whole rows of the module into new arrays that the
        channels adopt, rows of some channels in place where the channels allow it
        (:meth:`~pimphony.model.channel.ChannelArray.fill_rows`), else through a copy."""
        org = self.org
        kbits, vbits, slices = _bits(k, p.length), _bits(v, p.length), len(p.v_slices)
        for rows, chans, kernel in (
                (p.k_row_map, p.k_channels, lambda out, r0: pack_k_bits(kbits, r0, out)),
                (p.v_row_map, p.v_channels, lambda out, r0: pack_v_bits(vbits, slices, org.burst_elements, r0, out))):
            start = 0
            while start < len(rows):                      # one write per run of consecutive rows
                end = start + 1
                while end < len(rows) and rows[end] == rows[end - 1] + 1:
                    end += 1

                def pack(out: np.ndarray, first: int, start: int = start, kernel=kernel) -> None:
                    threads.split_rows(kernel, out, start + first)      # rows start + first .. of the pair

                whole = tuple(chans) == tuple(range(org.channels))      # whole rows of the module: hand them over
                if whole or not channels.fill_rows(chans, rows[start], end - start, pack):
                    data = np.empty((end - start, len(chans), org.columns, org.banks), dtype=np.uint16)
                    pack(data, 0)
                    if whole:
                        channels.adopt_rows(rows[start], data)
                    else:
                        channels.write_rows(np.asarray(chans), rows[start], data, banks_last=True)
                start = end


def _bits(x: np.ndarray, length: int) -> np.ndarray:
    """The first ``length`` rows of ``x`` as contiguous bf16 bit patterns (a view when ``x`` is bf16)."""
    from pimphony.model.numerics import bf16_bits  # the layout needs no number format until here

    return np.ascontiguousarray(bf16_bits(x[:length]))


@compiled
def pack_k_bits(bits, row0, out):
    """Keys into the rows ``row0 ..`` of a pair's K (as :meth:`Partition.locate_k` places them): token
    ``t`` of ``bits`` (T, d) to lane ``t mod L`` (``L`` = channels x banks, channel-major), key slot
    ``t div L``, ``kpr`` slots per row, its ``d`` elements along the columns of its bank; ``out`` is
    (rows, channels, columns, banks), zeros past the last token."""
    n_rows, n_ch, cols, nb = out.shape
    length, d = bits.shape
    kpr = cols // d
    for r in range(n_rows):
        for s in range(kpr):
            for c in range(n_ch):
                t0 = (((row0 + r) * kpr + s) * n_ch + c) * nb
                n = max(0, min(nb, length - t0))
                for j in range(d):
                    for b in range(n):
                        out[r, c, s * d + j, b] = bits[t0 + b, j]
                    for b in range(n, nb):
                        out[r, c, s * d + j, b] = 0
        out[r, :, kpr * d:, :] = 0


@compiled
def pack_v_bits(bits, slices, w, row0, out):
    """Values into the rows ``row0 ..`` of a pair's V (as :meth:`Partition.locate_v` places them): burst
    ``u = t div w`` of ``bits`` (T, d) to slice ``u mod slices`` at local burst ``u div slices`` (row,
    then burst column), element ``t mod w`` of the burst, dimension ``m * banks + b`` to channel ``m``
    of the slice, bank ``b``; ``out`` is (rows, slices x d/banks channels, columns, banks), zeros past
    the last token."""
    n_rows, _, cols, nb = out.shape
    length, d = bits.shape
    kb, bpr = d // nb, cols // w
    for r in range(n_rows):
        for u in range(bpr):
            for s in range(slices):
                t0 = (((row0 + r) * bpr + u) * slices + s) * w
                n = max(0, min(w, length - t0))
                for i in range(n):
                    for m in range(kb):
                        for b in range(nb):
                            out[r, s * kb + m, u * w + i, b] = bits[t0 + i, m * nb + b]
                for i in range(n, w):
                    for m in range(kb):
                        for b in range(nb):
                            out[r, s * kb + m, u * w + i, b] = 0


class HeadFirstPartition(Partition):
    """HFP: each (request, KV head) on ``span`` channels for K and the slice holding them for V."""

    name = "hfp"

    def __init__(self, org: ModuleOrg, head_dim: int, modules: int = 1, span: int = 1):
        super().__init__(org, head_dim, modules)
        if span < 1 or org.channels % span or (span % self.kb if span > self.kb else self.kb % span):
            raise PartitionError(f"an HFP span of {span} channels does not tile {org.channels} channels in "
                                 f"{self.kb}-channel V slices; use a divisor or a multiple of {self.kb} that "
                                 f"divides {org.channels}")
        self.span = span

    def assign(self, pair_index: int):
        c, kb, span = self.org.channels, self.kb, self.span
        groups = c // span
        module, g = divmod(pair_index % (self.modules * groups), groups)
        if span >= kb:
            kch = tuple(range(g * span, (g + 1) * span))
            return module, kch, tuple(kch[s:s + kb] for s in range(0, span, kb))
        slices = c // kb
        slot, inner = g % slices, g // slices
        kch = tuple(range(slot * kb + inner * span, slot * kb + (inner + 1) * span))
        return module, kch, (tuple(range(slot * kb, (slot + 1) * kb)),)


class TokenCentricPartition(Partition):
    """TCP: each (request, KV head) spans every bank of its module for K and every slice for V."""

    name = "tcp"

    def assign(self, pair_index: int):
        c = self.org.channels
        module = pair_index % self.modules
        slices = tuple(tuple(range(s * self.kb, (s + 1) * self.kb)) for s in range(c // self.kb))
        return module, tuple(range(c)), slices


PARTITIONS = dict(zip(PARTITION_NAMES, (HeadFirstPartition, TokenCentricPartition), strict=True))
"""The classes of the partitions the system model names (:data:`pimphony.model.perf.system.PARTITIONS`)."""


def make_partition(name: str, org: ModuleOrg, head_dim: int, modules: int = 1, span: int = 1) -> Partition:
    """``hfp`` (its keys on ``span`` channels) or ``tcp``; ``hfp-K`` is ``hfp`` with ``span`` K."""
    base, _, k = name.partition("-")
    if base == "hfp" and k:
        if not k.isdigit():
            raise PartitionError(f"unknown partition {name!r}; choose one of hfp, hfp-K (K channels), tcp")
        span = int(k)
    try:
        cls = PARTITIONS[base]
    except KeyError:
        raise PartitionError(f"unknown partition {name!r}; choose one of hfp, hfp-K (K channels), tcp") from None
    return cls(org, head_dim, modules, span) if cls is HeadFirstPartition else cls(org, head_dim, modules)
