"""Sum-keeping rounding: float32 values cut to K mantissa bits without drifting their sums.

BitRound rounds every value to its nearest K-bit neighbour. Each error is small (<= 2^-(K+1)
relative), but they are independent, so a sum of n values drifts by ~sqrt(n) of them; a
statistic that cancels (the mean of a gradient, a P - D difference summed over a block) can
lose its sign. ``sum_round`` keeps the same K bits and rounds to nearest, except that in each
run (a block's tensor, ``sum_round_segments``; else ``RUN`` consecutive values) it sends a few
values to their *other* K-bit neighbour so that the run's summed error is paid off: a flip
moves a value by its quantum, a power of two set by its binade, so the debt is paid like a
number in binary, largest quantum first, each binade's values nearest their midpoint first.
A block's sum then keeps its value to ~1e-7 of nearest rounding's drift (tests/test_rounding.py),
every value's error stays <= 2^-K relative, and well under 1 % of the values leave their
nearest neighbour, so the spread of the errors, which norms, determinants and spectra feel,
is nearest rounding's. Two first versions were measured and dropped (docs/results.md "Lossy codecs"):
error diffusion from value to value (Floyd-Steinberg) kept sums but doubled the spread, and
moved logdet and norm programs by 0.05-0.12 tau; flipping the values nearest their midpoint
regardless of binade left a residue of the largest quantum in each run.
Signs and zeros are kept (both neighbours of a value share its sign; a zero is its own
neighbour), so sign-based programs such as EZNAS-A read exactly what they read losslessly.

Vectorised over runs (numpy sorts each run's candidates), no compiler needed. The output is
ordinary float32 with zero low bits: numcodecs' BitRound with the same K leaves it as it is,
so the stored chain still says what precision it holds.
"""

from __future__ import annotations

import numpy as np

from eznas_store.store.plan import parse_codec
from eznas_store.store.store import Store

#: values per run whose summed rounding error is cancelled: a block's tensor spans few runs,
#: so its sum drifts by a few quanta, not sqrt(size) of them
RUN = 1024


def for_codec(rows: np.ndarray, store: Store, lo: int, name: str) -> np.ndarray:
    """The rows ``lo..`` (networks x row width) of ``STORED`` array ``name`` as ``store`` writes
    them: for ``sumround:K`` each block's tensor rounded as one run (``sum_round_segments``);
    as they are for every other codec (their rounding is in the zarr chain)."""
    kind, arg = parse_codec(store.plan.codec)
    if kind != "sumround":
        return rows
    return sum_round_segments(rows, store.tensor_segments(lo, lo + len(rows), name), int(arg))


def read_back_problem(codec: str, written: np.ndarray, read: np.ndarray) -> str | None:
    """Why rows read back from a chunk just written are not what the codec gives for the
    ``written`` ones, or None: lossless and ``sumround`` (rounded before the chain) read back
    bit-equal, ``bitround:K`` within 2^-K relative, ``zfp:TOL`` within TOL (transcode checks
    every chunk it writes before the store is called complete)."""
    kind, arg = parse_codec(codec)
    w, r = np.asarray(written, dtype=np.float64), np.asarray(read, dtype=np.float64)
    if w.shape != r.shape:
        return f"shape {r.shape}, written {w.shape}"
    if kind in ("lossless", "sumround"):
        a, b = (np.ascontiguousarray(x, dtype=np.float32).view(np.uint32) for x in (written, read))
        bad = a != b
    else:  # a subnormal's quantum is that of the smallest normal binade
        tiny = float(np.finfo(np.float32).tiny)
        bound = float(arg) if kind == "zfp" else 2.0 ** -int(arg) * np.maximum(np.abs(w), tiny)
        bad = ~(np.abs(r - w) <= bound)
    return f"{int(bad.sum())} value(s) differ from those written" if bad.any() else None


def sum_round_segments(rows: np.ndarray, segments: np.ndarray, keepbits: int) -> np.ndarray:
    """``rows`` with each segment ``(row, offset, size)`` rounded as one run (its summed error
    cancelled as a whole: a block's tensor keeps its sum, not only each ``RUN`` of it); any
    non-zero value outside every segment by ``sum_round`` (a row's padding is zeros, which need
    none). Segments of one size are rounded together, so the loop is over the few distinct
    tensor sizes of a search space."""
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    out, covered = rows.copy(), np.zeros(rows.shape, dtype=bool)
    for size in np.unique(segments[:, 2]):
        seg = segments[segments[:, 2] == size]
        r, cols = seg[:, :1], seg[:, 1:2] + np.arange(int(size))
        with np.errstate(invalid="ignore", over="ignore"):
            out[r, cols] = _round_runs(rows[r, cols], int(keepbits))
        covered[r, cols] = True
    loose = ~covered & (rows != 0)
    if loose.any():
        out[loose] = sum_round(rows[loose], keepbits)
    return out


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
    """Rows of ``x`` rounded to K bits: nearest, then flips to the other neighbour that cancel
    each row's summed error. A flip moves a value by its K-bit quantum, a power of two fixed
    by its binade, so the error is paid off like a number in binary: from the largest quantum
    down, as many flips of that binade as the remainder holds, the values nearest their
    midpoint first (the least added error). Float32 throughout but the sums: a K-bit neighbour
    minus the value is exact (Sterbenz)."""
    shift = 23 - keepbits
    bits = x.view(np.uint32)
    unit = np.uint32(1 << shift)
    lo = bits & np.uint32((0xFFFFFFFF << shift) & 0xFFFFFFFF)  # toward zero; lo + unit: away
    rem = bits - lo  # the dropped low bits of the magnitude
    movable = (rem != 0) & np.isfinite(x)
    up = rem > (unit >> np.uint32(1))  # nearest: past the midpoint, away from zero
    near_bits, alt_bits = np.where(up, lo + unit, lo), np.where(up, lo, lo + unit)
    near = near_bits.view(np.float32)
    total = np.where(movable, near - x, np.float32(0)).sum(axis=1, dtype=np.float64)
    step = np.where(movable, alt_bits.view(np.float32) - near, np.float32(0))  # a flip's change
    useful = movable & (step * total[:, None] < 0)
    binade = np.where(useful, (lo >> np.uint32(23)) & np.uint32(0xFF), 0).astype(np.int64)  # 0: not a candidate
    # a flip's added error per unit of correction: 0 at the midpoint, 1 at a K-bit value
    cost = np.abs(1 - 2 * (rem.astype(np.float32) / np.float32(unit)))
    order = np.argsort(np.where(useful, (256 - binade) + cost, np.float32(1e9)), axis=1)
    rows = np.arange(len(x))[:, None]
    count = np.bincount((rows * 256 + binade).ravel(), minlength=len(x) * 256).reshape(len(x), 256)
    count[:, 0] = 0
    start = np.cumsum(count[:, ::-1], axis=1)[:, ::-1] - count  # candidates in larger binades
    take = _flips_per_binade(np.abs(total), count, keepbits)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
    flip = useful & (rank - start[rows, binade] < take[rows, binade])
    return np.where(movable, np.where(flip, alt_bits, near_bits), bits).view(np.float32)


def _flips_per_binade(debt: np.ndarray, count: np.ndarray, keepbits: int) -> np.ndarray:
    """How many flips each binade (biased float32 exponent, largest first) pays of each row's
    ``debt``: as many whole quanta as the debt still holds (never more: the flips all go one
    way), at most ``count`` of them."""
    take = np.zeros_like(count)
    debt = debt.copy()
    for b in np.flatnonzero(count.any(axis=0))[::-1]:
        quantum = np.ldexp(1.0, int(max(b, 1)) - 127 - keepbits)
        take[:, b] = np.minimum(np.floor(debt / quantum), count[:, b])
        debt = debt - take[:, b] * quantum
    return take
