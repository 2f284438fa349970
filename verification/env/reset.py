"""Reset at the pins, shared by the cocotb testbenches."""

from __future__ import annotations

from cocotb.triggers import ClockCycles


async def hold_reset(dut, idle: dict[str, int], cycles: int = 3) -> None:
    """Drive the ``idle`` inputs (port name -> value), hold ``rst`` for ``cycles`` clock cycles and
    release it right after the last of them (the next cycle is the first out of reset)."""
    for name, value in idle.items():
        getattr(dut, name).value = value
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
