"""Fast reads of DUT signals in a testbench's per-cycle loop.

``int(handle.value)`` builds a :class:`cocotb.types.Logic` or ``LogicArray`` for every read (~5 µs here);
a bench that samples sixteen channels every cycle for 100 K cycles spends most of its time there.
:func:`reader` reads the simulator's bit string through the handle's GPI object instead and parses it
with ``int(s, 2)`` (~1 µs): the same number, and an error (``ValueError``) for X or Z, as ``int()`` of a
cocotb value raises one. cocotb keeps the GPI object in the private attribute ``_handle`` (2.1, the
version pinned in pyproject.toml); without it the reader falls back to ``int(handle.value)``.
"""

from __future__ import annotations

from collections.abc import Callable


def reader(handle) -> Callable[[], int]:
    """A function of no arguments returning ``handle``'s current value as a non-negative int."""
    get = getattr(getattr(handle, "_handle", None), "get_signal_val_binstr", None)
    if get is None:
        return lambda: int(handle.value)
    return lambda: int(get(), 2)
