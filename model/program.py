"""The contract between the compiler and the HUB: an attention program for one PIM module.

A program is a list of :class:`Step` objects. A step computes one *block* of tokens of one
(request, KV head) pair — an :class:`AttentionUnit` — in two channel phases with EPU work between:

1. the HUB writes the group's queries (bf16) into GPR at ``unit.query_gpr``;
2. ``qk`` instructions: WR-INP the queries, then MAC over K rows; RD-OUT the scores into GPR;
3. EPU: gather scores (``unit.scores``), softmax over the block in fp32, write bf16 probability
   tiles into GPR (``unit.probs``);
4. ``sv`` instructions: WR-INP probability tiles, MAC over V^T rows, RD-OUT partial outputs;
5. EPU: gather partials (``unit.partials``), sum them, merge the block into the pair's running
   (max, sum, output) state; after the pair's last block, normalise and emit the output.

Maps say where data sit in the GPR: ``gpr[k]`` is an entry and ``index[k, j]`` the flat position of
element ``j`` of that entry in the unit's tensor (scores and probabilities: ``head * n_tokens + t``;
partials: ``head * head_dim + dim``), or ``-1`` for padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .isa import Instruction, decode_all, encode

PHASES = ("qk", "sv", "both")
"""The channel phases a program can be cut to: QK^T, SV, or both in program order."""

GPR_ZERO = 0
"""GPR entry 0 holds zeros: the source of WR-BIAS that starts a MAC chain."""


@dataclass
class GprMap:
    """Entries of the GPR and the flat tensor index of each of their 16 elements (-1 = unused)."""

    gpr: np.ndarray
    index: np.ndarray


@dataclass
class AttentionUnit:
    """One block ``[t0, t1)`` of one (request, KV head) pair."""

    request: int
    kv_head: int
    t0: int
    t1: int
    group: int
    head_dim: int
    query_gpr: int
    scores: GprMap
    probs: GprMap
    partials: GprMap
    first: bool
    last: bool

    @property
    def n_tokens(self) -> int:
        return self.t1 - self.t0


class _Phase:
    """``step.qk`` / ``step.sv``: the phase's instructions (:meth:`Step.instructions`); assigning a list of
    instructions or an encoding replaces the phase."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, step: Step | None, owner: type | None = None):
        return self if step is None else step.instructions(self.name)

    def __set__(self, step: Step, value: list[Instruction] | np.ndarray) -> None:
        step._forms[self.name] = {"encoded" if isinstance(value, np.ndarray) else "instructions": value}


class Step:
    """One unit: its QK^T instructions, then its SV instructions.

    Each phase is kept in the form it was given, a list of :class:`~pimphony.model.isa.Instruction` or
    its encoding (:func:`~pimphony.model.isa.encode`), and converted the other way on first use: the
    lowering gives encodings, which the golden model executes as they are, and whoever reads
    ``qk`` / ``sv`` gets the instructions.
    """

    qk = _Phase()
    sv = _Phase()

    def __init__(self, unit: AttentionUnit, qk: list[Instruction] | np.ndarray | None = None,
                 sv: list[Instruction] | np.ndarray | None = None):
        self.unit = unit
        self._forms: dict[str, dict[str, object]] = {}
        self.qk = [] if qk is None else qk
        self.sv = [] if sv is None else sv

    def instructions(self, phase: str) -> list[Instruction]:
        """The instructions of phase ``"qk"`` or ``"sv"``."""
        forms = self._forms[phase]
        if "instructions" not in forms:
            forms["instructions"] = decode_all(forms["encoded"])
        return forms["instructions"]

    def encoded(self, phase: str) -> np.ndarray:
        """The instructions of phase ``"qk"`` or ``"sv"`` encoded (:func:`~pimphony.model.isa.encode`)."""
        forms = self._forms[phase]
        if "encoded" not in forms:
            forms["encoded"] = encode(forms["instructions"])
        return forms["encoded"]

    def __repr__(self) -> str:
        return f"Step(unit={self.unit!r}, qk={len(self.encoded('qk'))} instructions, sv={len(self.encoded('sv'))})"


@dataclass
class Program:
    """All steps of one decode attention layer on one module."""

    module: int
    steps: list[Step] = field(default_factory=list)

    def instructions(self, phase: str = "both") -> list[Instruction]:
        """Every instruction in program order; ``phase`` ``"qk"`` or ``"sv"`` keeps one phase's."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        out: list[Instruction] = []
        for step in self.steps:
            if phase != "sv":
                out.extend(step.qk)
            if phase != "qk":
                out.extend(step.sv)
        return out


@dataclass
class DpaProgram:
    """A (request, KV head)'s attention program in DPA form: its size does not depend on the context.

    For every block of ``block_tokens`` tokens that the request's current length reaches, the
    dispatcher issues ``prologue`` (the query load), then expands the ``qk`` loop (a DYN_LOOP over K
    rows and its body) and the ``sv`` loop (over V rows).
    """

    block_tokens: int
    prologue: list[Instruction]
    qk: list[Instruction]
    sv: list[Instruction]

    def size(self) -> int:
        """Instructions in the program."""
        return len(self.prologue) + len(self.qk) + len(self.sv)
