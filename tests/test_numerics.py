"""Number formats and the error bound derived from them."""

import ml_dtypes
import numpy as np

from pimphony.model.numerics import (
    BF16_UNIT_ROUNDOFF,
    attention_tolerance,
    bf16_bits,
    bits_to_f32,
    to_bf16,
    tree_sum16,
)


def test_bf16_round_trip_and_rounding_error():
    x = np.random.default_rng(0).standard_normal(10000).astype(np.float32)
    y = to_bf16(x)
    assert np.array_equal(bits_to_f32(bf16_bits(x)), y)
    assert np.array_equal(y, x.astype(ml_dtypes.bfloat16).astype(np.float32))
    assert (np.abs(y - x) <= BF16_UNIT_ROUNDOFF * np.abs(x)).all()
    assert (np.abs(y - x) > 0.5 * BF16_UNIT_ROUNDOFF * np.abs(x)).any()    # the bound is attained, not loose


def test_tree_sum_is_a_fixed_pairwise_tree():
    x = np.arange(16, dtype=np.float32)
    x[0], x[1] = 2**24, 1.0                      # (2^24 + 1) rounds to 2^24 in the first level
    level = [np.float32(x[i]) + np.float32(x[i + 1]) for i in range(0, 16, 2)]
    while len(level) > 1:
        level = [np.float32(level[i] + level[i + 1]) for i in range(0, len(level), 2)]
    assert tree_sum16(x) == level[0]
    assert tree_sum16(x) != np.float32(np.sum(x.astype(np.float64)))    # the order is visible
    batch = np.stack([x, x[::-1]])
    assert tree_sum16(batch)[0] == level[0]


def test_outer_axis_reduction_is_sequential():
    """The MAC kernel relies on numpy reducing a non-contiguous axis in order (no pairwise sum)."""
    rng = np.random.default_rng(1)
    chain = (rng.standard_normal((65, 4, 16)) * np.exp(rng.standard_normal((65, 4, 16)) * 6)).astype(np.float32)
    acc = chain[0].copy()
    for i in range(1, 65):
        acc = acc + chain[i]
    assert np.array_equal(np.add.reduce(chain, axis=0), acc)


def test_tolerance_grows_with_score_range_and_values():
    base = attention_tolerance(np.array(4.0), np.array(1.0), np.array(10.0), 128, np.array(1000))
    assert base > 0
    assert attention_tolerance(np.array(8.0), np.array(1.0), np.array(10.0), 128, np.array(1000)) > base
    assert np.isclose(attention_tolerance(np.array(4.0), np.array(3.0), np.array(10.0), 128, np.array(1000)), 3 * base)
    # with exact scores only the probability and partial-sum roundings remain: ~ v (2u + u)
    floor = attention_tolerance(np.array(0.0), np.array(1.0), np.array(0.0), 128, np.array(0))
    assert 3 * BF16_UNIT_ROUNDOFF < floor < 3.1 * BF16_UNIT_ROUNDOFF
