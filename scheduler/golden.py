"""Decode attention end to end on the golden model: place, lower, load KV, execute, compare.

:func:`run_golden_attention` is what ``pimphony attention`` and ``pimphony bench golden`` run. Inputs
are held as bfloat16 (what the hardware stores); the reference is float64 on those same values.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ml_dtypes
import numpy as np

from pimphony.model import kernels
from pimphony.model.attention import Reference, check_shapes, decode_attention
from pimphony.model.config import InputError, ModelConfig, ModuleOrg
from pimphony.model.hub import DpaDispatcher, PimHub
from pimphony.model.isa import Opcode
from pimphony.model.kvcache import ChunkLayout, DpaAllocator
from pimphony.model.numerics import scale_for

from .dpa import dpa_block, lower_dpa, place_dpa
from .lower import AttentionLowering, sink_order
from .partition import make_partition, pack_k_bits, pack_v_bits

BF16 = ml_dtypes.bfloat16


@dataclass
class AttentionInputs:
    """One layer's decode-attention operands, rounded to bf16."""

    q: np.ndarray        # (B, H, D) bf16
    k: np.ndarray        # (B, Hkv, Tmax, D) bf16
    v: np.ndarray        # (B, Hkv, Tmax, D) bf16
    lengths: np.ndarray  # (B,) int64

    @classmethod
    def random(cls, model: ModelConfig, lengths: list[int] | np.ndarray, seed: int) -> AttentionInputs:
        """Standard-normal q, K, V, drawn in float32 and rounded to bf16 (one KV head at a time to bound memory)."""
        lengths = np.asarray(lengths, dtype=np.int64)
        rng = np.random.default_rng(seed)
        b, tmax, d = len(lengths), int(lengths.max()), model.head_dim
        q = rng.standard_normal((b, model.heads, d), dtype=np.float32).astype(BF16)
        k = np.zeros((b, model.kv_heads, tmax, d), dtype=BF16)
        v = np.zeros((b, model.kv_heads, tmax, d), dtype=BF16)
        for r in range(b):
            for h in range(model.kv_heads):
                t = int(lengths[r])
                k[r, h, :t] = rng.standard_normal((t, d), dtype=np.float32).astype(BF16)
                v[r, h, :t] = rng.standard_normal((t, d), dtype=np.float32).astype(BF16)
        return cls(q, k, v, lengths)

    @classmethod
    def load(cls, path: str | Path, model: ModelConfig) -> AttentionInputs:
        """Read ``q`` (B, H, D), ``k``/``v`` (B, Hkv, Tmax, D) and ``lengths`` (B,) from an npz."""
        where = str(path)
        if Path(path).is_dir():
            raise InputError(f"{where}: is a folder; give an .npz file")
        try:
            loaded = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise InputError(f"{where}: file not found") from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{where}: not a readable .npz file ({exc})") from None
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise InputError(f"{where}: holds one array (.npy); give an .npz with q, k, v and lengths")
        try:
            with loaded as f:
                arrays = {name: f[name] for name in f.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InputError(f"{where}: not a readable .npz file ({exc})") from None
        for name in ("q", "k", "v", "lengths"):
            if name not in arrays:
                raise InputError(f"{where}: missing array {name!r}; the file needs q, k, v, lengths")
        q, k, v, lengths = arrays["q"], arrays["k"], arrays["v"], arrays["lengths"]
        stored = {}
        for name, arr in (("q", q), ("k", k), ("v", v)):
            if not np.issubdtype(arr.dtype, np.floating):
                raise InputError(f"{where}: {name} must be floating point; got {arr.dtype}")
            with np.errstate(over="ignore"):                          # overflow is reported just below
                stored[name] = arr.astype(np.float32).astype(BF16)    # as the banks and the GPR hold them
            bad = ~np.isfinite(stored[name])
            if bad.any():
                first = tuple(int(i) for i in np.argwhere(bad)[0])
                raise InputError(f"{where}: {name} has {int(bad.sum())} values that are NaN or infinite once "
                                 f"rounded to bf16 (the first at index {first}: {float(arr[first]):g}); bf16 holds "
                                 f"magnitudes up to {float(np.finfo(BF16).max):.3g}")
        if not np.issubdtype(lengths.dtype, np.integer):
            raise InputError(f"{where}: lengths must be integers; got {lengths.dtype}")
        h, hkv, d = model.heads, model.kv_heads, model.head_dim
        if q.ndim != 3 or q.shape[1:] != (h, d):
            raise InputError(f"{where}: q has shape {q.shape}; {model.name} needs (B, {h}, {d})")
        b = q.shape[0]
        if b == 0:
            raise InputError(f"{where}: q holds no request (batch 0); give at least one")
        for name, arr in (("k", k), ("v", v)):
            if arr.ndim != 4 or arr.shape[0] != b or arr.shape[1] != hkv or arr.shape[3] != d:
                raise InputError(f"{where}: {name} has shape {arr.shape}; {model.name} needs ({b}, {hkv}, Tmax, {d})")
        if k.shape != v.shape:
            raise InputError(f"{where}: k {k.shape} and v {v.shape} differ")
        if lengths.shape != (b,):
            raise InputError(f"{where}: lengths has shape {lengths.shape}; needs ({b},)")
        if lengths.min() < 1 or lengths.max() > k.shape[2]:
            raise InputError(f"{where}: lengths must lie in [1, {k.shape[2]}]; got {lengths.min()}..{lengths.max()}")
        return cls(stored["q"], stored["k"], stored["v"], lengths.astype(np.int64))


def _expand_dpa(program, placements, lowering, allocator, org, model) -> None:
    """Replace each step's instructions by the dispatcher's expansion of the pair's DPA program."""
    dispatcher = DpaDispatcher(org, model.head_dim)
    steps = iter(program.steps)
    for p in placements:
        code = lower_dpa(lowering, p, lowering.block_tokens)

        def translate(kind: int, row: int, p=p) -> int:
            return allocator.row_of(p.request, p.kv_head, kind, row)

        for qk, sv in dispatcher.expand(code, translate, p.length):
            step = next(steps)
            step.qk, step.sv = qk, sv


@dataclass
class AttentionRun:
    """Result of one layer on the golden model."""

    out: np.ndarray                 # (B, H, D) float32
    reference: Reference | None
    commands: np.ndarray            # (modules, channels, opcodes): commands issued
    phase_macs: dict[str, np.ndarray]   # "qk"/"sv" -> (modules, channels) MAC commands
    mac_ops: int
    seconds: float
    stages: dict[str, float] = field(default_factory=dict)
    """Seconds of each stage: ``place`` (placement and writing K, V into the banks), ``lower``
    (lowering to programs) and ``execute`` (the channels and the EPU)."""

    @property
    def max_error(self) -> float:
        return float(np.abs(self.out - self.reference.out).max())

    def error_ratio(self) -> float:
        """max over elements of |error| / bound (pass when <= 1)."""
        err = np.abs(self.out - self.reference.out).max(axis=2)
        return float((err / self.reference.tolerance()).max())

    def activity(self, phase: str) -> float:
        """Fraction of the system's channels that execute MACs in a phase."""
        return float((self.phase_macs[phase] > 0).mean())

    def balance(self) -> float:
        """Mean over max of MAC commands per channel (1.0 = perfectly even)."""
        macs = self.commands[:, :, Opcode.MAC].reshape(-1)
        return float(macs.mean() / macs.max()) if macs.max() else 0.0


def warm_up() -> None:
    """Compile (or load from numba's disk cache) every compiled loop of a golden run now: the channels'
    instruction loop (:func:`pimphony.model.kernels.warm_up`), the KV packing and the RD-OUT sinking."""
    kernels.warm_up()
    bits = np.zeros((1, 1), dtype=np.uint16)
    for out in (np.zeros((1, 1, 1, 1), dtype=np.uint16), np.zeros((1, 2, 1, 1), dtype=np.uint16)[:, :1]):
        pack_k_bits(bits, 0, out)                   # into new arrays, and into views of the banks' storage
        pack_v_bits(bits, 1, 1, 0, out)
    sink_order(*(np.zeros(0, dtype=np.int64) for _ in range(3)))


def run_golden_attention(model: ModelConfig, org: ModuleOrg, inputs: AttentionInputs, partition: str = "tcp",
                         modules: int = 1, obuf_entries: int | None = None, mode: str = "compiled",
                         block_tokens: int | None = None, check: bool = True, allocation: str = "contiguous",
                         progress: Callable[[int, int], None] | None = None) -> AttentionRun:
    """Run one layer of decode attention on ``modules`` golden PIM modules.

    ``allocation="dpa"`` (TCP, one module) places the KV cache in chunks handed out by a
    :class:`~pimphony.model.kvcache.DpaAllocator` and runs every pair through its DPA program, expanded
    by the golden :class:`~pimphony.model.hub.DpaDispatcher` for the pair's length and VA2PA mapping.
    """
    if allocation not in ("contiguous", "dpa"):
        raise ValueError(f"allocation must be 'contiguous' or 'dpa', got {allocation!r}")
    q, k, v, lengths = inputs.q, inputs.k, inputs.v, inputs.lengths
    check_shapes(q, k, v, lengths)
    if q.shape[1] != model.heads or k.shape[1] != model.kv_heads or q.shape[2] != model.head_dim:
        raise InputError(f"inputs (H={q.shape[1]}, Hkv={k.shape[1]}, D={q.shape[2]}) do not match {model.name}")
    obuf = org.obuf_entries if obuf_entries is None else obuf_entries
    start = time.perf_counter()
    part = make_partition(partition, org, model.head_dim, modules)
    lowering = AttentionLowering(part, model.group, obuf, block_tokens=block_tokens)
    if allocation == "dpa":
        allocator = DpaAllocator(ChunkLayout(org, model.head_dim), segments=model.kv_heads,
                                 max_requests=len(lengths))
        placements = place_dpa(part, allocator, lengths, model.kv_heads)
        lowering.block_tokens = block_tokens or dpa_block(lowering, placements[0])
    else:
        placements = part.place(lengths, model.kv_heads)
    hubs = [PimHub(org, scale_for(model.head_dim), obuf_entries=obuf, mode=mode) for _ in range(modules)]
    for p in placements:
        part.store(hubs[p.module].channels, p, k[p.request, p.kv_head], v[p.request, p.kv_head])
    stages = {"place": time.perf_counter() - start}
    programs = lowering.lower(placements)
    if allocation == "dpa":
        _expand_dpa(programs[0], placements, lowering, allocator, org, model)
    stages["lower"] = time.perf_counter() - start - stages["place"]
    g = model.group
    q32 = q.astype(np.float32)

    def query(r: int, h: int) -> np.ndarray:
        return q32[r, h * g:(h + 1) * g]

    total = sum(len(prog.steps) for prog in programs)
    done = 0
    out = np.zeros(q.shape, dtype=np.float32)
    for m, prog in enumerate(programs):

        def tick(i: int, n: int, offset: int = done) -> None:
            if progress is not None:
                progress(offset + i, total)

        results = hubs[m].run(prog, query, progress=tick)
        done += len(prog.steps)
        for (r, h), o in results.items():
            out[r, h * g:(h + 1) * g] = o
    seconds = time.perf_counter() - start
    stages["execute"] = seconds - stages["place"] - stages["lower"]
    ref = decode_attention(q.astype(np.float32), k, v, lengths) if check else None
    phase_macs = {phase: np.stack([hb.phase_macs[phase] for hb in hubs]) for phase in ("qk", "sv")}
    return AttentionRun(out=out, reference=ref, commands=np.stack([hb.commands for hb in hubs]),
                        phase_macs=phase_macs, mac_ops=sum(hb.channels.mac_ops for hb in hubs), seconds=seconds,
                        stages=stages)
