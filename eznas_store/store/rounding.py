"""Sum-keeping rounding: float32 values cut to K mantissa bits without drifting their sums.

BitRound rounds every value to its nearest K-bit neighbour. Each error is small (<= 2^-(K+1)
relative), but they are independent, so a sum of n values drifts by ~sqrt(n) of them; a
statistic that cancels (the mean of a gradient, a P - D difference summed over a block) can
lose its sign. ``sum_round`` keeps the same K bits but picks, for each value, the lower or
the upper K-bit neighbour by error diffusion (the carried rounding error of the values
before it, as in Floyd-Steinberg dithering): the running sum along each run stays within one
value's quantum of the exact one. Its cost is a per-value error bound of 2^-K instead of
2^-(K+1). Signs and zeros are kept (both neighbours of a value share its sign; a zero is its
own neighbour), so sign-based programs such as EZNAS-A read exactly what they read losslessly.

Runs are ``RUN`` consecutive values in C order; the runs of an array are processed side by
side (a Python loop over positions, numpy across runs), which keeps it fast without a
compiler. The output is ordinary float32 with zero low bits: numcodecs' BitRound with the
same K leaves it unchanged, so the stored chain still says what precision it holds.
"""

from __future__ import annotations

import numpy as np

from eznas_store.store.plan import parse_codec

#: values per error-diffusion run: a block's tensor spans few runs, so its sum drifts by a
#: few quanta, not sqrt(size) of them
RUN = 1024


def for_codec(values: np.ndarray, codec: str) -> np.ndarray:
    """The rows a tensor array of a ``codec`` store is written with: ``sum_round`` for
    ``sumround:K``; as they are for every other codec (their rounding is in the zarr chain)."""
    kind, arg = parse_codec(codec)
    return sum_round(values, int(arg)) if kind == "sumround" else values


def sum_round(values: np.ndarray, keepbits: int) -> np.ndarray:
    """``values`` (float32) rounded to ``keepbits`` mantissa bits by error diffusion; same shape.
    Non-finite values pass through unchanged and carry no error."""
    x = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    n = x.size
    runs = max(-(-n // RUN), 1)
    padded = np.zeros(runs * RUN, np.float32)
    padded[:n] = x
    cols = padded.reshape(runs, RUN).T.copy()  # column j: position j of every run
    shift = 23 - int(keepbits)
    mask, unit = np.uint32((0xFFFFFFFF << shift) & 0xFFFFFFFF), np.uint32(1 << shift)
    carry = np.zeros(runs, np.float64)
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite values are masked in _step
        for j in range(RUN):
            cols[j], carry = _step(cols[j], carry, mask, unit)
    return cols.T.reshape(-1)[:n].reshape(np.shape(values))


def _step(v: np.ndarray, carry: np.ndarray, mask: np.uint32, unit: np.uint32) -> tuple[np.ndarray, np.ndarray]:
    """One position of every run: the K-bit neighbour of ``v`` nearer to ``v + carry``; new carry."""
    bits = v.view(np.uint32)
    lo = bits & mask  # toward zero
    hi = lo + unit  # away from zero (the next K-bit magnitude)
    lo_f, hi_f = lo.view(np.float32).astype(np.float64), hi.view(np.float32).astype(np.float64)
    target = v.astype(np.float64) + carry
    up = (np.abs(target - hi_f) < np.abs(target - lo_f)) & (lo != bits)
    finite = np.isfinite(v)
    out = np.where(finite, np.where(up, hi, lo), bits).view(np.float32)
    carry = np.where(finite, target - np.where(up, hi_f, lo_f), 0.0)
    return out, carry
