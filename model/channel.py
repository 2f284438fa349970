"""Golden model of PIM channels: banks, row buffers, GBuf, OBuf and the bf16 MAC datapath.

:class:`ChannelArray` holds the state of all channels of a module as arrays indexed by channel, and
implements each command once, vectorised over a set of channels (multicast) and over op-size
repetitions. :class:`PimChannel` is a one-channel view that executes single :class:`Command` objects,
as a bus-functional model does; both paths run the same code.

State per channel (``B`` banks, ``E`` GBuf entries of 16 elements, ``O`` OBuf entries):

* bank arrays: ``rows`` x ``columns`` bf16 per bank, stored sparsely: a row index is backed by
  memory only once something is written to it (a module is 8 GB; memory in use follows the data).
  A backed row is one ``(channels, columns, banks)`` array of bit patterns: element ``j`` of every
  bank side by side, as the compiled path (:mod:`~pimphony.model.kernels`) reads them;
* the open row (all-bank ACT/PRE, as AiM's ACT16/PREA), ``-1`` when precharged, and the row
  buffer that ACT fills and MAC reads;
* GBuf ``E x 16`` bf16 values; OBuf ``O x B`` fp32 accumulators (bank ``b`` owns column ``b``).

Numerics (:mod:`~pimphony.model.numerics`): a MAC multiplies a 16-element burst of each bank's open
row by a GBuf entry (bf16 x bf16, exact in fp32), sums with a fixed fp32 tree and accumulates in fp32
in program order; RD-OUT rounds to bf16.

Illegal commands raise :class:`PimCommandError` naming the command, the channel and the rule.
"""

from __future__ import annotations

import math
import mmap
from collections.abc import Callable

import numpy as np

from .compiled import array_list
from .config import ModuleOrg
from .isa import Command, Opcode
from .numerics import bits_to_f32, to_bf16, tree_sum16


class PimCommandError(RuntimeError):
    """A command broke a rule of the channel (no open row, index out of range, ...)."""


def zeroed_pages(shape: tuple[int, ...]) -> np.ndarray:
    """A zeroed uint16 array on an anonymous mapping in small pages: only the 4 KB pages written take
    memory (a channel's part of a row is 32 KB; transparent huge pages would map all channels)."""
    size = 2 * math.prod(shape)
    pages = mmap.mmap(-1, size)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        pages.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(pages, dtype=np.uint16).reshape(shape)


class ChannelArray:
    """The channels of one PIM module, executed by vectorised command kernels.

    Every kernel takes ``channels``: a sorted array of distinct channel indices (a multicast set).

    Parameters
    ----------
    org:
        Module organisation (channels, banks, rows, columns, buffer sizes).
    obuf_entries:
        OBuf entries per bank. Default: ``org.obuf_entries`` (the DCS OBuf); pass
        ``org.outreg_entries`` to model the baseline's output registers.
    """

    def __init__(self, org: ModuleOrg, obuf_entries: int | None = None):
        self.org = org
        self.n_obuf = org.obuf_entries if obuf_entries is None else obuf_entries
        if self.n_obuf < 1:
            raise ValueError(f"obuf_entries must be at least 1, got {self.n_obuf}")
        c, b, w = org.channels, org.banks, org.burst_elements
        self.open_row = np.full(c, -1, dtype=np.int64)
        self.row_buffer = np.zeros((c, b, org.columns), dtype=np.float32)
        self.gbuf = np.zeros((c, org.gbuf_entries, w), dtype=np.float32)
        self.obuf = np.zeros((c, self.n_obuf, b), dtype=np.float32)
        self._rows: dict[int, np.ndarray] = {}
        self._slabs: dict[int, np.ndarray] = {}
        self._adopted: set[int] = set()
        """Rows held in arrays handed over by :meth:`adopt_rows` rather than in a slab."""
        self._table = None
        self.mac_ops = 0
        """Multiply-accumulates performed (16 per bank per MAC command)."""

    # -- storage ------------------------------------------------------------------------------------

    @property
    def bytes_allocated(self) -> int:
        """Bytes of bank storage backed by memory."""
        return sum(a.nbytes for a in self._rows.values())

    SLAB_BYTES = 64 << 20
    """Rows are backed in slabs of consecutive rows of at least this many bytes (or the whole bank): one
    anonymous mapping each (:func:`zeroed_pages`), whose pages the system maps only when written and
    takes back whole when the array is freed. Rows allocated one by one came from the C heap, which
    kept them after a run: each further run in a process grew it by about a gigabyte (HFP, 128K tokens)."""

    def _row(self, row: int) -> np.ndarray:
        arr = self._rows.get(row)
        if arr is None:
            org = self.org
            shape = (org.channels, org.columns, org.banks)
            per_slab = self._slab_rows()
            index, offset = divmod(row, per_slab)
            slab = self._slabs.get(index)
            if slab is None:
                slab = self._slabs[index] = zeroed_pages((per_slab, *shape))
            arr = self._rows[row] = slab[offset]
            self._table = None
        return arr

    def _slab_rows(self) -> int:
        org = self.org
        return min(org.rows, -(-self.SLAB_BYTES // (2 * org.channels * org.columns * org.banks)))

    def row_table(self) -> tuple[np.ndarray, list]:
        """The backed rows as the compiled path takes them: ``(slot_of_row, rows)``, where
        ``rows[slot_of_row[r]]`` is row ``r`` (``-1``: never written) and the last of ``rows`` is a zero row."""
        if self._table is None:
            org = self.org
            slots = np.full(org.rows, -1, dtype=np.int64)
            arrays = list(self._rows.values())
            slots[list(self._rows)] = np.arange(len(arrays))
            zero = np.zeros((org.channels, org.columns, org.banks), dtype=np.uint16)
            self._table = (slots, array_list([*arrays, zero]))
        return self._table

    def _latch(self, channels: np.ndarray) -> None:
        """Fill the row buffers of ``channels`` from their open rows (zeros where never written)."""
        for c in channels.tolist():
            bits = self._rows.get(int(self.open_row[c]))
            self.row_buffer[c] = 0.0 if bits is None else bits_to_f32(bits[c].T)

    def sync_row_buffers(self) -> None:
        """Refill the row buffer of every channel with an open row (after the compiled path, which reads
        the banks directly and leaves the row buffers alone)."""
        self._latch(np.nonzero(self.open_row >= 0)[0])

    def write_rows(self, channels: np.ndarray, row0: int, data: np.ndarray, col0: int = 0,
                   banks_last: bool = False) -> None:
        """Back-door write of bf16 bit patterns: ``data[r, k, bank, j]`` -> channel ``channels[k]``,
        row ``row0 + r``, element column ``col0 + j`` (how the host lays KV into banks). With
        ``banks_last``, ``data`` is ``[r, k, j, bank]``: the storage's own layout, copied as it is."""
        if banks_last:
            n_rows, n_ch, n_cols, n_banks = data.shape
        else:
            n_rows, n_ch, n_banks, n_cols = data.shape
        org = self.org
        if n_ch != len(channels) or n_banks != org.banks:
            raise ValueError(f"data shape {data.shape} does not match {len(channels)} channels x {org.banks} banks")
        if row0 < 0 or row0 + n_rows > org.rows or col0 < 0 or col0 + n_cols > org.columns:
            raise PimCommandError(
                f"write of rows {row0}..{row0 + n_rows - 1}, columns {col0}..{col0 + n_cols - 1} is outside "
                f"the bank ({org.rows} rows x {org.columns} columns)")
        ch = np.asarray(channels)
        for r in range(n_rows):
            self._row(row0 + r)[ch, col0:col0 + n_cols, :] = data[r] if banks_last else data[r].transpose(0, 2, 1)
        self._latch(ch[(self.open_row[ch] >= row0) & (self.open_row[ch] < row0 + n_rows)])

    def fill_rows(self, channels, row0: int, n_rows: int, fill: Callable[[np.ndarray, int], None]) -> bool:
        """Back-door write in place of rows ``row0 .. row0 + n_rows - 1`` of ``channels`` (consecutive
        indices): ``fill(view, r)`` writes the bf16 bits of rows ``row0 + r ..`` into ``view`` (rows,
        channels, columns, banks), a view of the rows' storage. Returns False, having written nothing,
        where the channels are not consecutive or a row is held in an adopted array
        (:meth:`adopt_rows`); the caller then writes a copy (:meth:`write_rows`)."""
        org = self.org
        ch = np.asarray(channels)
        if row0 < 0 or row0 + n_rows > org.rows:
            raise PimCommandError(f"write of rows {row0}..{row0 + n_rows - 1} is outside the bank ({org.rows} rows)")
        if not len(ch) or (ch != np.arange(ch[0], ch[0] + len(ch))).any() or ch[-1] >= org.channels \
                or any(r in self._adopted for r in range(row0, row0 + n_rows)):
            return False
        per_slab = self._slab_rows()
        r = row0
        while r < row0 + n_rows:
            index, offset = divmod(r, per_slab)
            count = min(per_slab - offset, row0 + n_rows - r)
            for row in range(r, r + count):
                self._row(row)
            fill(self._slabs[index][offset:offset + count, ch[0]:ch[-1] + 1], r - row0)
            r += count
        self._latch(ch[(self.open_row[ch] >= row0) & (self.open_row[ch] < row0 + n_rows)])
        return True

    def adopt_rows(self, row0: int, data: np.ndarray) -> None:
        """Back-door write of whole rows of every channel, ``data[r]`` (channels, columns, banks) of bf16
        bits -> row ``row0 + r``, taking the arrays over instead of copying them (the caller hands
        ``data`` over and must not change it afterwards)."""
        org = self.org
        if data.shape[1:] != (org.channels, org.columns, org.banks) or data.dtype != np.uint16:
            raise ValueError(f"data {data.shape} {data.dtype} is not whole rows of {org.channels} channels "
                             f"x {org.columns} columns x {org.banks} banks of uint16")
        if not data.flags.c_contiguous:
            data = np.ascontiguousarray(data)
        n_rows = data.shape[0]
        if row0 < 0 or row0 + n_rows > org.rows:
            raise PimCommandError(f"write of rows {row0}..{row0 + n_rows - 1} is outside the bank ({org.rows} rows)")
        for r in range(n_rows):
            self._rows[row0 + r] = data[r]
        self._adopted.update(range(row0, row0 + n_rows))
        self._table = None
        ch = np.arange(org.channels)
        self._latch(ch[(self.open_row >= row0) & (self.open_row < row0 + n_rows)])

    def read_bank(self, channel: int, bank: int, row: int) -> np.ndarray:
        """Back-door read of one bank row as float32 (zeros where never written)."""
        arr = self._rows.get(row)
        if arr is None:
            return np.zeros(self.org.columns, dtype=np.float32)
        return bits_to_f32(arr[channel, :, bank])

    # -- checks -------------------------------------------------------------------------------------

    def _fail(self, what: str, channels: np.ndarray, rule: str) -> None:
        chans = ", ".join(str(int(c)) for c in np.atleast_1d(channels))
        raise PimCommandError(f"{what} on channel {chans}: {rule}")

    def _check_index(self, what: str, channels: np.ndarray, name: str, idx: np.ndarray, size: int) -> None:
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            bad = int(idx[(idx < 0) | (idx >= size)][0])
            self._fail(what, channels, f"{name} index {bad} out of range 0..{size - 1}")

    def _check_range(self, what: str, channels: np.ndarray, name: str, first: int, n: int, size: int) -> None:
        if first < 0 or first + n > size:
            bad = first if first < 0 or first >= size else size
            self._fail(what, channels, f"{name} index {bad} out of range 0..{size - 1}")

    # -- command kernels (vectorised over channels and repetitions) ---------------------------------

    def act(self, channels: np.ndarray, row: int) -> None:
        """ACT: open ``row`` in all banks of each channel."""
        what = f"ACT(row={row})"
        if not 0 <= row < self.org.rows:
            self._fail(what, channels, f"row {row} out of range 0..{self.org.rows - 1}")
        busy = channels[self.open_row[channels] >= 0]
        if busy.size:
            self._fail(what, busy, f"row {int(self.open_row[busy[0]])} is already open (rule: PRE before ACT)")
        self.open_row[channels] = row
        bits = self._rows.get(row)
        sel = _as_index(channels)
        if bits is None:
            self.row_buffer[sel] = 0.0
        else:
            self.row_buffer[sel] = bits_to_f32(bits[sel]).transpose(0, 2, 1)

    def pre(self, channels: np.ndarray) -> None:
        """PRE: precharge all banks (a no-op on closed banks, as in DRAM)."""
        self.open_row[channels] = -1

    def ref(self, channels: np.ndarray) -> None:
        """REF: all-bank refresh; data are retained."""
        busy = channels[self.open_row[channels] >= 0]
        if busy.size:
            self._fail("REF", busy, "a row is open (rule: all banks precharged before REF)")

    def wr_inp(self, channels: np.ndarray, gbuf: np.ndarray, data: np.ndarray) -> None:
        """WR-INP: ``data[i]`` (16 bf16 values) -> GBuf entry ``gbuf[i]`` of every channel."""
        self._check_index("WR_INP", channels, "GBuf", gbuf, self.org.gbuf_entries)
        self.gbuf[channels[:, None], gbuf[None, :]] = to_bf16(data)[None]

    def wr_bias(self, channels: np.ndarray, obuf: np.ndarray, data: np.ndarray) -> None:
        """WR-BIAS: ``data[i]`` -> OBuf entry ``obuf[i]``; bank ``b`` takes element ``b``."""
        self._check_index("WR_BIAS", channels, "OBuf", obuf, self.n_obuf)
        self.obuf[channels[:, None], obuf[None, :]] = to_bf16(data)[None]

    def mac(self, channels: np.ndarray, row: int, col: int, gbuf: int, obuf: int, n: int = 1) -> None:
        """``n`` MAC repetitions ``i``: every bank adds dot(open row burst ``col + i``, GBuf entry
        ``gbuf + i``) to OBuf entry ``obuf``, in order of ``i``."""
        what = f"MAC(row={row}, col={col}, gbuf={gbuf}, obuf={obuf})"
        sel = _as_index(channels)
        open_rows = self.open_row[sel]
        if (open_rows != row).any():
            closed = channels[open_rows < 0]
            if closed.size:
                self._fail(what, closed, "no open row (rule: ACT before MAC)")
            wrong = channels[open_rows != row]
            self._fail(what, wrong, f"row {row} is not the open row {int(self.open_row[wrong[0]])}")
        self._check_range(what, channels, "column burst", col, n, self.org.bursts_per_row)
        self._check_range(what, channels, "GBuf", gbuf, n, self.org.gbuf_entries)
        self._check_range(what, channels, "OBuf", obuf, 1, self.n_obuf)
        w, nb = self.org.burst_elements, self.org.banks
        data = self.row_buffer[sel, :, col * w:(col + n) * w].reshape(len(channels), nb, n, w)
        vec = self.gbuf[sel, gbuf:gbuf + n]                                   # (ch, n, 16)
        partial = tree_sum16(data * vec[:, None, :, :])                      # (ch, bank, n)
        chain = np.empty((n + 1, len(channels), nb), dtype=np.float32)
        chain[0] = self.obuf[sel, obuf]
        chain[1:] = partial.transpose(2, 0, 1)
        self.obuf[sel, obuf] = np.add.reduce(chain, axis=0)  # outer-axis reduce: sequential, program order
        self.mac_ops += len(channels) * nb * n * w

    def rd_out(self, channels: np.ndarray, obuf: np.ndarray) -> np.ndarray:
        """RD-OUT: OBuf entries ``obuf`` of each channel as bf16, shape (channels, n, banks)."""
        self._check_index("RD_OUT", channels, "OBuf", obuf, self.n_obuf)
        return to_bf16(self.obuf[channels[:, None], obuf[None, :]])

    def channel(self, index: int) -> PimChannel:
        """A one-channel view for command-by-command execution."""
        if not 0 <= index < self.org.channels:
            raise IndexError(f"channel {index} out of range 0..{self.org.channels - 1}")
        return PimChannel(self, index)


def _as_index(channels: np.ndarray) -> slice | np.ndarray:
    """A slice when the (sorted, distinct) channels are consecutive (a view, no copy), else the array."""
    c0, c1 = int(channels[0]), int(channels[-1])
    if c1 - c0 + 1 == len(channels):
        return slice(c0, c1 + 1)
    return channels


class PimChannel:
    """One channel of a :class:`ChannelArray`, executing one :class:`Command` at a time."""

    def __init__(self, array: ChannelArray, index: int):
        self.array = array
        self.index = index
        self._ch = np.array([index])

    def execute(self, cmd: Command, data: np.ndarray | None = None) -> np.ndarray | None:
        """Execute ``cmd``. WR-INP and WR-BIAS take ``data`` (16 values); RD-OUT returns 16 values."""
        a, ch = self.array, self._ch
        needs_data = cmd.op in (Opcode.WR_INP, Opcode.WR_BIAS)
        if needs_data and (data is None or np.shape(data) != (a.org.burst_elements,)):
            raise PimCommandError(f"{cmd} on channel {self.index}: needs {a.org.burst_elements} data values")
        match cmd.op:
            case Opcode.ACT:
                a.act(ch, cmd.row)
            case Opcode.PRE:
                a.pre(ch)
            case Opcode.REF:
                a.ref(ch)
            case Opcode.WR_INP:
                a.wr_inp(ch, np.array([cmd.gbuf]), np.asarray(data)[None])
            case Opcode.WR_BIAS:
                a.wr_bias(ch, np.array([cmd.obuf]), np.asarray(data)[None])
            case Opcode.MAC:
                a.mac(ch, cmd.row, cmd.col, cmd.gbuf, cmd.obuf)
            case Opcode.RD_OUT:
                return a.rd_out(ch, np.array([cmd.obuf]))[0, 0]
        return None
