"""Traces in the format of the public AiM simulator (arkhadem/aim_simulator, ``AiMTrace`` frontend).

One ISR per line, ``AiM <ISR> <fields>`` in the simulator's field order; ``#`` starts a comment line;
numbers are decimal or ``0x`` hex. The ISRs this project models, with the channel commands they
unroll into (aim_simulator ``src/dram/impl/GDDR6.cpp`` ``m_aim_request_translations``):

=================================  ===========================  ==========================================
line                               channel command, per op      our opcode
=================================  ===========================  ==========================================
``AiM WR_GB <opsize> <gpr> <m>``   WRGB (register mode)         WR_INP
``AiM WR_BIAS <gpr> <m>``          WRMAC16 (register mode)      WR_BIAS
``AiM MAC_ABK <opsize> <m> <r>``   MAC16 on row r (ACT16 and    MAC (ACT / PRE are implied by the row:
                                   PREA inserted as needed)     the controller opens and closes rows)
``AiM RD_MAC <gpr> <m>``           RDMAC16 (register mode,      RD_OUT
                                   blocks the DMA)
``AiM EOC``                        end of the trace
=================================  ===========================  ==========================================

Comment lines start with a ``#`` token followed by a space (aim_simulator tokenises on spaces and
skips a line whose first token is ``#``). Channel masks are read as aim_simulator reads them
(``AiMDRAMSystem::FindFirstChannelIndex``): bit ``i`` of the 32-bit mask is channel ``31 - i``.
Every other ISR of the simulator (EWMUL, AF, COPY_*, WR_ABK, WR_SBK, RD_SBK, MAC_SBK, RD_AF, SYNC,
...) and the ``R``/``W`` host lines are refused with the line number: this project does not model
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .isa import COMMAND_DTYPE, Opcode

MASK_BITS = 32
"""aim_simulator's channel mask width (its MAX_CHANNEL_COUNT; the simulator has 32 channels, fixed)."""


class Isr:
    """ISR kinds, as codes of :class:`AimTrace` arrays."""

    WR_GB = 0
    WR_BIAS = 1
    MAC_ABK = 2
    RD_MAC = 3
    EOC = 4


ISR_NAMES = ("WR_GB", "WR_BIAS", "MAC_ABK", "RD_MAC", "EOC")
FIELDS = {"WR_GB": ("opsize", "gpr", "mask"), "WR_BIAS": ("gpr", "mask"), "MAC_ABK": ("opsize", "mask", "row"),
          "RD_MAC": ("gpr", "mask"), "EOC": ()}
"""Fields of each modelled ISR in trace order (aim_simulator README and ``AiMTrace::get_host_request``)."""
UNMODELLED = ("WR_SBK", "WR_ABK", "WR_AFLUT", "RD_AF", "RD_SBK", "COPY_BKGB", "COPY_GBBK", "MAC_SBK", "AF",
              "EWMUL", "EWADD", "SYNC")
ISR_OF_OPCODE = {Opcode.WR_INP: Isr.WR_GB, Opcode.WR_BIAS: Isr.WR_BIAS, Opcode.MAC: Isr.MAC_ABK,
                 Opcode.RD_OUT: Isr.RD_MAC}
OPCODE_OF_ISR = {v: k for k, v in ISR_OF_OPCODE.items()}
HAS_OPSIZE = frozenset({Isr.WR_GB, Isr.MAC_ABK})
"""ISRs with an op-size; WR_BIAS and RD_MAC move one 32 B burst each."""


class AimTraceError(ValueError):
    """A trace line this project cannot read; the message names the file and the line."""


def channel_of_bit(bit: int) -> int:
    return MASK_BITS - 1 - bit


def mask_of_channel(channel: int) -> int:
    if not 0 <= channel < MASK_BITS:
        raise ValueError(f"channel {channel} is outside aim_simulator's 0..{MASK_BITS - 1}")
    return 1 << (MASK_BITS - 1 - channel)


@dataclass
class AimTrace:
    """A one-channel ISR sequence: ``kind`` (:class:`Isr` codes), ``opsize``, ``row`` (-1 = none) and
    ``gpr`` per ISR, the last one an EOC."""

    kind: np.ndarray
    opsize: np.ndarray
    row: np.ndarray
    gpr: np.ndarray
    channel: int = 0

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def commands(self) -> int:
        """Channel commands the ISRs ask for (row commands and mode switches excluded)."""
        return int(self.opsize[self.kind != Isr.EOC].sum())

    def write(self, path: str | Path, header: str = "") -> None:
        """Write the trace in aim_simulator's format (``header`` as ``#`` comment lines)."""
        mask = f"{mask_of_channel(self.channel):#x}"
        lines = [f"# {line}".rstrip() for line in header.splitlines()]
        for k, n, r, g in zip(self.kind.tolist(), self.opsize.tolist(), self.row.tolist(), self.gpr.tolist(),
                              strict=True):
            name = ISR_NAMES[k]
            values = {"opsize": n, "gpr": g, "mask": mask, "row": r}
            lines.append(" ".join(["AiM", name, *(str(values[f]) for f in FIELDS[name])]))
        Path(path).write_text("\n".join(lines) + "\n")


def _number(token: str, where: str) -> int:
    try:
        return int(token, 16) if token.lower().startswith("0x") else int(token, 10)
    except ValueError:
        raise AimTraceError(f"{where}: {token!r} is not a number (decimal or 0x hex)") from None


def parse(text: str, source: str = "<trace>", channel: int | None = None) -> AimTrace:
    """Read an aim_simulator trace. ``channel`` keeps that channel's share of multi-channel masks;
    without it every ISR must address the same single channel."""
    if channel is not None and not 0 <= channel < MASK_BITS:
        raise AimTraceError(f"{source}: --channel {channel} is outside aim_simulator's channels 0..{MASK_BITS - 1}")
    kind, opsize, row, gpr = [], [], [], []
    seen: int | None = channel
    masks: dict[int, set[int]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens or tokens[0] == "#":
            continue
        where = f"{source}:{number}"
        if tokens[0] in ("R", "W"):
            raise AimTraceError(f"{where}: host {tokens[0]} lines (GPR/CFR/memory accesses) are not modelled")
        if tokens[0] != "AiM" or len(tokens) < 2:
            raise AimTraceError(f"{where}: expected 'AiM <ISR> <fields>', a '#' comment or a blank line")
        name = tokens[1].removeprefix("ISR_")
        if name in UNMODELLED:
            raise AimTraceError(f"{where}: ISR {name} is not modelled (modelled: {', '.join(ISR_NAMES)})")
        if name not in FIELDS:
            raise AimTraceError(f"{where}: unknown ISR {tokens[1]!r} (modelled: {', '.join(ISR_NAMES)})")
        fields = FIELDS[name]
        if len(tokens) - 2 != len(fields):
            raise AimTraceError(f"{where}: {name} takes {len(fields)} fields ({' '.join(fields) or 'none'}), "
                                f"got {len(tokens) - 2}")
        values = {f: _number(t, where) for f, t in zip(fields, tokens[2:], strict=True)}
        code = ISR_NAMES.index(name)
        if code == Isr.EOC:
            kind.append(code)
            opsize.append(1)
            row.append(-1)
            gpr.append(-1)
            break
        mask = values["mask"]
        if not 0 < mask < (1 << MASK_BITS):
            raise AimTraceError(f"{where}: channel mask {mask:#x} must be a non-zero {MASK_BITS}-bit mask")
        channels = masks.get(mask)
        if channels is None:
            channels = masks[mask] = {channel_of_bit(b) for b in range(MASK_BITS) if mask >> b & 1}
        if channel is None:
            if len(channels) != 1:
                raise AimTraceError(f"{where}: the mask {mask:#x} addresses {len(channels)} channels; "
                                    f"give --channel to keep one channel's share")
            (only,) = channels
            if seen is not None and only != seen:
                raise AimTraceError(f"{where}: channel {only}, but earlier lines address channel {seen}; "
                                    f"a trace is timed one channel at a time (--channel)")
            seen = only
        elif channel not in channels:
            continue
        n = values.get("opsize", 1)
        if not 1 <= n <= 1 << 20:
            raise AimTraceError(f"{where}: opsize {n} must lie in 1..{1 << 20}")
        r = values.get("row", -1)
        if code == Isr.MAC_ABK and not 0 <= r < 1 << 20:
            raise AimTraceError(f"{where}: row {r} must lie in 0..{(1 << 20) - 1}")
        kind.append(code)
        opsize.append(n)
        row.append(r)
        gpr.append(values.get("gpr", -1))
    if not kind or kind[-1] != Isr.EOC:
        raise AimTraceError(f"{source}: the trace ends without 'AiM EOC' (aim_simulator requires it)")
    if channel is not None and len(kind) == 1:
        raise AimTraceError(f"{source}: no ISR addresses channel {channel} (--channel)")
    return AimTrace(np.array(kind, dtype=np.int64), np.array(opsize, dtype=np.int64), np.array(row, dtype=np.int64),
                    np.array(gpr, dtype=np.int64), 0 if seen is None else seen)


def read(path: str | Path, channel: int | None = None) -> AimTrace:
    """:func:`parse` a trace file; unreadable files raise :class:`AimTraceError` naming the file."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise AimTraceError(f"{path}: cannot read: {exc.strerror if isinstance(exc, OSError) else exc}") from None
    return parse(text, str(path), channel)


def from_stream(stream: np.ndarray, channel: int = 0) -> AimTrace:
    """The ISRs that issue ``stream`` (one channel's commands, :data:`~pimphony.model.isa.COMMAND_DTYPE`,
    program order) on aim_simulator.

    ACT and PRE are left out: a MAC_ABK names its row and the AiM controller opens and closes rows
    itself. Maximal runs of WR_INPs become one WR_GB, maximal runs of MACs on one row one MAC_ABK;
    WR_BIAS and RD_MAC take no op-size, so each of those commands is one ISR.
    """
    if stream.dtype != COMMAND_DTYPE:
        raise TypeError("stream must be a COMMAND_DTYPE array")
    keep = np.isin(stream["op"], [int(o) for o in ISR_OF_OPCODE])
    ops = stream["op"][keep].astype(np.int64)
    rows = np.where(ops == Opcode.MAC, stream["row"][keep].astype(np.int64), -1)
    gprs = np.where(ops == Opcode.MAC, -1, stream["gpr"][keep].astype(np.int64))
    isr = np.full(len(ops), -1, dtype=np.int64)
    for op, code in ISR_OF_OPCODE.items():
        isr[ops == op] = code
    starts = np.ones(len(ops), dtype=bool)
    if len(ops):
        same = (isr[1:] == isr[:-1]) & (rows[1:] == rows[:-1]) & np.isin(isr[1:], list(HAS_OPSIZE))
        starts[1:] = ~same
    first = np.flatnonzero(starts)
    sizes = np.diff(np.append(first, len(ops)))
    eoc = np.array([Isr.EOC])
    return AimTrace(np.concatenate([isr[first], eoc]), np.concatenate([sizes, [1]]),
                    np.concatenate([rows[first], [-1]]), np.concatenate([gprs[first], [-1]]), channel)


def to_stream(trace: AimTrace, gbuf_entries: int) -> np.ndarray:
    """The channel commands a trace asks for, for the policies that take a command stream (static,
    ping-pong, DCS): WR_GB step ``i`` writes GBuf entry ``i mod gbuf_entries`` and MAC_ABK step ``i``
    reads it (column ``i`` of the row); every WR_BIAS, MAC and RD_MAC uses OBuf entry 0, AiM's one MAC
    register per bank; a PRE (if a row is open) and an ACT precede the first MAC of each new row."""
    body = trace.kind != Isr.EOC
    kind, size, rows, gprs = trace.kind[body], trace.opsize[body], trace.row[body], trace.gpr[body]
    parts = []
    open_row = -1
    for k, n, r, g in zip(kind.tolist(), size.tolist(), rows.tolist(), gprs.tolist(), strict=True):
        if k == Isr.MAC_ABK and r != open_row:
            row_cmds = np.zeros(2 if open_row >= 0 else 1, dtype=COMMAND_DTYPE)
            row_cmds["op"][-1] = Opcode.ACT
            row_cmds["row"][-1] = r
            if open_row >= 0:
                row_cmds["op"][0] = Opcode.PRE
            parts.append(row_cmds)
            open_row = r
        cmds = np.zeros(n, dtype=COMMAND_DTYPE)
        step = np.arange(n)
        cmds["op"] = OPCODE_OF_ISR[k]
        if k == Isr.MAC_ABK:
            cmds["row"], cmds["col"], cmds["gbuf"] = r, step, step % gbuf_entries
        elif k == Isr.WR_GB:
            cmds["gbuf"], cmds["gpr"] = step % gbuf_entries, g + step
        else:
            cmds["gpr"] = g
        parts.append(cmds)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=COMMAND_DTYPE)
