"""What every search space provides: one frozen table of functions per space.

A space is a table entry, not a class hierarchy: the collector, the store, the search
and the Suite-Zero reader call these functions and never a space module directly, so a
new space (DARTS next) is one module under ``sources/spaces/`` plus one registration
line in :data:`eznas_store.sources.spaces.SPACES`.

Architectures travel between stages as canonical strings; only the space parses them.
Capabilities some spaces lack (enumeration, mutation, NASLib keys) are ``None`` there.
A space may have a *skeleton variant*: the same cells on another network (``darts-swap``:
DARTS genotypes on SWAP's stem-less network), found by ``get_space`` and named in a
store's plan like any space, so a store says which network it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, kw_only=True)
class SearchSpace:
    """The functions of one search space, as the stages need them."""

    name: str
    #: text → parsed architecture (raises InvalidArchError naming the bad token)
    parse: Callable[[str], Any]
    #: text → canonical architecture string (raises InvalidArchError)
    canonical: Callable[[str], str]
    #: (arch, *, num_classes, C, N, structure) → untrained torch module
    build: Callable[..., Any]
    #: (arch, *, batch_size, image_size, C, N, structure) → list of predicted blocks
    block_specs: Callable[..., list]
    #: every architecture string of the space, in index order
    all_archs: Callable[[], Iterator[str]]
    #: skeleton defaults (C, N) as the benchmark trained it
    skeleton: dict[str, int] = field(default_factory=dict)
    #: how many architectures the space holds (None: not enumerable)
    n_cells: int | None = None
    #: index in ``all_archs()`` → architecture string
    cell_at: Callable[[int], str] | None = None
    #: architecture string → its index in ``all_archs()``
    index_of: Callable[[str], int] | None = None
    #: rng → a uniformly random architecture string
    random_cell: Callable[[np.random.Generator], str] | None = None
    #: (arch, rng) → a neighbour one mutation away
    mutate: Callable[[str, np.random.Generator], str] | None = None
    #: NASLib/Suite-Zero record key → architecture string, and back
    from_naslib_key: Callable[[str], str] | None = None
    to_naslib_key: Callable[[str], str] | None = None
    #: lower-case fragments of Suite-Zero file names (``zc_nasbench201.json``) of this space
    suitezero_file_tags: tuple[str, ...] = ()
    #: (arch, arch) → how many edges differ: lets a search walk a listed subset of a space
    #: that is not enumerable (a mutation lands on the nearest listed cell)
    distance: Callable[[str, str], int] | None = None
    #: the network ``build`` makes, in words (recorded per proxy in a store's proxy cards)
    network: str = ""
    #: proxies whose paper prescribes another network of these cells → the name of the space
    #: (same cells, another skeleton) they run on, at its default skeleton (DARTS: SWAP on
    #: SWAP's stem-less one-cell network)
    proxy_networks: dict[str, str] = field(default_factory=dict)
    #: named skeletons (``--skeleton``) → the space name that builds the cells on it; {} where the
    #: space has one network only
    skeletons: dict[str, str] = field(default_factory=dict)

    @property
    def searchable(self) -> bool:
        """Whether aging evolution can walk it: enumerable, with random cells and mutation."""
        return None not in (self.n_cells, self.cell_at, self.index_of, self.random_cell, self.mutate)

    @property
    def searchable_over_a_table(self) -> bool:
        """Whether aging evolution can walk the cells of a benchmark table of this space
        (:func:`eznas_store.archsearch.table_space.table_space`), enumerable or not."""
        return self.searchable or None not in (self.random_cell, self.mutate, self.distance)
