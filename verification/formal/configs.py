"""The reduced sizes the proofs run at, and why they stand for the shipped ones.

The generators take any timing preset and size, and the proofs run the same generators at sizes a
solver can close:

* **Timing.** :func:`formal_timing` divides every cycle value of the shipped preset by 32 (rounding
  up, zeros kept), which keeps every rule of the table, and their order (nRC >= nRAS + nRP, nRFC the
  longest row gap, nRDHUB >= nCLREG + nBL), while the longest gap falls from 210 to 7 cycles; the
  refresh interval becomes 10 cycles, longer than any gap (as 3,333 is). The counters the RTL
  generates from the table are the same counters, narrower.
* **DCS queue.** Queues of 2 + 2 commands (the shipped 32 + 32 differ only in pointer width; full,
  empty, wrap and both-heads-ready all occur at 2), a GBuf of 4 and an OBuf of 4 entries (so the
  ping-pong halves hold 2 entries each and a region differs from an entry, as in the shipped 64/16).
"""

from __future__ import annotations

from pimphony.model.config import Provenance, TimingPreset
from pimphony.model.isa import Format
from pimphony.model.queue import QueueConfig

TIMING_DIVISOR = 32
REFRESH_INTERVAL = 10


def formal_timing(base: TimingPreset, divisor: int = TIMING_DIVISOR, refresh_interval: int = REFRESH_INTERVAL,
                  **overrides: int) -> TimingPreset:
    """``base`` with every cycle value divided by ``divisor`` (rounded up), nREFI = ``refresh_interval``,
    then ``overrides`` (a broken rule for a negative test, say)."""
    values = {}
    for name in TimingPreset.value_fields():
        value = getattr(base, name)
        values[name] = value * divisor if name == "tck_ps" else -(-value // divisor)
    values["nREFI"] = refresh_interval
    values.update(overrides)
    source = f"{base.name} / {divisor}, nREFI = {refresh_interval} (pimphony.verification.formal.configs)"
    provenance = {name: Provenance(source, "derived") for name in values}
    return TimingPreset(name=f"{base.name}-formal", description=source, provenance=provenance, **values)


def formal_format() -> Format:
    """Command fields of one channel, narrowed to what the queue looks at (the buffer indices)."""
    return Format(channels=1, row_bits=1, col_bits=1, gbuf_bits=2, obuf_bits=2, gpr_bits=1, op_size_bits=1)


def formal_queue(fmt: Format, io_depth: int = 2, compute_depth: int = 2) -> QueueConfig:
    return QueueConfig(io_depth=io_depth, compute_depth=compute_depth, gbuf_entries=1 << fmt.gbuf_bits,
                       obuf_entries=1 << fmt.obuf_bits, tag_bits=3)


__all__ = ["REFRESH_INTERVAL", "TIMING_DIVISOR", "formal_format", "formal_queue", "formal_timing"]
