"""Whether every row of a benchmark table is a cell of a search space, said in one line.

A table is read without knowing its space (:func:`~eznas_store.sources.tables.read_benchmark`
checks numbers and repeats, not cells). Whoever works on it in a space checks it here first,
so that ``ingest``, ``search`` and every other command refuse the same rows the same way
instead of one refusing and another dropping them::

    >>> cells = table_cells(read_benchmark("darts_1000_cifar10_valid.csv"), get_space("darts"))  # doctest: +SKIP

A row is bad when the space cannot parse its cell (a DARTS genotype with an unknown op, a
node reading a later one, a missing field ...) or when it spells a cell an earlier row
already names (two labels for one network).
"""

from __future__ import annotations

from dataclasses import dataclass

from eznas_store.errors import BenchmarkFormatError, InvalidArchError
from eznas_store.sources.spaces.base import SearchSpace
from eznas_store.sources.tables import BenchmarkTable

__all__ = ["BadRows", "find_bad_rows", "table_cells"]


@dataclass(frozen=True)
class BadRows:
    """How many rows of a table are not cells of a space, and the first of them.

    ``row`` is 0-based (the table's order), ``index`` its ``index`` column value,
    ``reason`` why that row is refused.
    """

    count: int
    total: int
    row: int
    index: int
    reason: str

    def message(self, path: str, space: str) -> str:
        """One line: which table, how many rows, the first one and why."""
        rows = "row is" if self.count == 1 else "rows are"
        return (f"{path}: {self.count} of {self.total} {rows} not valid {space} cells; the first, "
                f"row {self.row + 1} (index {self.index}): {self.reason} (fix or remove them, or "
                f"name the space this table belongs to)")


def _canonical_or_reason(space: SearchSpace, arch: str) -> tuple[str | None, str]:
    try:
        return space.canonical(arch), ""
    except InvalidArchError as exc:
        return None, " ".join(str(exc).split())[:240]


def find_bad_rows(table: BenchmarkTable, space: SearchSpace) -> tuple[list[str], BadRows | None]:
    """The table's cells as ``space`` spells them (row order, good rows only) and its bad rows
    (None when every row is a distinct cell of ``space``)."""
    cells: list[str] = []
    first_row: dict[str, int] = {}
    count, first = 0, None
    for i, arch in enumerate(table.archs):
        cell, reason = _canonical_or_reason(space, arch)
        if cell is not None and cell in first_row:
            cell, reason = None, f"the same cell as row {first_row[cell] + 1}, spelt differently"
        if cell is None:
            count += 1
            first = first or (i, reason)
            continue
        first_row[cell] = i
        cells.append(cell)
    if first is None:
        return cells, None
    row, reason = first
    return cells, BadRows(count, len(table), row, int(table.index[row]), reason)


def table_cells(table: BenchmarkTable, space: SearchSpace) -> list[str]:
    """Every row's cell as ``space`` spells it (row order), or a one-line
    :class:`~eznas_store.errors.BenchmarkFormatError` naming the bad rows' count and the first."""
    cells, bad = find_bad_rows(table, space)
    if bad is not None:
        raise BenchmarkFormatError(bad.message(table.path, space.name))
    return cells
