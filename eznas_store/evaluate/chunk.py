"""The in-memory unit the evaluator works on: the blocks of a few networks, grouped by shape.

The store (``store.read_chunk``) builds a ``Chunk`` from one Zarr chunk of networks; the
evaluator (``evaluate.evaluate_population``) scores a whole population on it. Blocks of
equal shape are stacked along a leading group axis so one tensor call serves them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from eznas_store.terminals import TERMINALS


class LazyTerminals(Mapping[str, torch.Tensor]):
    """Terminal name → tensor of shape (G, *shape); derived terminals computed on first use.

    ``stored`` holds tensors read from disk; ``derive`` maps a terminal name to a function
    of this mapping (e.g. ``preact_D = relu(inpact_D)``). Results are cached.
    """

    def __init__(
        self,
        stored: dict[str, torch.Tensor],
        derive: Mapping[str, Callable[[Mapping[str, torch.Tensor]], torch.Tensor]] | None = None,
    ) -> None:
        self._cache: dict[str, torch.Tensor] = dict(stored)
        self._derive = dict(derive or {})

    def __getitem__(self, name: str) -> torch.Tensor:
        if name in self._cache:
            return self._cache[name]
        if name not in self._derive:
            raise KeyError(name)
        value = self._derive[name](self)
        self._cache[name] = value
        return value

    def __iter__(self) -> Iterator[str]:
        return iter([t for t in TERMINALS if t in self._cache or t in self._derive])

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class BlockGroup:
    """Blocks of equal tensor shapes, from one or several networks of a chunk."""

    #: (G,) position, within the chunk, of the network each member belongs to
    network: torch.Tensor
    #: (G,) block index of each member within its network (execution order)
    block: torch.Tensor
    #: terminal name → (G, *shape) tensor
    terminals: Mapping[str, torch.Tensor]

    @property
    def size(self) -> int:
        return int(self.network.shape[0])


@dataclass
class Chunk:
    """The blocks of ``n`` networks, grouped by shape."""

    #: (n,) global network indices in the store
    network_ids: np.ndarray
    #: (n,) number of blocks of each network
    n_blocks: np.ndarray
    groups: list[BlockGroup] = field(default_factory=list)

    @property
    def n_networks(self) -> int:
        return int(len(self.network_ids))

    def network_blocks(self, i: int) -> list[dict[str, torch.Tensor]]:
        """Blocks of the chunk's ``i``-th network in execution order, one dict each.

        Slow path for reference evaluation and tests: every terminal is materialised.
        """
        found: dict[int, dict[str, torch.Tensor]] = {}
        for g in self.groups:
            for m in torch.nonzero(g.network == i).flatten().tolist():
                found[int(g.block[m])] = {t: g.terminals[t][m] for t in TERMINALS}
        return [found[b] for b in sorted(found)]
