"""``store.rounding.sum_round``: K mantissa bits, nearest but for the fewest flips that keep each
run's sum; property tests over random float32 arrays with many octaves of magnitude."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from numcodecs import BitRound

from eznas_store.store.rounding import RUN, sum_round, sum_round_segments


def _nearest(x: np.ndarray, k: int) -> np.ndarray:
    return BitRound(keepbits=k).decode(BitRound(keepbits=k).encode(x.copy())).reshape(x.shape)


def _values(seed: int, n: int) -> np.ndarray:
    """Signed values spread over ~12 octaves, a tenth of them zero (gradients look like this)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * np.exp2(rng.integers(-12, 1, n))
    x[rng.random(n) < 0.1] = 0
    return x.astype(np.float32)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), n=st.integers(1, 5 * RUN), k=st.integers(1, 10))
def test_each_value_goes_to_one_of_its_two_k_bit_neighbours(seed, n, k):
    x = _values(seed, n)
    y = sum_round(x, k)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.array_equal(np.sign(y), np.sign(x))  # signs and zeros kept
    assert np.all(np.abs(y.astype(np.float64) - x) <= 2.0 ** -k * np.abs(x.astype(np.float64)))
    assert np.array_equal(_nearest(y, k), y)  # K bits: BitRound leaves it as it is
    low = (y.view(np.uint32) & np.uint32((1 << (23 - k)) - 1))
    assert not low.any()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), runs=st.integers(1, 6), k=st.integers(1, 8))
def test_no_run_sums_worse_than_nearest_rounding(seed, runs, k):
    x = _values(seed, runs * RUN)
    exact = x.astype(np.float64).reshape(runs, RUN).sum(axis=1)
    mine = np.abs(sum_round(x, k).astype(np.float64).reshape(runs, RUN).sum(axis=1) - exact)
    near = np.abs(_nearest(x, k).astype(np.float64).reshape(runs, RUN).sum(axis=1) - exact)
    assert np.all(mine <= near + 1e-12 * np.abs(exact).max())


def test_long_sums_drift_far_less_than_nearest_and_errors_spread_alike():
    x = _values(0, 200 * RUN)
    for k in (2, 3):
        y, z = sum_round(x, k).astype(np.float64), _nearest(x, k).astype(np.float64)
        ref = x.astype(np.float64)
        assert abs(y.sum() - ref.sum()) < 0.01 * abs(z.sum() - ref.sum())
        nz = ref != 0
        rms = [np.sqrt(np.mean(((v - ref)[nz] / ref[nz]) ** 2)) for v in (y, z)]
        assert rms[0] < 1.05 * rms[1]  # the spread norms and spectra feel stays nearest's
        assert np.mean(y != z) < 0.05  # few values leave their nearest neighbour


def test_non_finite_values_pass_through():
    x = _values(1, 3000)
    x[[3, 10, 2000]] = [np.inf, np.nan, -np.inf]
    y = sum_round(x, 3)
    assert np.isposinf(y[3]) and np.isnan(y[10]) and np.isneginf(y[2000])
    assert np.all(np.isfinite(np.delete(y, [3, 10, 2000])))


def test_a_segment_keeps_its_sum_as_a_whole():
    """Block tensors of a row, each rounded as one run: its summed error is the smallest the
    flips reach, far under nearest rounding's and under 1024-value runs' (which do not carry)."""
    x = _values(2, 3 * 40_000).reshape(3, 40_000)
    x[:, 37_000:] = 0  # padding
    segments = np.array([[r, off, size] for r in range(3) for off, size in ((0, 16_384), (16_384, 16_384),
                                                                            (32_768, 4_096))])
    y = sum_round_segments(x, segments, 2)
    near = _nearest(x, 2)
    assert np.all(y[:, 37_000:] == 0) and np.array_equal(np.sign(y), np.sign(x))
    for r, off, size in segments:
        exact = x[r, off:off + size].astype(np.float64).sum()
        mine = abs(y[r, off:off + size].astype(np.float64).sum() - exact)
        runs = abs(sum_round(x[r, off:off + size], 2).astype(np.float64).sum() - exact)
        theirs = abs(near[r, off:off + size].astype(np.float64).sum() - exact)
        assert mine <= runs + 1e-12 and mine < 1e-3 * theirs
