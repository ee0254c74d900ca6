"""Search spaces by name: each parses architecture strings, builds networks and predicts blocks.

A space is a table entry, not a class hierarchy: ``SPACES["nb201"]`` gives the functions
the collector and the store need. New spaces register here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from eznas_store.errors import UnknownNameError
from eznas_store.sources.spaces import nb201


@dataclass(frozen=True)
class Space:
    name: str
    #: text → canonical architecture string (raises InvalidArchError)
    canonical: Callable[[str], str]
    #: (arch, *, num_classes, C, N, structure) → torch module
    build: Callable[..., Any]
    #: (arch, *, batch_size, image_size, C, N, structure) → list[BlockSpec]
    block_specs: Callable[..., list]
    all_archs: Callable[[], Iterator[str]]
    #: skeleton defaults (C, N) as the benchmark trained it
    skeleton: dict[str, int]


SPACES: dict[str, Space] = {
    "nb201": Space(
        name="nb201",
        canonical=lambda text: str(nb201.parse_cell(text)),
        build=nb201.build,
        block_specs=nb201.block_specs,
        all_archs=nb201.all_cells,
        skeleton={"C": 16, "N": 5},
    ),
}


def get_space(name: str) -> Space:
    try:
        return SPACES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown search space {name!r} (known: {', '.join(sorted(SPACES))})"
        ) from None
