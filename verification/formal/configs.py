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
* **DPA controller.** The shipped module's organisation cut to 2 channels of 2 banks, 16-element rows
  and 6 rows, with 1-row chunks at head_dim 2: 6 physical chunks of 32 K and 32 V tokens, 2 V slices
  of one channel (the shipped 16 channels at head_dim 128 hold 2 slices of 8); 2 config-buffer slots
  for 4 request ids (so a third request finds the table full), 2 segments and 2 virtual chunks per
  segment (so the allocation cursor steps over chunks, segments and K/V, and one request of 64 tokens
  needs 8 chunks: more than the pool), 3 instruction-buffer entries (a prologue, a K and a V body). The
  free list's wrap, the slot search and every check of every operation occur at these sizes; the
  shipped sizes differ in the widths of the same fields.
"""

from __future__ import annotations

import dataclasses

from pimphony.model.config import DEFAULT_MODULE, ModuleOrg, Provenance, TimingPreset
from pimphony.model.dpa import DpaConfig
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
                       obuf_entries=1 << fmt.obuf_bits)


def formal_dpa(module: str = DEFAULT_MODULE) -> DpaConfig:
    """The DPA controller's parameters in the proofs (see the module docstring)."""
    org = dataclasses.replace(ModuleOrg.load(module), name=f"{module}-formal", channels=2, banks=2, rows=8,
                              columns=16, burst_bytes=4, gbuf_entries=4, outreg_entries=2, obuf_entries=2,
                              gpr_bytes=1024)
    return DpaConfig(org, head_dim=2, chunk_bytes=org.lanes * org.columns * org.element_bytes, max_requests=2,
                     segments=2, max_chunks_per_segment=2, program_entries=3, request_id_bits=2)


__all__ = ["REFRESH_INTERVAL", "TIMING_DIVISOR", "formal_dpa", "formal_format", "formal_queue", "formal_timing"]
