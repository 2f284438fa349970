"""Parameters of a channel controller's command queue, shared by the reference policies
(:mod:`pimphony.model.policies`) and the RTL (:mod:`pimphony.rtl.dcs`): the policy encoding of
the mode register, queue depths and buffer sizes."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .config import ModuleOrg
from .isa import Opcode


class Policy(enum.IntEnum):
    """Issue policy; the value is the RTL's mode register encoding."""

    STATIC = 0
    PINGPONG = 1
    DCS = 2


BUFFER_ACCESS = {
    "gbuf": {"writes": frozenset({Opcode.WR_INP}), "reads": frozenset({Opcode.MAC})},
    "obuf": {"writes": frozenset({Opcode.WR_BIAS, Opcode.MAC}), "reads": frozenset({Opcode.MAC, Opcode.RD_OUT})},
}
"""Which commands write and read each buffer's entries (a MAC accumulates: it reads and writes its OBuf
entry); the D-Table tracks the last accessor of every entry a command uses."""
GBUF_USERS = BUFFER_ACCESS["gbuf"]["writes"] | BUFFER_ACCESS["gbuf"]["reads"]
OBUF_USERS = BUFFER_ACCESS["obuf"]["writes"] | BUFFER_ACCESS["obuf"]["reads"]


@dataclass(frozen=True)
class QueueConfig:
    """Sizes of one channel controller's command queue and tables."""

    policy: Policy = Policy.DCS
    io_depth: int = 32
    """The I/O queue's depth: 32 lets a block's query load (up to a whole GBuf) start while the previous
    block's last MACs still read the GBuf."""
    compute_depth: int = 32
    """The compute queue holds a whole SV tile of MACs (half the 64-entry GBuf): commands are dispatched in
    program order, so with a shorter compute queue the dispatcher waits on a tile's last MACs before it can
    hand the next tile's WR-INPs to the I/O queue, and the MAC unit loses two cycles at every tile (the
    16 + 16 of docs/sources.md §dcs)."""
    gbuf_entries: int = 64
    obuf_entries: int = 16
    obuf_dual_port: bool = True
    """PIMphony's OBuf drains through its own port; False models AiM's output registers (RD-OUT is a
    column command, :mod:`pimphony.model.timing`)."""

    def __post_init__(self):
        for name in ("io_depth", "compute_depth", "gbuf_entries", "obuf_entries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.policy == Policy.PINGPONG and (self.gbuf_entries < 2 or self.obuf_entries < 2):
            raise ValueError("ping-pong needs at least 2 GBuf and 2 OBuf entries (two halves each)")

    @classmethod
    def for_org(cls, org: ModuleOrg, policy: Policy, **kw) -> QueueConfig:
        """The paper's hardware for a policy: the static baseline has AiM's output registers
        (``outreg_entries``, single-ported); ping-pong and DCS share PIMphony's dual-ported OBuf."""
        baseline = policy == Policy.STATIC
        kw.setdefault("obuf_entries", org.outreg_entries if baseline else org.obuf_entries)
        kw.setdefault("obuf_dual_port", not baseline)
        return cls(policy=policy, gbuf_entries=org.gbuf_entries, **kw)

    @classmethod
    def rtl_default(cls, org: ModuleOrg) -> QueueConfig:
        """The parameters the RTL is built with by default (PIMphony's hardware: DCS-sized, dual-ported
        OBuf); every policy runs on it through the mode register."""
        return cls.for_org(org, Policy.DCS)

    @property
    def blocking_reads(self) -> bool:
        """The static baseline, like AiM's in-order controller, waits for a RD-OUT's data at the HUB
        (:func:`~pimphony.model.timing.blocking_table`); ping-pong and DCS drain the OBuf by its own port."""
        return self.policy == Policy.STATIC

    @property
    def gbuf_regions(self) -> int:
        """Hazard-tracking regions of the GBuf: one per entry (DCS) or two halves (ping-pong)."""
        return {Policy.DCS: self.gbuf_entries, Policy.PINGPONG: 2, Policy.STATIC: 1}[self.policy]

    @property
    def obuf_regions(self) -> int:
        return {Policy.DCS: self.obuf_entries, Policy.PINGPONG: 2, Policy.STATIC: 1}[self.policy]
