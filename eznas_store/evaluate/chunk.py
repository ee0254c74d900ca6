"""The in-memory unit the evaluator works on: the blocks of a few networks, grouped by shape.

``read_chunk`` builds a ``Chunk`` from one Zarr chunk of networks (the store gives numpy
rows; here they become torch tensors); ``chunk_from_raw`` builds one from freshly
collected tensors; the evaluator (``evaluate.evaluate_population``) scores a whole
population on it. Blocks of equal shape are stacked along a leading group axis so one
tensor call serves them all. Only ``STORED`` tensors are held; the other terminals are
derived on first use by the rules in ``terminals`` (``terminal_value``), and P terminals
become (P − D) differences, the released EZNAS code's semantics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from eznas_store.store import Store
from eznas_store.terminals import STORED, TERMINALS, terminal_value


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
        self._specs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}

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

    def spec(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        """(per-member shape, dtype) of a terminal without deriving it (its rule runs once
        on meta tensors, which hold no data)."""
        if name in self._cache:
            t = self._cache[name]
            return tuple(t.shape[1:]), t.dtype
        if name not in self._specs:
            if name not in self._derive:
                raise KeyError(name)
            meta = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in self._cache.items()}
            try:
                t = self._derive[name](meta)
            except Exception:  # noqa: BLE001 - a rule meta tensors cannot run: derive it for real
                t = self[name]
            self._specs[name] = (tuple(t.shape[1:]), t.dtype)
        return self._specs[name]

    def nbytes(self) -> int:
        """Bytes of the tensors held (stored and derived so far)."""
        return sum(t.numel() * t.element_size() for t in self._cache.values())

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
    #: what the chunk is, e.g. (store url, lo, hi); the subtree cache keys results by it
    #: (None: not cached)
    key: tuple | None = None

    def nbytes(self) -> int:
        """Bytes of the terminal tensors the chunk holds (derived ones included, once derived)."""
        return sum(g.terminals.nbytes() if hasattr(g.terminals, "nbytes") else
                   sum(t.numel() * t.element_size() for t in g.terminals.values()) for g in self.groups)

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


# ----------------------------------------------------------------------------- building chunks
def chunk_from_raw(networks: Sequence[Sequence[dict[str, torch.Tensor]]], *, structure: str,
                   network_ids: np.ndarray | None = None) -> Chunk:
    """Group the stored (raw) tensors of some networks' blocks by shape into a ``Chunk``.

    The one place where blocks become groups: store reads and storeless scoring (collect →
    evaluate → discard) both go through it, so both give the same numbers.
    """
    groups: dict[tuple, list[tuple[int, int, dict[str, torch.Tensor]]]] = defaultdict(list)
    for j, blocks in enumerate(networks):
        for b, tensors in enumerate(blocks):
            sig = (tuple(tensors["wt"].shape), tuple(tensors["inpact_D"].shape), tuple(tensors["act_D"].shape))
            groups[sig].append((j, b, tensors))
    out = []
    derivations = terminal_derivations(structure)
    for members in groups.values():
        stored = {f"raw:{name}": torch.stack([m[2][name] for m in members]) for name in STORED}
        out.append(BlockGroup(
            network=torch.tensor([m[0] for m in members]),
            block=torch.tensor([m[1] for m in members]),
            terminals=LazyTerminals(stored, derivations),
        ))
    ids = np.arange(len(networks)) if network_ids is None else np.asarray(network_ids)
    return Chunk(network_ids=ids, n_blocks=np.array([len(b) for b in networks]), groups=out)


def terminal_derivations(structure: str) -> dict[str, Any]:
    """Terminal name → function of the raw tensors (keys ``raw:<stored name>``), by the rules
    of ``terminals.terminal_value`` (the same rules ``Store.tensor`` applies in numpy)."""

    def rule(name: str):
        return lambda t: terminal_value(name, lambda s: t[f"raw:{s}"], structure, torch.relu)

    return {name: rule(name) for name in TERMINALS}


def raw_to_terminals(raw: dict[str, torch.Tensor], structure: str) -> dict[str, torch.Tensor]:
    """All 22 terminals of one block from its stored (raw) tensors, for the slow paths."""
    lt = LazyTerminals({f"raw:{k}": v for k, v in raw.items()}, terminal_derivations(structure))
    return {t: lt[t] for t in TERMINALS}


# ----------------------------------------------------------------------------- reading a store
def network_tensors(store: Store, n: int, rows: dict[str, np.ndarray] | None = None, row: int = 0
                    ) -> list[dict[str, torch.Tensor]]:
    """The stored (raw) tensors of network ``n``'s blocks as torch tensors, one dict per block
    (sharing memory with the numpy rows)."""
    return [{name: torch.from_numpy(a) for name, a in block.items()}
            for block in store.network_rows(n, rows, row)]


def read_chunk(store: Store, lo: int, hi: int, *,
               transform: Callable[[str, np.ndarray], np.ndarray] | None = None) -> Chunk:
    """Networks ``lo..hi`` of a store as a ``Chunk``: blocks grouped by shape, all 22 terminals (lazy).

    ``transform(name, rows)``: applied to each stored array's rows first (the round-off check
    nudges every statistic by one float32 ulp to see whether a program's scores follow)."""
    rows = store.read_rows(lo, hi)
    if transform is not None:
        rows = {name: transform(name, v) for name, v in rows.items()}
    networks = [network_tensors(store, n, rows, j) for j, n in enumerate(range(lo, hi))]
    chunk = chunk_from_raw(networks, structure=store.plan.collect.structure, network_ids=np.arange(lo, hi))
    chunk.key = (str(store.url), int(lo), int(hi))
    return chunk


def iter_chunks(store: Store) -> Iterator[Chunk]:
    """Every chunk of a store, in order."""
    for lo, hi in store.chunk_ranges():
        yield read_chunk(store, lo, hi)
