"""Number formats of the PIM datapath and the error bound they imply (docs/design.md §numerics).

Formats: KV cache, queries, GBuf and GPR data are bfloat16; each bank's MAC multiplies bf16 pairs
(exact in fp32) and sums the 16 products with a fixed binary tree in fp32; OBuf entries accumulate in
fp32; RD-OUT rounds to bf16; the EPU works in fp32. The reference is float64 numpy on the same
bf16-rounded inputs, so :func:`attention_tolerance` bounds only what the PIM datapath adds.
"""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np

BF16_UNIT_ROUNDOFF = 2.0 ** -8
"""Round-to-nearest relative error bound of bfloat16: 8 significant bits, u = 2^-8."""
FP32_UNIT_ROUNDOFF = 2.0 ** -24


def to_bf16(x: np.ndarray) -> np.ndarray:
    """Round to bfloat16 (nearest-even) and return the values as float32."""
    return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)


def bf16_bits(x: np.ndarray) -> np.ndarray:
    """Round to bfloat16 and return the raw 16-bit patterns (uint16), as banks store them."""
    if getattr(x, "dtype", None) == ml_dtypes.bfloat16:
        return x.view(np.uint16)
    return np.asarray(x, dtype=np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)


def bits_to_f32(bits: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """bfloat16 bit patterns (uint16) to float32 values, exactly (into ``out`` if given)."""
    if out is None:
        out = np.empty(bits.shape, dtype=np.float32)
    np.left_shift(bits, 16, out=out.view(np.uint32), dtype=np.uint32)
    return out


def tree_sum16(products: np.ndarray) -> np.ndarray:
    """Sum the last axis (16 products) with the MAC unit's binary reduction tree, in fp32.

    The order is fixed (pairs, then pairs of pairs, ...) so the result does not depend on how many
    commands are evaluated together.
    """
    x = products
    while x.shape[-1] > 1:
        x = x[..., 0::2] + x[..., 1::2]
    return x[..., 0]


def attention_tolerance(x_max: np.ndarray, v_max: np.ndarray, dot_abs_max: np.ndarray, head_dim: int,
                        n_tokens: np.ndarray) -> np.ndarray:
    """Worst-case absolute error of one output element of PIM decode attention.

    Parameters are per (request, query head): ``x_max`` = max |q.k| / sqrt(d) over the tokens,
    ``v_max`` = max |v|, ``dot_abs_max`` = max over tokens of sum |q_i k_i| / sqrt(d).

    Derivation (u = 2^-8 for bf16, e = 2^-24 for fp32):

    * a score is the fp32 sum of exact products (error <= d e sum|q k|), rounded to bf16 (u |x|):
      |dx| <= dx_max = u x_max + d e dot_abs_max;
    * a probability is exp(x - m) with both x and the block max m perturbed, rounded to bf16:
      relative error rho <= (exp(2 dx_max) - 1) + u exp(2 dx_max);
    * o = sum p v / sum p with every p off by a factor (1 + rho_t), |rho_t| <= rho, moves o by at
      most rho / (1 - rho) * max_t |v_t - o| <= 2 v_max rho / (1 - rho); the same rounded p feed both
      sums, so the normaliser adds nothing more;
    * RD-OUT rounds each partial sum to bf16: at most u sum p |v| in total, i.e. u v_max after
      normalisation; fp32 accumulation of T terms adds at most T e v_max (a loose bound).
    """
    u, e = BF16_UNIT_ROUNDOFF, FP32_UNIT_ROUNDOFF
    dx = u * x_max + head_dim * e * dot_abs_max
    grow = np.exp(2.0 * dx)
    rho = (grow - 1.0) + u * grow
    return v_max * (2.0 * rho / (1.0 - rho) + u + (n_tokens + 64) * e)


def scale_for(head_dim: int) -> float:
    """Softmax scale 1/sqrt(d_h)."""
    return 1.0 / math.sqrt(head_dim)
