"""KV-cache allocation: the static baseline (T_max per request) and DPA's lazily allocated chunks.

**Chunk layout under TCP** (:class:`ChunkLayout`, docs/sources.md §dpa). A chunk is the same range of
``rows_per_chunk`` rows in every bank of a module: ``chunk_bytes / (channels x banks x row bytes)``
rows, i.e. 2 rows per bank for 1 MiB on the 16 x 16 module (1 row on 32 x 16). A chunk holds the K
*or* the V of one (request, layer, KV head) — a *segment* — laid out exactly as
:class:`~pimphony.scheduler.partition.TokenCentricPartition` lays out that many tokens: K round robin
over all lanes, V transposed over the module's slices. At d_h = 128 both hold 4096 tokens. Physical
chunk ``c`` covers rows ``c * rows_per_chunk ...`` of every bank.

**The DPA allocator** (:class:`DpaAllocator`) is the golden model of the dispatcher's bookkeeping:

* the *config buffer*: per open request its current length;
* the *VA2PA table*: (request, segment, K/V, virtual chunk) -> physical chunk;
* a FIFO *free list* of physical chunks.

A request is opened with its prompt length and chunks for it; ``append`` grows it and takes chunks
only when a segment crosses a chunk boundary (lazily); ``close`` returns every chunk to the free list.
Every operation answers a :class:`Status`; an operation that fails changes no state. Chunks are taken
and returned in a fixed order (K then V; segment by segment; virtual chunk by virtual chunk), so a
hardware allocator can reproduce the same physical assignment.

:class:`StaticAllocator` is the baseline: ``open`` reserves T_max tokens for every segment at once.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass

from .config import ModelConfig, ModuleOrg

MIB = 1 << 20


class Status(enum.IntEnum):
    """Response of the DPA management port; the values are the RTL's response codes."""

    OK = 0
    UNKNOWN_REQUEST = 1
    DUPLICATE_REQUEST = 2
    OUT_OF_CHUNKS = 3
    PAST_END = 4
    TABLE_FULL = 5
    BAD_LENGTH = 6
    PROGRAM_FULL = 7
    BAD_PROGRAM = 8
    BAD_OP = 9


@dataclass(frozen=True)
class ChunkLayout:
    """Geometry of DPA chunks on one module for one head dimension (see the module docstring)."""

    org: ModuleOrg
    head_dim: int
    chunk_bytes: int = MIB

    def __post_init__(self):
        org = self.org
        row_bytes = org.columns * org.element_bytes
        per_row_of_module = org.lanes * row_bytes
        if self.chunk_bytes % per_row_of_module:
            raise ValueError(f"chunk_bytes ({self.chunk_bytes}) must be a multiple of one row in every bank "
                             f"({per_row_of_module} bytes on {org.name})")
        if self.head_dim % org.burst_elements:
            raise ValueError(f"head_dim {self.head_dim} must be a multiple of {org.burst_elements}")
        kb = self.head_dim // org.burst_elements
        if kb > org.channels:
            raise ValueError(f"head_dim {self.head_dim} does not fit {org.name}: a V slice needs {kb} channels, "
                             f"the module has {org.channels}")
        if kb > org.bursts_per_row:
            raise ValueError(f"head_dim {self.head_dim} does not fit {org.name}: a key needs {kb} bursts, a row "
                             f"holds {org.bursts_per_row}")
        if org.rows % self.rows_per_chunk:
            raise ValueError(f"{org.rows} rows per bank are not a whole number of {self.rows_per_chunk}-row chunks")

    @property
    def rows_per_chunk(self) -> int:
        return self.chunk_bytes // (self.org.lanes * self.org.columns * self.org.element_bytes)

    @property
    def chunks(self) -> int:
        """Physical chunks in one module."""
        return self.org.rows // self.rows_per_chunk

    @property
    def k_tokens(self) -> int:
        """Tokens of one segment's K in a chunk: every lane holds whole keys, ``bursts_per_row // (d/16)`` per row."""
        kb = self.head_dim // self.org.burst_elements
        return self.org.lanes * self.rows_per_chunk * (self.org.bursts_per_row // kb)

    def segment_chunks(self, tokens):
        """(K, V) chunks one segment needs for ``tokens`` tokens (ints or numpy arrays alike)."""
        return -(-tokens // self.k_tokens), -(-tokens // self.v_tokens)

    @property
    def v_tokens(self) -> int:
        """Tokens of one segment's V in a chunk: ``channels // (d/16)`` slices, a row of tokens each."""
        kb = self.head_dim // self.org.burst_elements
        return (self.org.channels // kb) * self.rows_per_chunk * self.org.columns


@dataclass
class _Request:
    __slots__ = ("k_chunks", "length", "table", "v_chunks")
    length: int
    k_chunks: int
    v_chunks: int
    table: list[list[list[int]]]          # [kv][segment] -> physical chunks in virtual order


class DpaAllocator:
    """Golden DPA bookkeeping for one module: config buffer, VA2PA table and free list.

    Parameters
    ----------
    layout:
        Chunk geometry (tokens per K and V chunk, chunks per module).
    segments:
        Segments per request: layers x KV heads (K and V each have this many).
    max_requests:
        Capacity of the config buffer.
    headroom:
        Chunks that must remain free after admitting a request (admission control, docs/sources.md §dpa).
    chunks:
        Physical chunks in the pool (default: one module's, ``layout.chunks``).
    max_tokens:
        Longest request the VA2PA table can map (None: no limit); longer ones get ``PAST_END``.
    """

    def __init__(self, layout: ChunkLayout, segments: int, max_requests: int, headroom: int = 0,
                 chunks: int | None = None, max_tokens: int | None = None):
        if segments < 1 or max_requests < 1 or headroom < 0:
            raise ValueError("segments and max_requests must be at least 1 and headroom at least 0")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {max_tokens}")
        self.max_tokens = max_tokens
        self.n_chunks = layout.chunks if chunks is None else chunks
        if self.n_chunks < 1:
            raise ValueError(f"chunks must be at least 1, got {self.n_chunks}")
        self.layout = layout
        self.segments = segments
        self.max_requests = max_requests
        self.headroom = headroom
        self.k_tokens = layout.k_tokens
        self.v_tokens = layout.v_tokens
        self.free: deque[int] = deque(range(self.n_chunks))
        self.requests: dict[int, _Request] = {}

    # -- sizes ------------------------------------------------------------------------------------

    def _chunks_for(self, length: int) -> tuple[int, int]:
        """(K, V) chunks per segment that ``length`` tokens need."""
        return self.layout.segment_chunks(length)

    def growth_chunks(self, length: int, tokens: int) -> int:
        """Chunks a request of ``length`` tokens takes when it grows by ``tokens``."""
        k0, v0 = self._chunks_for(length)
        k1, v1 = self._chunks_for(length + tokens)
        return (k1 - k0 + v1 - v0) * self.segments

    def reserved_tokens(self, length: int) -> int:
        """Tokens a request of ``length`` holds room for (DPA: up to the end of its last chunks)."""
        return length

    # -- the management operations ------------------------------------------------------------------

    def open(self, request: int, length: int) -> Status:
        """Admit a request with its prompt of ``length`` tokens."""
        if request in self.requests:
            return Status.DUPLICATE_REQUEST
        if length < 1:
            return Status.BAD_LENGTH
        if self._too_long(length):
            return Status.PAST_END
        if len(self.requests) >= self.max_requests:
            return Status.TABLE_FULL
        k, v = self._chunks_for(self.reserved_tokens(length))
        if (k + v) * self.segments + self.headroom > len(self.free):
            return Status.OUT_OF_CHUNKS
        table: list[list[list[int]]] = [[[] for _ in range(self.segments)] for _ in range(2)]
        req = _Request(length, 0, 0, table)
        self._grow(req, k, v)
        self.requests[request] = req
        return Status.OK

    def append(self, request: int, tokens: int = 1) -> Status:
        """Grow a request by ``tokens`` (a decode step appends 1), taking chunks only at boundaries."""
        req = self.requests.get(request)
        if req is None:
            return Status.UNKNOWN_REQUEST
        if tokens < 1:
            return Status.BAD_LENGTH
        new = req.length + tokens
        if self._too_long(new):
            return Status.PAST_END
        k, v = self._chunks_for(new)
        if k > req.k_chunks or v > req.v_chunks:
            need = (k - req.k_chunks + v - req.v_chunks) * self.segments
            if need > len(self.free):
                return Status.OUT_OF_CHUNKS
            self._grow(req, k, v)
        req.length = new
        return Status.OK

    def close(self, request: int) -> Status:
        """End a request and return all of its chunks to the free list."""
        req = self.requests.pop(request, None)
        if req is None:
            return Status.UNKNOWN_REQUEST
        for kv in req.table:
            for chunks in kv:
                self.free.extend(chunks)
        return Status.OK

    def translate(self, request: int, segment: int, kv: int, token: int) -> tuple[Status, int, int]:
        """VA2PA: (status, physical chunk, token offset in it) of ``token`` of a segment's K (0) or V (1)."""
        req = self.requests.get(request)
        if req is None:
            return Status.UNKNOWN_REQUEST, -1, -1
        if not 0 <= token < req.length or not 0 <= segment < self.segments or kv not in (0, 1):
            return Status.PAST_END, -1, -1
        per = self.k_tokens if kv == 0 else self.v_tokens
        return Status.OK, req.table[kv][segment][token // per], token % per

    def row_of(self, request: int, segment: int, kv: int, virtual_row: int) -> int:
        """VA2PA at row granularity: the physical row of a segment's ``virtual_row`` (K: kv 0, V: 1)."""
        rpc = self.layout.rows_per_chunk
        chunks = self.requests[request].table[kv][segment]
        if not 0 <= virtual_row < len(chunks) * rpc:
            raise IndexError(f"request {request}: virtual row {virtual_row} is past its {len(chunks)} chunks")
        return chunks[virtual_row // rpc] * rpc + virtual_row % rpc

    def fits(self, length: int) -> bool:
        """Whether a request of ``length`` tokens could be held at all: not past the longest request and its
        reservation no larger than the whole pool."""
        k, v = self._chunks_for(self.reserved_tokens(length))
        return not self._too_long(length) and (k + v) * self.segments <= self.n_chunks

    def _too_long(self, length: int) -> bool:
        return self.max_tokens is not None and length > self.max_tokens

    def _grow(self, req: _Request, k: int, v: int) -> None:
        free = self.free
        for kv, (have, want) in enumerate(((req.k_chunks, k), (req.v_chunks, v))):
            if want > have:
                for chunks in req.table[kv]:
                    for _ in range(want - have):
                        chunks.append(free.popleft())
        req.k_chunks, req.v_chunks = max(req.k_chunks, k), max(req.v_chunks, v)

    # -- accounting -------------------------------------------------------------------------------

    def held_chunks(self) -> int:
        return sum((r.k_chunks + r.v_chunks) * self.segments for r in self.requests.values())

    def live_tokens(self) -> int:
        """Tokens of K and V stored, summed over segments (K and V count separately)."""
        return 2 * self.segments * sum(r.length for r in self.requests.values())

    def reserved_token_slots(self) -> int:
        """Token slots of the held chunks (K and V)."""
        return self.segments * sum(r.k_chunks * self.k_tokens + r.v_chunks * self.v_tokens
                                   for r in self.requests.values())

    def utilisation(self) -> float:
        """Live KV / reserved KV (1.0 when nothing is reserved)."""
        reserved = self.reserved_token_slots()
        return self.live_tokens() / reserved if reserved else 1.0

    def check(self) -> None:
        """Raise AssertionError unless every chunk is either free or held, exactly once."""
        held = [c for r in self.requests.values() for kv in r.table for chunks in kv for c in chunks]
        everything = sorted(held + list(self.free))
        assert everything == list(range(self.n_chunks)), "a chunk was leaked or is held twice"


class StaticAllocator(DpaAllocator):
    """The baseline: ``open`` reserves T_max tokens for every segment; a request cannot grow past it."""

    def __init__(self, layout: ChunkLayout, segments: int, max_requests: int, t_max: int, headroom: int = 0,
                 chunks: int | None = None):
        if t_max < 1:
            raise ValueError(f"t_max must be at least 1, got {t_max}")
        super().__init__(layout, segments, max_requests, headroom, chunks, max_tokens=t_max)
        self.t_max = t_max

    def reserved_tokens(self, length: int) -> int:
        return self.t_max


def segments_of(model: ModelConfig) -> int:
    """Segments per request: one per (layer, KV head), for K and for V each."""
    return model.layers * model.kv_heads
