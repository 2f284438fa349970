"""Reference decode attention in float64 numpy (MHA and GQA, per-request lengths).

Shapes: ``q`` (B, H, D); ``k`` and ``v`` (B, Hkv, Tmax, D); ``lengths`` (B,). Query head ``h`` reads
KV head ``h // (H / Hkv)``; request ``b`` attends to its first ``lengths[b]`` tokens; the scale is
1/sqrt(D). Computed one KV head at a time so that memory stays at one head's K and V in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .numerics import attention_tolerance, scale_for


@dataclass
class Reference:
    """Reference output and, per (request, query head), the quantities the error bound needs."""

    out: np.ndarray          # (B, H, D) float64
    x_max: np.ndarray        # (B, H) max |q.k| * scale
    v_max: np.ndarray        # (B, H) max |v|
    dot_abs_max: np.ndarray  # (B, H) max sum |q_i k_i| * scale
    lengths: np.ndarray

    def tolerance(self) -> np.ndarray:
        """(B, H) absolute error bound for every output element of that request and head."""
        d = self.out.shape[-1]
        return attention_tolerance(self.x_max, self.v_max, self.dot_abs_max, d, self.lengths[:, None])


def check_shapes(q: np.ndarray, k: np.ndarray, v: np.ndarray, lengths: np.ndarray) -> None:
    """Raise ValueError unless the four arrays describe one decode attention batch."""
    if q.ndim != 3 or k.ndim != 4 or v.shape != k.shape:
        raise ValueError(f"expected q (B, H, D) and k, v (B, Hkv, T, D); got q {q.shape}, k {k.shape}, v {v.shape}")
    b, h, d = q.shape
    if k.shape[0] != b or k.shape[3] != d:
        raise ValueError(f"q {q.shape} and k {k.shape} disagree on batch or head_dim")
    if h % k.shape[1]:
        raise ValueError(f"query heads ({h}) must be a multiple of KV heads ({k.shape[1]})")
    if lengths.shape != (b,):
        raise ValueError(f"lengths must have shape ({b},); got {lengths.shape}")
    if lengths.min() < 1 or lengths.max() > k.shape[2]:
        raise ValueError(f"lengths must lie in [1, {k.shape[2]}]; got {lengths.min()}..{lengths.max()}")


def decode_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, lengths: np.ndarray) -> Reference:
    """Float64 decode attention of a batch, with per-(request, head) error-bound inputs."""
    lengths = np.asarray(lengths)
    check_shapes(q, k, v, lengths)
    b_count, h_count, d = q.shape
    kv_heads = k.shape[1]
    g = h_count // kv_heads
    scale = scale_for(d)
    out = np.zeros((b_count, h_count, d))
    x_max = np.zeros((b_count, h_count))
    v_max = np.zeros((b_count, h_count))
    dot_abs = np.zeros((b_count, h_count))
    for b in range(b_count):
        t = int(lengths[b])
        for kh in range(kv_heads):
            heads = slice(kh * g, (kh + 1) * g)
            qh = q[b, heads].astype(np.float64)                 # (g, d)
            kk = k[b, kh, :t].astype(np.float64)                # (t, d)
            vv = v[b, kh, :t].astype(np.float64)
            x = (qh @ kk.T) * scale                             # (g, t)
            p = np.exp(x - x.max(axis=1, keepdims=True))
            out[b, heads] = (p @ vv) / p.sum(axis=1, keepdims=True)
            x_max[b, heads] = np.abs(x).max(axis=1)
            v_max[b, heads] = np.abs(vv).max()
            dot_abs[b, heads] = (np.abs(qh) @ np.abs(kk).T).max(axis=1) * scale
    return Reference(out=out, x_max=x_max, v_max=v_max, dot_abs_max=dot_abs, lengths=lengths)
