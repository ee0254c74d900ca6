"""Sum-keeping rounding: float32 values cut to K mantissa bits without drifting their sums.

BitRound rounds every value to its nearest K-bit neighbour. Each error is small (<= 2^-(K+1)
relative), but they are independent, so a sum of n values drifts by ~sqrt(n) of them; a
statistic that cancels (the mean of a gradient, a P - D difference summed over a block) can
lose its sign. ``sum_round`` keeps the same K bits and rounds to nearest, except that in each
run of ``RUN`` consecutive values (C order) it sends to the *other* K-bit neighbour the fewest
values, those closest to their midpoint, that cancel the run's summed error (the largest
remainder method): a run's sum keeps its value to about one quantum, while every value's
error stays <= 2^-K relative and most stay nearest, so the spread of the errors, which norms,
determinants and spectra feel, stays close to nearest rounding's. A first version diffused
the error from value to value (Floyd-Steinberg): sums were as good, but the spread doubled
and programs built on logdets and norms moved by 0.05-0.12 tau (README "Lossy codecs").
Signs and zeros are kept (both neighbours of a value share its sign; a zero is its own
neighbour), so sign-based programs such as EZNAS-A read exactly what they read losslessly.

Vectorised over runs (numpy sorts each run's candidates), no compiler needed. The output is
ordinary float32 with zero low bits: numcodecs' BitRound with the same K leaves it as it is,
so the stored chain still says what precision it holds.
"""

from __future__ import annotations

import numpy as np

from eznas_store.store.plan import parse_codec

#: values per run whose summed rounding error is cancelled: a block's tensor spans few runs,
#: so its sum drifts by a few quanta, not sqrt(size) of them
RUN = 1024


def for_codec(values: np.ndarray, codec: str) -> np.ndarray:
    """The rows a tensor array of a ``codec`` store is written with: ``sum_round`` for
    ``sumround:K``; as they are for every other codec (their rounding is in the zarr chain)."""
    kind, arg = parse_codec(codec)
    return sum_round(values, int(arg)) if kind == "sumround" else values


def sum_round(values: np.ndarray, keepbits: int) -> np.ndarray:
    """``values`` (float32) rounded to ``keepbits`` mantissa bits: to nearest, except the fewest
    values, those nearest their midpoint, that bring each run's summed error to its smallest;
    same shape. Non-finite values pass through unchanged."""
    x = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    n = x.size
    runs = max(-(-n // RUN), 1)
    padded = np.zeros(runs * RUN, np.float32)
    padded[:n] = x
    rows = padded.reshape(runs, RUN)
    busy = np.any(rows != 0, axis=1)  # runs of zeros (a row's padding) have nothing to round
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite values are masked below
        rows[busy] = _round_runs(rows[busy], int(keepbits))
    return rows.reshape(-1)[:n].reshape(np.shape(values))


def _round_runs(x: np.ndarray, keepbits: int) -> np.ndarray:
    """Rows of ``x`` rounded to K bits: nearest, then the cheapest flips to the other neighbour
    (those nearest their midpoint) that minimise each row's summed error. Float32 throughout
    but the sums: a K-bit neighbour minus the value is exact (Sterbenz)."""
    shift = 23 - keepbits
    bits = x.view(np.uint32)
    unit = np.uint32(1 << shift)
    lo = bits & np.uint32((0xFFFFFFFF << shift) & 0xFFFFFFFF)  # toward zero; lo + unit: away
    rem = bits - lo  # the dropped low bits of the magnitude
    movable = (rem != 0) & np.isfinite(x)
    up = rem > (unit >> np.uint32(1))  # nearest: past the midpoint, away from zero
    near_bits, alt_bits = np.where(up, lo + unit, lo), np.where(up, lo, lo + unit)
    near = near_bits.view(np.float32)
    total = np.where(movable, near - x, np.float32(0)).sum(axis=1, dtype=np.float64, keepdims=True)
    step = np.where(movable, alt_bits.view(np.float32) - near, np.float32(0))  # a flip's change
    useful = movable & (step * total < 0)
    step = np.where(useful, step, np.float32(0))
    # a flip's added error per unit of correction: 0 at the midpoint, 1 at a K-bit value
    cost = np.where(useful, np.abs(1 - 2 * (rem.astype(np.float32) / np.float32(unit))), np.float32(np.inf))
    order = np.argsort(cost, axis=1)
    reach = total + np.cumsum(np.take_along_axis(step, order, axis=1), axis=1, dtype=np.float64)
    flips = np.argmin(np.abs(np.concatenate([total, reach], axis=1)), axis=1)  # per row
    ranked = np.concatenate([np.take_along_axis(cost, order, axis=1),
                             np.full((len(x), 1), np.inf, np.float32)], axis=1)
    flip = useful & (cost < ranked[np.arange(len(x)), flips][:, None])
    return np.where(movable, np.where(flip, alt_bits, near_bits), bits).view(np.float32)
