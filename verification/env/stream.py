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
from typing import Any

from amaranth.lib import data


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


class CocotbPort:
    """cocotb binding of a stream port ``name`` of a generated Verilog top (its ``<name>__valid``,
    ``<name>__ready`` and ``<name>__payload`` signals); payloads are packed and unpacked with
    ``layout`` (a mapping of field values in, a :class:`data.Const` view out)."""

    def __init__(self, dut, name: str, layout: data.Layout):
        self.layout = data.Layout.cast(layout)
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")

    def pack(self, value: Any) -> int:
        return value if isinstance(value, int) else self.layout.const(value).as_value().value

    def unpack(self, bits: int) -> Any:
        return self.layout.from_bits(bits)

    def get_valid(self, ctx=None) -> bool:
        return int(self.valid.value) == 1

    def get_ready(self, ctx=None) -> bool:
        return int(self.ready.value) == 1

    def set_valid(self, ctx, value: bool) -> None:
        self.valid.value = int(value)

    def set_ready(self, ctx, value: bool) -> None:
        self.ready.value = int(value)

    def get_payload(self, ctx=None) -> Any:
        return self.unpack(int(self.payload.value))

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
    ``ready``; :meth:`step` returns the payload transferred in the cycle, else None."""

    def __init__(self, port: SimPort | CocotbPort, ready: Callable[[int], bool] | None = None):
        self.port, self.ready = port, ready
        self.now = True

    def drive(self, ctx, cycle: int) -> bool:
        """Set ``ready`` for this cycle; returns it."""
        self.now = True if self.ready is None else bool(self.ready(cycle))
        self.port.set_ready(ctx, self.now)
        return self.now

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
    ``epu_cycles`` cycles after it is first offered (its softmax work); :meth:`step` is told each
    cycle whether a barrier is offered and answers whether to take it in that cycle."""

    def __init__(self, epu_cycles: int):
        self.epu_cycles = epu_cycles
        self.waiting = 0

    def step(self, offered: bool) -> bool:
        if not offered:
            return False
        self.waiting += 1
        if self.waiting > self.epu_cycles:
            self.waiting = 0
            return True
        return False
