"""Stream agents: one driver (:class:`Source`) and one monitor (:class:`Sink`) for an Amaranth
``lib.stream`` port, on either simulator binding: :class:`SimPort` (amaranth.sim, the payload as its
``data.Struct`` view) or :class:`CocotbPort` (cocotb on the generated Verilog, the payload packed and
unpacked with the port's layout, so no field is sliced by hand).

The stream rules they keep: a source holds ``valid`` and the payload from the cycle it offers an item
until the cycle ``valid & ready`` takes it, and inserts idle cycles only between items; a sink may
lower ``ready`` in any cycle. Both are stepped once per clock cycle, before the clock edge
(``step(ctx, cycle)``, or under cocotb ``drive`` before and ``taken`` / ``sample`` after the
signals settle; cocotb's binding ignores ``ctx``); :class:`Gaps` makes seeded idle and
back-pressure patterns and logs its seed so that a failure can be replayed.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from functools import cache
from typing import Any

from amaranth.lib import data

from pimphony.model.perf.hub import EPU_CYCLES

from .signals import reader


class Gaps:
    """A seeded per-cycle pattern: ``pattern(cycle)`` is True in about ``rate`` of the cycles (a source's
    idle cycles, a sink's back-pressure). The seed is drawn when not given and reported through
    ``log`` either way."""

    def __init__(self, rate: float, seed: int | None = None, log: Callable[[str], None] | None = print,
                 name: str = "gaps"):
        if not 0 <= rate < 1:
            raise ValueError(f"rate must be in [0, 1), got {rate}")
        self.seed = random.randrange(1 << 32) if seed is None else seed
        self.rate = rate
        self._rng = random.Random(self.seed)
        self._memo: dict[int, bool] = {}
        if log is not None:
            log(f"{name}: rate {rate}, seed {self.seed}")

    def __call__(self, cycle: int) -> bool:
        if cycle not in self._memo:
            self._memo[cycle] = self._rng.random() < self.rate
        return self._memo[cycle]


def idle_pattern(rate: float, rng) -> Callable[[int], bool] | None:
    """A source's idle cycles at ``rate``, seeded from ``rng`` (a numpy Generator the bench seeded and
    printed); None when ``rate`` is 0."""
    return Gaps(rate, int(rng.integers(1 << 32)), log=None) if rate else None


def ready_pattern(backpressure: float, rng) -> Callable[[int], bool] | None:
    """A sink's ``ready`` with back-pressure in about ``backpressure`` of the cycles, seeded from ``rng``;
    None (always ready) when it is 0."""
    if not backpressure:
        return None
    stalled = Gaps(backpressure, int(rng.integers(1 << 32)), log=None)
    return lambda cycle: not stalled(cycle)


class SimPort:
    """amaranth.sim binding of a stream port (an interface with ``valid``, ``ready`` and ``payload``)."""

    def __init__(self, port):
        self.port = port

    def get_valid(self, ctx) -> bool:
        return bool(ctx.get(self.port.valid))

    def get_ready(self, ctx) -> bool:
        return bool(ctx.get(self.port.ready))

    def set_valid(self, ctx, value: bool) -> None:
        ctx.set(self.port.valid, int(value))

    def set_ready(self, ctx, value: bool) -> None:
        ctx.set(self.port.ready, int(value))

    def get_payload(self, ctx) -> Any:
        return ctx.get(self.port.payload)

    def set_payload(self, ctx, value: Any) -> None:
        ctx.set(self.port.payload, value)


@cache
def _fields(layout: data.StructLayout) -> tuple[tuple[str, int, int], ...]:
    """(name, offset, mask) of every field; computed once per layout (Amaranth derives a field's width
    from its shape on every access, which dominated the testbench's time per command)."""
    return tuple((name, fld.offset, (1 << fld.width) - 1) for name, fld in layout)


def pack(layout: data.StructLayout, values: dict[str, int]) -> int:
    """The bits of a payload of ``layout`` (fields LSB first, as Amaranth lays them out)."""
    word = 0
    for name, offset, mask in _fields(layout):
        word |= (int(values.get(name, 0)) & mask) << offset
    return word


def unpack(layout: data.StructLayout, word: int) -> dict[str, int]:
    return {name: (word >> offset) & mask for name, offset, mask in _fields(layout)}


class CocotbPort:
    """cocotb binding of a stream port ``name`` of a generated Verilog top (its ``<name>__valid``,
    ``<name>__ready`` and ``<name>__payload`` signals); payloads are packed from and unpacked to a
    mapping of the top-level fields of ``layout`` (:func:`pack`, :func:`unpack`; an ``int`` is taken
    as the packed bits)."""

    def __init__(self, dut, name: str, layout: data.StructLayout):
        self.layout = layout
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self._valid, self._ready, self._payload = reader(self.valid), reader(self.ready), reader(self.payload)

    def pack(self, value: Any) -> int:
        return value if isinstance(value, int) else pack(self.layout, value)

    def unpack(self, bits: int) -> dict[str, int]:
        return unpack(self.layout, bits)

    def get_valid(self, ctx=None) -> bool:
        return self._valid() == 1

    def get_ready(self, ctx=None) -> bool:
        return self._ready() == 1

    def set_valid(self, ctx, value: bool) -> None:
        self.valid.value = int(value)

    def set_ready(self, ctx, value: bool) -> None:
        self.ready.value = int(value)

    def get_payload(self, ctx=None) -> Any:
        return self.unpack(self._payload())

    def set_payload(self, ctx, value: Any) -> None:
        self.payload.value = self.pack(value)


class Source:
    """Driver: offers the items given to :meth:`send`, in order, each until it is taken. ``idle(cycle)``
    (optional) keeps the source idle in that cycle when no item is being offered; ``encode`` turns an
    item into the payload the binding sets."""

    def __init__(self, port: SimPort | CocotbPort, idle: Callable[[int], bool] | None = None,
                 encode: Callable[[Any], Any] | None = None):
        self.port, self.idle, self.encode = port, idle, encode
        self.items: deque = deque()
        self.current: Any = None
        self.offered = False

    def send(self, item: Any) -> None:
        self.items.append(item)

    def clear(self) -> None:
        """Forget the item being offered and those waiting (a run stopped early); ``valid`` falls at the
        next :meth:`drive`."""
        self.items.clear()
        self.offered = False

    @property
    def busy(self) -> bool:
        """An item is being offered or waits."""
        return self.offered or bool(self.items)

    def drive(self, ctx, cycle: int) -> None:
        """Set ``valid`` and the payload for this cycle."""
        if not self.offered and self.items and not (self.idle and self.idle(cycle)):
            self.current, self.offered = self.items.popleft(), True
            self.port.set_payload(ctx, self.encode(self.current) if self.encode else self.current)
        self.port.set_valid(ctx, self.offered)

    def taken(self, ctx) -> Any:
        """After :meth:`drive` (and, under cocotb, once the signals have settled): the item taken in this
        cycle (``valid & ready``), else None."""
        if self.offered and self.port.get_ready(ctx):
            self.offered = False
            return self.current
        return None

    def step(self, ctx, cycle: int) -> Any:
        """:meth:`drive` then :meth:`taken` (amaranth.sim settles between them on its own)."""
        self.drive(ctx, cycle)
        return self.taken(ctx)


class Sink:
    """Monitor with back-pressure: ``ready(cycle)`` (optional; always ready by default) drives
    ``ready``; :meth:`step` returns the payload transferred in the cycle, else None. With ``hold`` the
    signal is written only when it changes (for a bench that owns it: nothing else, a reset included,
    drives it meanwhile; each write costs a simulator call)."""

    def __init__(self, port: SimPort | CocotbPort, ready: Callable[[int], bool] | None = None, hold: bool = False):
        self.port, self.ready, self.hold = port, ready, hold
        self.now, self._driven = True, False

    def drive(self, ctx, cycle: int) -> bool:
        """Set ``ready`` for this cycle; returns it."""
        now = True if self.ready is None else bool(self.ready(cycle))
        if now != self.now or not (self.hold and self._driven):
            self.port.set_ready(ctx, now)
            self.now, self._driven = now, True
        return now

    def sample(self, ctx) -> Any:
        """After :meth:`drive` (under cocotb, once settled): the payload transferred in this cycle, else
        None."""
        if self.now and self.port.get_valid(ctx):
            return self.port.get_payload(ctx)
        return None

    def step(self, ctx, cycle: int) -> Any:
        """:meth:`drive` then :meth:`sample`."""
        self.drive(ctx, cycle)
        return self.sample(ctx)


class EpuBarrier:
    """The host's side of the hub's phase barrier (``sync``): the EPU acknowledges a barrier
    ``epu_cycles`` cycles after it is first offered (its softmax work). ``ready`` says, before the
    cycle's signals settle, whether a barrier offered in this cycle is taken; :meth:`step` is then told
    whether one was offered and returns whether it was taken."""

    def __init__(self, epu_cycles: int = EPU_CYCLES):
        self.epu_cycles = epu_cycles
        self.waiting = 0

    @property
    def ready(self) -> bool:
        return self.waiting >= self.epu_cycles

    def step(self, offered: bool) -> bool:
        if not offered:
            return False
        if self.ready:
            self.waiting = 0
            return True
        self.waiting += 1
        return False
