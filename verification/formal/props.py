"""Named properties: every ``Assert`` and ``Cover`` of a harness belongs to a group and has a name.

A property's condition is driven onto a signal named ``<group>__<name>``, so a counterexample trace
names what failed (:func:`pimphony.verification.formal.sby.failed_properties` reads the signals that
are low in the failing step), and a harness built for some groups emits only their statements (each
proof task stays small).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from amaranth import Module, Signal
from amaranth.hdl import Assert, Assume, Cover

_NAME = re.compile(r"[^A-Za-z0-9_]")


def signal_name(group: str, name: str) -> str:
    """The signal that carries property ``name`` of ``group`` in the generated design."""
    return f"{group}__{_NAME.sub('_', name)}"


@dataclass
class Properties:
    """Collects a harness's properties; ``groups`` selects which ones are emitted (all when None)."""

    module: Module
    groups: frozenset[str] | None = None
    asserts: bool = True
    """False: only the Cover statements (a cover task)."""
    asserted: list[tuple[str, str]] = field(default_factory=list)
    covered: list[tuple[str, str]] = field(default_factory=list)

    def wanted(self, group: str) -> bool:
        return self.groups is None or group in self.groups

    def _signal(self, group: str, name: str, cond) -> Signal:
        sig = Signal(name=signal_name(group, name))
        self.module.d.comb += sig.eq(cond)
        return sig

    def check(self, group: str, name: str, cond) -> None:
        """Assert ``cond`` in every cycle (emitted when ``group`` is selected)."""
        if self.asserts and self.wanted(group):
            self.asserted.append((group, name))
            self.module.d.comb += Assert(self._signal(group, name, cond), name)

    def implies(self, group: str, name: str, premise, conclusion) -> None:
        self.check(group, name, ~premise | conclusion)

    def cover(self, group: str, name: str, cond) -> None:
        """A state the harness must be able to reach."""
        if self.wanted(group):
            self.covered.append((group, name))
            self.module.d.comb += Cover(self._signal(group, name, cond), name, src_loc_at=1)

    def assume(self, cond) -> None:
        """An environment constraint (emitted whatever the groups)."""
        self.module.d.comb += Assume(cond)
