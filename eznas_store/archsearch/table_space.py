"""A search space restricted to the cells of a benchmark table, for spaces that cannot be enumerated.

A search is judged by the table's true accuracy of the cell it chooses, so over a space
the table covers only in part (DARTS: 1,000 listed genotypes of ~10^11) a cell outside
the table could never be judged. :func:`table_space` therefore makes the search walk the
table's cells only:

- a random cell is a uniformly random table cell;
- a mutation is the parent's nearest table cell: the fewest edges changed
  (``SearchSpace.distance``; DARTS counts differing ``(op, input)`` pairs of both cells),
  drawn uniformly among ties, the parent itself excluded. A one-edge neighbour is taken
  whenever the table holds one; a free mutation almost never lands in a sparse table, so
  re-drawing until it does would rarely finish;
- cell ``i`` is table row ``i`` (its network seed follows its row), and the search stops
  when every table cell has been scored.

An enumerable space (NB201) is returned unchanged: its search walks the whole space.

Example
-------
>>> space = table_space(get_space("darts"), read_benchmark("darts_1000_cifar10_valid.csv"))  # doctest: +SKIP
>>> space.n_cells  # doctest: +SKIP
1000
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from eznas_store.errors import ConfigError, InvalidArchError
from eznas_store.sources import SearchSpace
from eznas_store.sources import table_cells
from eznas_store.sources import BenchmarkTable

__all__ = ["TableWalk", "table_space"]


class TableWalk:
    """The table's cells (canonical, in row order) with random draws and nearest-cell mutation."""

    def __init__(self, space: SearchSpace, cells: Sequence[str]) -> None:
        if space.distance is None:
            raise ConfigError(f"space {space.name!r} has no distance between cells, so a search cannot "
                              "walk a table of it")
        if len(cells) < 2:
            raise ConfigError(f"a search over the table's {space.name} cells needs at least 2 of them, "
                              f"got {len(cells)}")
        self.space = space
        self.cells = tuple(cells)
        self.rows = {c: i for i, c in enumerate(self.cells)}
        self._parsed = [space.parse(c) for c in self.cells]
        self._nearest: dict[str, list[int]] = {}

    def random_cell(self, rng: np.random.Generator) -> str:
        return self.cells[int(rng.integers(len(self.cells)))]

    def nearest(self, cell: str) -> list[int]:
        """Rows of the table cells closest to ``cell`` (``cell`` itself excluded), cached."""
        hit = self._nearest.get(cell)
        if hit is None:
            parsed = self.space.parse(cell)
            d = np.array([self.space.distance(parsed, other) for other in self._parsed], dtype=np.int64)
            if cell in self.rows:
                d[self.rows[cell]] = np.iinfo(np.int64).max
            hit = self._nearest[cell] = np.flatnonzero(d == d.min()).tolist()
        return hit

    def mutate(self, cell: str, rng: np.random.Generator) -> str:
        rows = self.nearest(cell)
        return self.cells[rows[int(rng.integers(len(rows)))]]

    def cell_at(self, i: int) -> str:
        return self.cells[int(i)]

    def index_of(self, cell: str) -> int:
        try:
            return self.rows[cell]
        except KeyError:
            raise InvalidArchError(f"{cell} is not a cell of the benchmark table this search walks") from None


def table_space(space: SearchSpace, table: BenchmarkTable) -> SearchSpace:
    """``space`` if a search can walk all of it, else ``space`` restricted to ``table``'s cells;
    either way every row of ``table`` must be a distinct cell of ``space``: a table of another
    space, or with a damaged row, is refused in one line naming how many rows are bad and the
    first (:func:`~eznas_store.sources.table_rows.table_cells`, as ingest refuses them)."""
    if not space.searchable_over_a_table:
        raise ConfigError(f"space {space.name!r} has no random cells, mutation and distance to search with")
    cells = table_cells(table, space)
    if space.searchable:
        return space
    walk = TableWalk(space, cells)
    return dataclasses.replace(space, n_cells=len(walk.cells), cell_at=walk.cell_at, index_of=walk.index_of,
                               random_cell=walk.random_cell, mutate=walk.mutate)
