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

import ctypes
import ctypes.util
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from eznas_store.store import Store
from eznas_store.terminals import FAMILY, STORED, TERMINALS, split, terminal_value


#: bytes of the Python and torch objects around one tensor (PyObject, TensorImpl,
#: StorageImpl, allocator headers): 540-600 measured with psutil over 200k small tensors
TENSOR_OVERHEAD = 640
#: bytes of a chunk's own objects (dataclass, groups, mappings), beside its tensors
CHUNK_OVERHEAD = 16 * 1024


def tensor_bytes(tensors) -> int:
    """Bytes held by ``tensors``: each distinct storage once (a view or an alias costs
    nothing more), plus :data:`TENSOR_OVERHEAD` per tensor object."""
    storages: dict[int, int] = {}
    n = 0
    for t in tensors:
        n += 1
        s = t.untyped_storage()
        storages[s.data_ptr()] = max(storages.get(s.data_ptr(), 0), s.nbytes())
    return sum(storages.values()) + n * TENSOR_OVERHEAD


class LazyTerminals(Mapping[str, torch.Tensor]):
    """Terminal name → tensor of shape (G, *shape); derived terminals computed on first use.

    ``stored`` holds tensors read from disk; ``derive`` maps a terminal name to a function
    of this mapping (e.g. ``preact_D = relu(inpact_D)``). Results are cached.
    """

    def __init__(
        self,
        stored: dict[str, torch.Tensor],
        derive: Mapping[str, Callable[[Mapping[str, torch.Tensor]], torch.Tensor]] | None = None,
        rules: str | None = None,
    ) -> None:
        self._cache: dict[str, torch.Tensor] = dict(stored)
        self._stored = frozenset(stored)
        self._derive = dict(derive or {})
        self._specs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        #: what ``derive`` is (e.g. the collection structure) and the per-member shapes and
        #: dtypes given: together they fix every derived spec (None: rules not named)
        self._rules = None if rules is None else (rules, tuple(sorted(
            (k, tuple(v.shape[1:]), v.dtype) for k, v in stored.items())))

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

    def spec(self, name: str, memo=None) -> tuple[tuple[int, ...], torch.dtype]:
        """(per-member shape, dtype) of a terminal without deriving it: its rule runs on meta
        tensors (no data). ``memo`` (a ``ShapeCache``) keeps the answer for every chunk with
        the same rules and shapes: a meta call costs milliseconds, and a store's chunks
        repeat a few shapes."""
        if name in self._cache:
            t = self._cache[name]
            return tuple(t.shape[1:]), t.dtype
        if name not in self._specs:
            if name not in self._derive:
                raise KeyError(name)
            if memo is None or self._rules is None:
                self._specs[name] = self._derived_spec(name)
            else:
                self._specs[name] = memo.remember(("terminal", name, self._rules), lambda: self._derived_spec(name))
        return self._specs[name]

    def _derived_spec(self, name: str) -> tuple[tuple[int, ...], torch.dtype]:
        meta = {k: torch.empty(v.shape, dtype=v.dtype, device="meta") for k, v in self._cache.items()}
        try:
            t = self._derive[name](meta)
        except Exception:  # noqa: BLE001 - a rule meta tensors cannot run: derive it for real
            t = self[name]
        return tuple(t.shape[1:]), t.dtype

    def nbytes(self) -> int:
        """Bytes of the tensors held (stored and derived so far), each storage once."""
        return tensor_bytes(self._cache.values())

    def tensors(self) -> list[torch.Tensor]:
        """The tensors held (stored and derived so far): what a cache must count."""
        return list(self._cache.values())

    def derived(self) -> list[str]:
        """Names derived so far (everything held beyond what was given)."""
        return [k for k in self._cache if k not in self._stored]

    def forget_derived(self) -> None:
        """Drop the derived tensors (derived again on next use; specs are kept)."""
        self._cache = {k: v for k, v in self._cache.items() if k in self._stored}

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
        """Bytes the chunk really holds: its terminal tensors (derived ones included, once
        derived), each storage once (``wt`` and the D/N terminals are the stored tensors
        themselves), the group index tensors, and an estimate of the objects around them."""
        tensors: list[torch.Tensor] = []
        for g in self.groups:
            held = g.terminals.tensors() if hasattr(g.terminals, "tensors") else list(g.terminals.values())
            tensors += [*held, g.network, g.block]
        return tensor_bytes(tensors) + self.network_ids.nbytes + self.n_blocks.nbytes + CHUNK_OVERHEAD

    def forget_derived(self) -> None:
        """Back to what was read: derived terminals go (a kept chunk's derivations cost a few
        ms per scoring, and would double what it holds)."""
        for g in self.groups:
            if hasattr(g.terminals, "forget_derived"):
                g.terminals.forget_derived()

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
#: members of one group: (position of its network in the chunk, block index in the network)
Members = list[tuple[int, int]]


def chunk_from_raw(networks: Sequence[Sequence[dict[str, torch.Tensor]]], *, structure: str,
                   network_ids: np.ndarray | None = None) -> Chunk:
    """Group the stored (raw) tensors of some networks' blocks by shape into a ``Chunk``.

    The one place where blocks become groups: store reads (``read_chunk``, a shape family at
    a time) and storeless scoring (collect → evaluate → discard) both go through
    ``_group_blocks``/``_stack``/``_chunk``, so both give the same numbers.
    """
    sigs = [[(tuple(t["wt"].shape), tuple(t["inpact_D"].shape), tuple(t["act_D"].shape)) for t in blocks]
            for blocks in networks]
    groups = _group_blocks(sigs)
    held: list[dict[str, torch.Tensor]] = [{} for _ in groups]
    _stack(groups, networks, STORED, held)
    return _chunk(groups, held, structure, network_ids, [len(b) for b in networks])


def _group_blocks(signatures: Sequence[Sequence[tuple]]) -> list[Members]:
    """Blocks of equal shape signature, in order of first appearance (network, then block)."""
    by_sig: dict[tuple, Members] = defaultdict(list)
    for j, sigs in enumerate(signatures):
        for b, sig in enumerate(sigs):
            by_sig[sig].append((j, b))
    return list(by_sig.values())


def _stack(groups: Sequence[Members], networks: Sequence[Sequence[Mapping[str, torch.Tensor]]],
           names: Sequence[str], held: Sequence[dict[str, torch.Tensor]]) -> None:
    """Each group's members of each of ``names``, stacked into ``held`` (``raw:<name>``)."""
    for name in names:
        for into, members in zip(held, groups):
            into[f"raw:{name}"] = torch.stack([networks[j][b][name] for j, b in members])


def _chunk(groups: Sequence[Members], held: Sequence[dict[str, torch.Tensor]], structure: str,
           network_ids: np.ndarray | None, n_blocks: Sequence[int]) -> Chunk:
    derivations = terminal_derivations(structure)
    out = [BlockGroup(network=torch.tensor([j for j, _ in members]), block=torch.tensor([b for _, b in members]),
                      terminals=LazyTerminals(into, derivations, rules=f"terminal_value:{structure}"))
           for into, members in zip(held, groups)]
    ids = np.arange(len(n_blocks)) if network_ids is None else np.asarray(network_ids)
    return Chunk(network_ids=ids, n_blocks=np.asarray(n_blocks), groups=out)


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
#: the stored arrays read together, one shape family at a time (weights, block inputs, block
#: outputs; each P array with its D partner): a read holds one family's decoded rows, not all
READ_FAMILIES: tuple[tuple[str, ...], ...] = tuple(
    tuple(n for n in STORED if FAMILY[split(n)[0]] == family) for family in ("weight", "input", "output"))


def network_tensors(store: Store, n: int, rows: dict[str, np.ndarray] | None = None, row: int = 0,
                    names: Sequence[str] = STORED) -> list[dict[str, torch.Tensor]]:
    """The stored (raw) tensors ``names`` of network ``n``'s blocks as torch tensors, one dict
    per block (sharing memory with the numpy rows)."""
    return [{name: torch.from_numpy(a) for name, a in block.items()}
            for block in store.network_rows(n, rows, row, names)]


def block_signatures(store: Store, lo: int, hi: int) -> list[list[tuple]]:
    """Per network of ``lo..hi``, per block: what its tensor shapes follow from (channels in
    and out, kernel, input and output size), from the block table alone."""
    bt = store.block_table()
    cols = [bt[c] for c in ("c_in", "c_out", "kernel", "h_in", "h_out")]
    starts, counts = bt["block_start"], bt["n_blocks"]
    return [[tuple(int(c[b]) for c in cols) for b in range(int(starts[n]), int(starts[n]) + int(counts[n]))]
            for n in range(lo, hi)]


def read_chunk(store: Store, lo: int, hi: int, *,
               transform: Callable[[str, np.ndarray], np.ndarray] | None = None) -> Chunk:
    """Networks ``lo..hi`` of a store as a ``Chunk``: blocks grouped by shape, all 22 terminals (lazy).

    Read a shape family at a time (:data:`READ_FAMILIES`), each family's rows dropped once
    stacked: the decoded rows (padded to the store's widest network) never all sit beside
    the chunk. ``transform(name, rows)``: applied to each stored array's rows first (the
    round-off check nudges every statistic by one float32 ulp to see whether a program's
    scores follow), one array at a time."""
    sigs = block_signatures(store, lo, hi)
    groups = _group_blocks(sigs)
    held: list[dict[str, torch.Tensor]] = [{} for _ in groups]
    for names in READ_FAMILIES:
        rows = store.read_rows(lo, hi, names)
        if transform is not None:  # the original is freed as its replacement lands
            for name in names:
                rows[name] = transform(name, rows.pop(name))
        networks = [network_tensors(store, n, rows, j, names) for j, n in enumerate(range(lo, hi))]
        del rows
        _stack(groups, networks, names, held)
        del networks
    chunk = _chunk(groups, held, store.plan.collect.structure, np.arange(lo, hi), [len(s) for s in sigs])
    chunk.key = (str(store.url), int(lo), int(hi))
    return chunk


def iter_chunks(store: Store) -> Iterator[Chunk]:
    """Every chunk of a store, in order."""
    for lo, hi in store.chunk_ranges():
        yield read_chunk(store, lo, hi)


#: tensors a chunk holds per block, by shape family: as read (the stored ones), and with
#: every terminal derived (P differences; rcb: also ReLU'd and masked copies) by structure
HELD_PER_FAMILY = {"stored": {"weight": 4, "input": 6, "output": 6},
                   "rcb": {"weight": 5, "input": 14, "output": 8},
                   "cbr": {"weight": 5, "input": 10, "output": 8}}


def decoded_bytes(store: Store, lo: int, hi: int, *, derived: bool = True) -> int:
    """Bytes networks ``lo..hi`` hold once read (``derived``: and every terminal derived),
    from the block table, reading no tensor."""
    bt = store.block_table()
    sel = (bt["block_network"] >= lo) & (bt["block_network"] < hi)
    c_in, c_out, k = (bt[c][sel].astype(np.int64) for c in ("c_in", "c_out", "kernel"))
    h_in, h_out = bt["h_in"][sel].astype(np.int64), bt["h_out"][sel].astype(np.int64)
    batch = store.plan.collect.batch_size
    sizes = {"weight": c_out * c_in * k * k, "input": batch * c_in * h_in**2, "output": batch * c_out * h_out**2}
    kind = store.plan.collect.structure if derived else "stored"
    held = HELD_PER_FAMILY.get(kind, HELD_PER_FAMILY["rcb"])
    elements = sum(int(sizes[f].sum()) * held[f] for f in sizes)
    groups = len(np.unique(np.stack([c_in, c_out, k, h_in, h_out]), axis=1).T) if sel.any() else 0
    per_group = len(STORED) + (len(TERMINALS) if derived else 0) + 2  # names held, network and block index
    indices = 8 * 2 * (int(sel.sum()) + hi - lo)  # network and block of each member; ids, n_blocks
    return 4 * elements + indices + groups * per_group * TENSOR_OVERHEAD + CHUNK_OVERHEAD


# ----------------------------------------------------------------------------- memory back to the system
_LIBC: ctypes.CDLL | None | bool = False
#: glibc's mallopt parameter: most malloc arenas (one per thread by default)
_M_ARENA_MAX = -8


def _libc() -> ctypes.CDLL | None:
    """glibc, if this process runs on it (None elsewhere: then nothing is tuned)."""
    global _LIBC
    if _LIBC is False:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC = lib if hasattr(lib, "malloc_trim") and hasattr(lib, "mallopt") else None
        except OSError:
            _LIBC = None
    return _LIBC  # type: ignore[return-value]


def tune_allocator() -> None:
    """One malloc arena for the process: zarr decodes chunks on its own threads, and with an
    arena per thread the buffers freed there stay with those threads, unused by the next
    chunk's work (measured: 190 MB less peak RSS in a default evolve, no slower). Call it
    before the first store read; idempotent; a no-op off glibc."""
    lib = _libc()
    if lib is not None:
        lib.mallopt(_M_ARENA_MAX, 1)


def release_freed_memory() -> None:
    """Give memory the allocator holds free back to the system (``malloc_trim``), for when a
    phase with big buffers ends (a run's last scoring). Not after every chunk: the next
    chunk's buffers would then fault in fresh pages (measured +0.2 s per chunk read), while
    with one arena the freed memory is reused for them anyway."""
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
