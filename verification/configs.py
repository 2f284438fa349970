"""The parameters the testbenches build the blocks with: the shipped designs scaled down so that a random
run reaches their corners (a full config buffer, an exhausted pool) often."""

from __future__ import annotations

from pimphony.model.config import DEFAULT_MODULE, ModuleOrg
from pimphony.model.dpa import DpaConfig
from pimphony.rtl.build import DPA_HEAD_DIM, cut_module


def dpa_testbench_config(module: str = DEFAULT_MODULE) -> DpaConfig:
    """The DPA controller's parameters in the cocotb block testbench: the shipped design scaled down so
    that a random run fills the config buffer and exhausts the pool often (4 requests, 2 segments,
    8 virtual chunks per segment, a pool of 32 chunks = one longest request); the instruction buffer
    and the field widths are the shipped ones."""
    return DpaConfig(ModuleOrg.load(module), DPA_HEAD_DIM, max_requests=4, segments=2, max_chunks_per_segment=8,
                     chunks=32)


def hub_testbench_config(module: str = DEFAULT_MODULE) -> DpaConfig:
    """The hub's parameters in its cocotb system testbench: the module cut to 4 channels (head_dim 64:
    one V slice of 4 channels) and the DPA controller of :func:`dpa_testbench_config` scaled to it."""
    return DpaConfig(cut_module(module, 4), 64, max_requests=4, segments=2, max_chunks_per_segment=4, chunks=32)


def testbench_options(block: str, module: str = DEFAULT_MODULE) -> dict:
    """The options of :func:`pimphony.rtl.build.build_block` that build ``block`` as its testbench does."""
    config = {"dpa": dpa_testbench_config, "hub": hub_testbench_config}.get(block)
    return {} if config is None else {"dpa": config(module)}
