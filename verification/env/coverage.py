"""Functional coverage of the cocotb testbenches (cocotb-coverage), and its merge across runs.

Cover items (names under ``pimphony.``):

- ``dcs.issue``: the cross opcode x policy x occupancy of every command the DCS queue's block testbench
  sees issued. Occupancy is that of the queue the command leaves, at its issue: ``one`` (it was
  alone), ``some``, ``full`` (the queue held ``depth`` commands). REF is not a program command: the
  refreshes the controller inserts are ``dcs.refresh`` x policy (block and hub testbenches).
- ``dcs.hazard``: every true dependency the queue had to enforce (the consumer entered the queue before
  its producer completed), by buffer and kind (GBuf RAW/WAR/WAW, OBuf RAW/WAR/WAW and the MAC
  accumulate chain) x policy (ping-pong and DCS track hazards; static issues in order).
- ``dpa.operation`` x ``dpa.status``: every response of the DPA controller, cross of operation and
  status (the statuses an operation cannot return are ignored bins).
- ``hub.barrier``: phase barriers of the hub (after QK^T, after SV) x policy.

A cocotb run writes its database to ``$PIMPHONY_COVERAGE`` (YAML) after each test when that is set;
:func:`merge` sums the hits of several runs and :func:`summary` prints the table ``pimphony regress``
shows.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from pimphony.model.dpa import DpaOp
from pimphony.model.isa import CHANNEL_OPCODES, Opcode
from pimphony.model.kvcache import Status
from pimphony.model.queue import BUFFER_ACCESS, Policy

OPCODES = [Opcode(k).name for k in range(CHANNEL_OPCODES) if k != Opcode.REF]
POLICIES = [p.name for p in Policy]
OCCUPANCY = ["one", "some", "full"]
HAZARDS = ["gbuf RAW", "gbuf WAR", "gbuf WAW", "obuf RAW", "obuf WAR", "obuf WAW", "obuf accumulate"]
TRACKING = [Policy.PINGPONG.name, Policy.DCS.name]
INVALID = "(invalid op)"
OPERATIONS = [op.name for op in DpaOp] + [INVALID]
STATUSES = [s.name for s in Status]

POSSIBLE = {
    DpaOp.OPEN.name: {Status.OK, Status.DUPLICATE_REQUEST, Status.BAD_LENGTH, Status.PAST_END, Status.TABLE_FULL,
                      Status.OUT_OF_CHUNKS},
    DpaOp.APPEND.name: {Status.OK, Status.UNKNOWN_REQUEST, Status.BAD_LENGTH, Status.PAST_END, Status.OUT_OF_CHUNKS},
    DpaOp.CLOSE.name: {Status.OK, Status.UNKNOWN_REQUEST},
    DpaOp.TRANSLATE.name: {Status.OK, Status.UNKNOWN_REQUEST, Status.PAST_END},
    DpaOp.RUN.name: {Status.OK, Status.UNKNOWN_REQUEST, Status.PAST_END, Status.BAD_PROGRAM},
    DpaOp.PROGRAM.name: {Status.OK, Status.BAD_LENGTH},
    DpaOp.LOAD.name: {Status.OK, Status.BAD_PROGRAM, Status.PROGRAM_FULL},
    INVALID: {Status.BAD_OP},
}
"""The statuses each operation can answer (the golden model's rules)."""


def _items():
    """Create the cover items once per process (cocotb-coverage keeps them in a global database)."""
    from cocotb_coverage.coverage import CoverCross, CoverPoint

    def arg(i):
        return lambda *a: a[i]

    impossible = [(op, s.name) for op in OPERATIONS for s in Status if s not in POSSIBLE[op]]

    @CoverPoint("pimphony.dcs.opcode", xf=arg(0), bins=OPCODES)
    @CoverPoint("pimphony.dcs.policy", xf=arg(1), bins=POLICIES)
    @CoverPoint("pimphony.dcs.occupancy", xf=arg(2), bins=OCCUPANCY)
    @CoverCross("pimphony.dcs.issue", items=["pimphony.dcs.opcode", "pimphony.dcs.policy", "pimphony.dcs.occupancy"])
    def issue(op, policy, occupancy):
        pass

    @CoverPoint("pimphony.dcs.refresh", bins=POLICIES)
    def refresh(policy):
        pass

    @CoverPoint("pimphony.dcs.hazard_kind", xf=arg(0), bins=HAZARDS)
    @CoverPoint("pimphony.dcs.hazard_policy", xf=arg(1), bins=TRACKING)
    @CoverCross("pimphony.dcs.hazard", items=["pimphony.dcs.hazard_kind", "pimphony.dcs.hazard_policy"])
    def hazard(kind, policy):
        pass

    @CoverPoint("pimphony.dpa.operation", xf=arg(0), bins=OPERATIONS)
    @CoverPoint("pimphony.dpa.status", xf=arg(1), bins=STATUSES)
    @CoverCross("pimphony.dpa.response", items=["pimphony.dpa.operation", "pimphony.dpa.status"],
                ign_bins=impossible)
    def response(op, status):
        pass

    @CoverPoint("pimphony.hub.barrier", bins=[(phase, p) for phase in ("after QK", "after SV") for p in POLICIES])
    def barrier(phase_and_policy):
        pass

    return issue, refresh, hazard, response, barrier


_SAMPLERS = None


def _samplers():
    global _SAMPLERS
    if _SAMPLERS is None:
        _SAMPLERS = _items()
    return _SAMPLERS


def sample_issue(op: int, policy: Policy, occupancy: int, depth: int, refresh: bool = False) -> None:
    """A command issued by a DCS queue: its opcode, the policy and the occupancy of its queue (counting
    itself) out of ``depth``; ``refresh``: an inserted REF (not from a queue)."""
    if refresh:
        _samplers()[1](Policy(policy).name)
        return
    level = "one" if occupancy <= 1 else "full" if occupancy >= depth else "some"
    _samplers()[0](Opcode(op).name, Policy(policy).name, level)


def hazard_kind(producer: int, consumer: int, buffer: str) -> str | None:
    """The kind of the dependency of ``consumer`` on ``producer`` over ``buffer`` ('gbuf' or 'obuf');
    None for read-after-read (ordered by the D-Table, but not a true hazard)."""
    if buffer == "obuf" and producer == consumer == Opcode.MAC:
        return "obuf accumulate"
    writes, reads = BUFFER_ACCESS[buffer]["writes"], BUFFER_ACCESS[buffer]["reads"]
    p_w, c_w, c_r = producer in writes, consumer in writes, consumer in reads
    if p_w and c_r:
        return f"{buffer} RAW"
    if p_w and c_w:
        return f"{buffer} WAW"
    if c_w:
        return f"{buffer} WAR"
    return None


def sample_hazard(producer: int, consumer: int, buffer: str, policy: Policy) -> None:
    kind = hazard_kind(producer, consumer, buffer)
    if kind is not None and Policy(policy).name in TRACKING:
        _samplers()[2](kind, Policy(policy).name)


def sample_response(op: int, status: int) -> None:
    """A response of the DPA controller to an operation with op code ``op``."""
    name = DpaOp(op).name if op in {int(o) for o in DpaOp} else INVALID
    _samplers()[3](name, Status(status).name)


def sample_barrier(sv: bool, policy: Policy) -> None:
    _samplers()[4](("after SV" if sv else "after QK", Policy(policy).name))


def export() -> Path | None:
    """Write this process's coverage to ``$PIMPHONY_COVERAGE`` (if set); call at the end of a test."""
    path = os.environ.get("PIMPHONY_COVERAGE")
    if not path:
        return None
    from cocotb_coverage.coverage import coverage_db

    _samplers()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    coverage_db.export_to_yaml(path)
    return Path(path)


CROSSES = ("pimphony.dcs.issue", "pimphony.dcs.refresh", "pimphony.dcs.hazard", "pimphony.dpa.response",
           "pimphony.hub.barrier")
"""The items :func:`summary` reports (the crosses and the points not crossed)."""


def merge(files: list[Path]) -> dict[str, dict[str, int]]:
    """Hits per bin of every cover item, summed over the YAML exports ``files``."""
    merged: dict[str, dict[str, int]] = {}
    for f in files:
        for name, item in (yaml.safe_load(f.read_text()) or {}).items():
            bins = item.get("bins:_hits")
            if bins is None:
                continue
            into = merged.setdefault(name, {})
            for b, hits in bins.items():
                into[str(b)] = into.get(str(b), 0) + int(hits)
    return merged


def summary(merged: dict[str, dict[str, int]], holes: int = 6) -> str:
    """A table: item, bins hit / bins, percentage; and the first ``holes`` bins never hit per item."""
    lines = [f"  {'cover item':<24} {'bins hit':>9} {'coverage':>9}  holes"]
    for name in CROSSES:
        bins = merged.get(name)
        if bins is None:
            lines.append(f"  {name.removeprefix('pimphony.'):<24} {'-':>9} {'not run':>9}")
            continue
        hit = sum(1 for h in bins.values() if h > 0)
        missing = [b for b, h in bins.items() if h == 0]
        more = f" (+{len(missing) - holes} more)" if len(missing) > holes else ""
        lines.append(f"  {name.removeprefix('pimphony.'):<24} {f'{hit}/{len(bins)}':>9} {hit / len(bins):>9.1%}  "
                     + ", ".join(missing[:holes]) + more)
    return "\n".join(lines)
