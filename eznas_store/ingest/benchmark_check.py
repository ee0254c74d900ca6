"""A store's tables against the benchmark file they were copied from (``verify``).

``ingest`` copies each network's cell string, benchmark index and every accuracy column
from the benchmark table into the store, and commits them by a checksum. That proves the
tables did not change *in the store*; it cannot prove they still say what the benchmark
says (a table regenerated at the same path, an edited column, a store made from another
version). So ``verify`` reads the benchmark again, where it is readable, and compares row
by row: the same cell at each ``bench_index``, the same value in every column.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from eznas_store.errors import EznasError
from eznas_store.ingest.job import read_table
from eznas_store.sources import get_space
from eznas_store.store import Store

#: mismatching networks named per column before the rest are only counted
SHOWN = 3


@dataclass
class BenchmarkCheck:
    """What comparing with the benchmark found: ``problems`` (disagreements, exit 1) and a
    ``note`` saying what was compared, or why nothing could be (no file: not a failure)."""

    benchmark: str | None
    note: str
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"  tables: {self.note}"] + [f"  tables: {p}" for p in self.problems]


def check_benchmark(store: Store, benchmark: str | None = None) -> BenchmarkCheck:
    """Compare ``store``'s tables with ``benchmark`` (default: the path the plan records).

    A store sampled from the space has no benchmark; a benchmark no longer at its path is
    said, not failed (pass its new path). Values are compared exactly: ingest copies them.
    """
    p = store.plan
    path = benchmark or p.benchmark
    if not path:
        return BenchmarkCheck(None, "no benchmark table (networks sampled from the space): nothing to compare")
    if not os.path.isfile(path):
        return BenchmarkCheck(path, f"benchmark {path} is not readable here, so the tables were checked against "
                                    "the store's own plan only (give its new path with --benchmark)")
    space = get_space(p.space)
    try:
        table = read_table(path, p.dataset, space)
    except EznasError as e:
        return BenchmarkCheck(path, f"benchmark {path}", [f"cannot be read: {e}"])
    rows = {int(i): r for r, i in enumerate(table.index)}
    try:
        archs = [str(a) for a in store.column("arch")]
        index = np.asarray(store.column("bench_index"), dtype=np.int64)
        problems = _cell_problems(table, rows, archs, index, space)
        found = np.array([rows.get(int(i), -1) for i in index], dtype=np.int64)
        for col in p.accuracies:
            problems += _column_problems(store, table, col, found)
    except Exception as e:  # a broken table chunk: verify names it; nothing to compare
        return BenchmarkCheck(path, f"not compared with benchmark {path}: a table cannot be read "
                                    f"({type(e).__name__})")
    if problems:
        return BenchmarkCheck(path, f"compared with benchmark {path}", problems)
    return BenchmarkCheck(path, f"agree with benchmark {path}: {len(index)} networks, cells and "
                                f"{len(p.accuracies)} accuracy column(s) ({', '.join(p.accuracies)})")


def _cell_problems(table, rows: dict[int, int], archs: list[str], index: np.ndarray, space) -> list[str]:
    """Networks whose ``bench_index`` is not in the table, or whose cell there is another."""
    missing = [n for n, i in enumerate(index) if int(i) not in rows]
    other = [n for n, i in enumerate(index)
             if int(i) in rows and space.canonical(table.archs[rows[int(i)]]) != archs[n]]
    out = []
    if missing:
        out.append(f"{len(missing)} network(s) have a bench_index the benchmark lacks "
                   f"(first: network {missing[0]}, index {int(index[missing[0]])})")
    if other:
        n = other[0]
        out.append(f"{len(other)} network(s) hold another cell than the benchmark's row "
                   f"(first: network {n}, index {int(index[n])}: store {archs[n]}, "
                   f"benchmark {table.archs[rows[int(index[n])]]})")
    return out


def _column_problems(store: Store, table, col: str, found: np.ndarray) -> list[str]:
    """The stored column ``col`` differs from the benchmark's at the networks' rows."""
    if col not in table.columns:
        return [f"column {col!r} is not in the benchmark any more"]
    have = np.asarray(store.column(col), dtype=np.float64)
    ok = found >= 0
    want = np.full(have.shape, np.nan)
    want[ok] = np.asarray(table.columns[col], dtype=np.float64)[found[ok]]
    bad = np.flatnonzero(ok & ~np.isclose(have, want, rtol=0, atol=0, equal_nan=True))
    if not bad.size:
        return []
    shown = ", ".join(f"network {n}: store {have[n]:.6g}, benchmark {want[n]:.6g}" for n in bad[:SHOWN])
    return [f"column {col!r} differs at {bad.size} network(s) ({shown}{', ...' if bad.size > SHOWN else ''})"]
