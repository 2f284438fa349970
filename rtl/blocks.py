"""The RTL blocks: one registry of their names, Verilog tops, sources and testbenches (plain data,
importable without Amaranth). :func:`pimphony.rtl.build.build_block` elaborates them, the runner
(:mod:`pimphony.verification.runner`) simulates them with their testbench, the mutation check
(:mod:`pimphony.verification.mutation`) edits their source."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Block:
    name: str
    top: str
    """The Verilog top module."""
    source: str
    """The Python module that defines it."""
    testbench: str | None
    """Its cocotb test module (``pimphony.verification.tests.tb_*``), if it has its own."""


REGISTRY = (
    Block("dcs", "dcs_queue", "pimphony.rtl.dcs", "pimphony.verification.tests.tb_dcs"),
    Block("dpa", "dpa_controller", "pimphony.rtl.dpa", "pimphony.verification.tests.tb_dpa"),
    Block("sequencer", "sequencer", "pimphony.rtl.hub", None),
    Block("hub", "pim_hub", "pimphony.rtl.hub", "pimphony.verification.tests.tb_hub"),
)
BLOCKS = tuple(b.name for b in REGISTRY)
TOP_NAMES = {b.name: b.top for b in REGISTRY}
SOURCES = {b.name: b.source for b in REGISTRY}
TESTBENCHES = {b.name: b.testbench for b in REGISTRY if b.testbench}
HUB_PARTS = ("sequencer", "dpa", "dcs")
"""The blocks a hub is made of (one DCS queue per channel)."""
