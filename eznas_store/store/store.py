"""An open store: its plan, tables, chunking and stored rows as numpy arrays.

``open_store`` checks the group's attributes (format version, ``schemas/store.schema.json``)
before anything is read. ``Store`` knows the layout, not the collector: it decodes a
network's row into one numpy array per stored tensor and block; turning those into
torch terminals is the evaluator's job (``evaluate.chunk``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from eznas_store.config import schema_validator
from eznas_store.errors import CorruptChunkError, StoreError, UnknownNameError
from eznas_store.store import views
from eznas_store.store.chunks import REPAIR, WRITTEN, absent_problem, chunk_indices, chunk_keys, chunk_label
from eznas_store.store.group import normalise_url, open_group, quiet_zarr
from eznas_store.store.layout import ARRAY_FAMILY, FAMILIES, SHAPE_COLUMNS, array_names, block_shapes
from eznas_store.store.plan import FORMAT, FORMAT_VERSION, READABLE_VERSIONS, StorePlan, plan_from_json
from eznas_store.terminals import STORED, TERMINALS, numpy_relu, split, terminal_value


def open_store(url: str, *, storage_options: dict | None = None) -> "Store":
    """Open an eznas store (a local path or any fsspec URL)."""
    url = normalise_url(url)
    try:
        g = open_group(str(url), "r+", storage_options)
    except Exception as e:  # zarr raises several types for "not a group"
        raise StoreError(f"{url} is not an eznas store (no Zarr v3 group there: {type(e).__name__})") from None
    meta = g.attrs.get(FORMAT)
    if not isinstance(meta, dict) or "plan" not in meta:
        raise StoreError(f"{url} is a Zarr group but not an eznas store (no '{FORMAT}' attributes)")
    version = meta.get("format_version")
    if version in READABLE_VERSIONS and not isinstance(version, bool):
        problem = _schema_problem(meta)
        if problem:
            raise StoreError(f"{url} has invalid eznas-store attributes: {problem}")
    else:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION
        shown = version if isinstance(version, int) else repr(version)[:40]  # one line, whatever it holds
        raise StoreError(f"{url} has store format version {shown}, this eznas-store reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))}"
                         + ("; upgrade eznas-store" if newer else "; re-ingest it with this eznas-store"))
    try:
        plan = plan_from_json(meta["plan"])
    except (TypeError, KeyError, ValueError) as e:
        raise StoreError(f"{url} has unreadable eznas-store attributes ({e})") from None
    return Store(url=str(url), group=g, plan=plan, meta=meta, storage_options=storage_options)


def _schema_problem(meta: dict) -> str | None:
    """First violation of ``schemas/store.schema.json`` (path: message), or None."""
    errors = sorted(schema_validator("store").iter_errors(meta), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    e = errors[0]
    plain = re.compile(r"[A-Za-z0-9_-]+")
    where = ".".join(str(x) if plain.fullmatch(str(x)) else repr(x) for x in e.absolute_path) or "(top level)"
    return " ".join(f"{where}: {e.message[:200]}".split())  # one line, whatever keys the attributes hold


@dataclass
class Store:
    """An open store: tables, chunking, stored rows (numpy) and xarray views."""

    url: str
    group: Any
    plan: StorePlan
    meta: dict
    storage_options: dict | None = None
    _blocks: dict[str, np.ndarray] | None = field(default=None, repr=False)
    #: array → its chunk keys, listed once per process (``require_chunks``), and its opened array
    _keys: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)
    _arrays: dict[str, Any] = field(default_factory=dict, repr=False)
    #: whether the tables match their commit marker, once asked (``chunks.tables_intact``)
    tables_intact: bool | None = field(default=None, repr=False)

    # -- tables ---------------------------------------------------------------------------
    @property
    def terminals(self) -> tuple[str, ...]:
        return TERMINALS

    @property
    def format_version(self) -> int:
        return int(self.meta["format_version"])

    @property
    def array_names(self) -> dict[str, str]:
        """``STORED`` name → the Zarr array holding it (``raw_act_P`` for ``act_P`` from format 2;
        ``act_P``, the P − D difference, in a lossy store: ``StorePlan.p_difference``)."""
        return array_names(self.format_version, self.plan.p_difference)

    @property
    def n_networks(self) -> int:
        return len(self.plan.archs)

    @property
    def chunk_networks(self) -> int:
        return int(self.meta["layout"]["chunk_networks"])

    def chunk_ranges(self) -> list[tuple[int, int]]:
        K = self.chunk_networks
        return [(lo, min(lo + K, self.n_networks)) for lo in range(0, self.n_networks, K)]

    def has_array(self, name: str) -> bool:
        return name in self.group

    @property
    def has_statistics(self) -> bool:
        """False for a proxies-only store (no tensor arrays, no block table)."""
        return self.plan.statistics

    def require_statistics(self, what: str = "this") -> None:
        """A one-line ``StoreError`` if the store holds proxies only: ``what`` needs statistics."""
        if not self.plan.statistics:
            raise StoreError(f"store {self.url} holds hand-crafted proxies only (no statistics): {what} needs a "
                             "store ingested with statistics (eznas-store ingest without --no-statistics); its "
                             "proxies are read by compare, score --proxy and evolve --over proxies")

    def column(self, name: str) -> np.ndarray:
        """A whole array of the store (a table column such as ``params``), loaded."""
        self.require_chunks(name)
        return np.asarray(self._array(name)[...])

    def block_table(self) -> dict[str, np.ndarray]:
        self.require_statistics("the block table")
        if self._blocks is None:  # built whole, then published: threads (the writer's) may ask at once
            cols = ["block_network", "block_index", *SHAPE_COLUMNS, *[f"off_{f}" for f in FAMILIES],
                    "n_blocks", "block_start"]
            self._blocks = {c: self.column(c) for c in cols}
        return self._blocks

    def accuracy(self) -> np.ndarray:
        return np.asarray(self.column("accuracy"), dtype=np.float64)

    def require_chunks(self, array: str, lo: int = 0, hi: int | None = None) -> None:
        """A ``CorruptChunkError`` if a chunk of ``array`` holding rows ``lo..hi`` (default all)
        is absent although it held data (``store.chunks``): zarr would read fill values. The
        array's chunk keys are listed once per ``Store``; a key not in that list is asked again."""
        a = self._array(array)
        keys = self._keys.get(array)
        if keys is None:
            keys = self._keys[array] = chunk_keys(a)
        for idx in chunk_indices(a, lo, hi):
            if a.metadata.encode_chunk_key(idx) in keys:
                continue
            why = absent_problem(self, array, idx, reading=True)
            if why:
                repair = (REPAIR if array in WRITTEN else "run 'eznas-store verify' on it; a table cannot be "
                          "rewritten: ingest into a new store")
                raise CorruptChunkError(f"store {self.url}: {chunk_label(a, idx)} is {why}; {repair}")

    def complete(self) -> np.ndarray:
        """Completion flags; a chunk whose flags cannot be read counts as not complete."""
        arr = self.group["complete"]
        out = np.zeros(self.n_networks, dtype=bool)
        for lo, hi in self.chunk_ranges():
            try:
                out[lo:hi] = arr[lo:hi]
            except Exception:
                out[lo:hi] = False
        return out

    def proxy_reasons(self, label_set: str | None = None) -> np.ndarray:
        """Why each proxy value is NaN ('' where not), (network, proxy), under ``label_set``'s head
        (None: the first label set, the store's own head)."""
        reasons = np.asarray(self._read_whole("proxy_reason"), dtype=object)
        return reasons[..., self._label_set_index(label_set)] if self.plan.label_sets else reasons

    def label_sets(self) -> tuple[tuple[str, int, str], ...]:
        """The label sets proxies were computed for: (name, classes of the head, accuracy column)."""
        return self.plan.heads()

    def _label_set_index(self, label_set: str | None) -> int:
        names = [h[0] for h in self.plan.heads()]
        if label_set is None:
            return 0
        if label_set not in names:
            raise UnknownNameError(f"store {self.url} has no label set {label_set!r} (it has: {', '.join(names)})")
        return names.index(label_set)

    def data_labels(self) -> np.ndarray | None:
        return self.column("data_labels") if "data_labels" in self.group else None

    def data_batch(self) -> np.ndarray | None:
        return self.column("data_batch") if "data_batch" in self.group else None

    def _array(self, name: str) -> Any:
        """The Zarr array ``name``, opened once (opening parses its metadata: ~1 ms each time)."""
        a = self._arrays.get(name)
        if a is None:
            a = self._arrays[name] = self.group[name]
        return a

    def _read_whole(self, array: str) -> np.ndarray:
        """A whole array, its chunks checked (``require_chunks``); unreadable: ``CorruptChunkError``."""
        self.require_chunks(array)
        try:
            return np.asarray(self._array(array)[...])
        except Exception as e:
            raise CorruptChunkError(f"store {self.url}: array {array!r} cannot be read ({type(e).__name__}: "
                                    f"{' '.join(str(e).split())[:120]}); {REPAIR}") from None

    def runs(self) -> dict[str, dict]:
        """Ingest run records (not in the consolidated metadata: they are added later)."""
        try:
            with quiet_zarr():
                runs = zarr.open_group(self.group.store, path="runs", mode="r", zarr_format=3,
                                       use_consolidated=False)
        except Exception:
            return {}
        return {name: dict(sub.attrs) for name, sub in runs.groups()}

    # -- xarray views ---------------------------------------------------------------------
    def dataset(self):
        """The whole store as a lazy ``xarray.Dataset`` (dask arrays, nothing read yet)."""
        return views.open_dataset(self.url, self.storage_options)

    @property
    def networks(self):
        """The network table as an ``xarray.Dataset`` (loaded; small)."""
        return views.table(self.dataset(), "network")

    @property
    def blocks(self):
        """The block table as an ``xarray.Dataset`` (loaded)."""
        return views.table(self.dataset(), "block")

    def lazy(self, networks: slice | None = None):
        """Stored tensor rows of a network range as a lazy (dask-backed) ``xarray.Dataset``
        (variables named as the arrays: ``raw_act_P`` holds the raw P pass)."""
        self.require_statistics("reading statistics")
        return views.stored_rows(self.dataset(), networks, list(self.array_names.values()))

    def proxy_table(self, label_set: str | None = None):
        """Hand-crafted proxy values as an ``xarray.DataArray`` (network × proxy) under
        ``label_set``'s head (None: the first, the store's own), NaN where a proxy failed
        (``proxy_reason`` says why); ``None`` for a store ingested without them."""
        values = self.proxy_values()
        if values is None:
            return None
        return values.isel(label_set=self._label_set_index(label_set), drop=True)

    def proxy_values(self):
        """Every proxy value as an ``xarray.DataArray`` (network × proxy × label_set), loaded; a
        store of one label set (every store before label sets) gives it as a dim of length 1
        named for its dataset. ``None`` for a store ingested without proxies."""
        if not self.plan.proxies:
            return None
        return self._loaded("proxy_value", views.proxy_values)

    def suitezero_values(self):
        """NASLib's values joined from Suite-Zero, (network × suitezero_proxy × label_set), or None."""
        if not self.plan.suitezero_proxies:
            return None
        return self._loaded("suitezero_value", views.suitezero_values)

    def _loaded(self, array: str, view):
        """``view(dataset, label sets)`` of ``array``, its chunks checked first."""
        self.require_chunks(array)
        try:
            return view(self.dataset(), [h[0] for h in self.plan.heads()])
        except Exception as e:  # a chunk that does not decode
            raise CorruptChunkError(f"store {self.url}: array {array!r} cannot be read ({type(e).__name__}: "
                                    f"{' '.join(str(e).split())[:120]}); {REPAIR}") from None

    # -- stored rows ----------------------------------------------------------------------
    def read_rows(self, lo: int, hi: int, names: Sequence[str] = STORED) -> dict[str, np.ndarray]:
        """Rows ``lo..hi`` of the stored arrays, keyed by ``STORED`` name (raw: ``act_P`` is
        the P pass itself, rebuilt as ``act_D + (P − D)`` where the store keeps the difference);
        an unreadable chunk is a ``CorruptChunkError``."""
        self.require_statistics("reading statistics")
        names = list(names)
        diff = self.plan.p_difference
        partners = [f"{split(n)[0]}_D" for n in names if diff and n.endswith("_P")]
        out = {name: self._read_array(name, lo, hi) for name in dict.fromkeys(names + partners)}
        for name in names:
            if diff and name.endswith("_P"):
                out[name] = out[name] + out[f"{split(name)[0]}_D"]
        return {name: out[name] for name in names}

    def _read_array(self, name: str, lo: int, hi: int) -> np.ndarray:
        array = self.array_names[name]
        self.require_chunks(array, lo, hi)
        try:
            return np.asarray(self._array(array)[lo:hi])
        except Exception as e:
            raise CorruptChunkError(
                f"store {self.url}: array {array!r}, networks {lo}..{hi - 1} cannot be read "
                f"({type(e).__name__}: {e}); rerun ingest with --redo-broken"
            ) from None

    def tensor_segments(self, lo: int, hi: int, name: str) -> np.ndarray:
        """Where each block's tensor of ``STORED`` array ``name`` lies in rows ``lo..hi``: one
        ``(row - lo, offset, size)`` per distinct tensor (a shared one once), shape (k, 3)."""
        bt, fam = self.block_table(), ARRAY_FAMILY[name]
        seen: set[tuple[int, int]] = set()
        out = []
        for n in range(lo, hi):
            start, nb = int(bt["block_start"][n]), int(bt["n_blocks"][n])
            for b in range(start, start + nb):
                off = int(bt[f"off_{fam}"][b])
                if (n, off) not in seen:
                    seen.add((n, off))
                    out.append((n - lo, off, int(np.prod(self._block_shapes(b)[FAMILIES[fam][1]]))))
        return np.asarray(out, dtype=np.int64).reshape(-1, 3)

    def _block_shapes(self, b: int) -> dict[str, tuple[int, ...]]:
        """The weight, input and output tensor shapes of block ``b`` (row of the block table)."""
        bt = self.block_table()
        cols = (int(bt[c][b]) for c in ("c_in", "c_out", "kernel", "h_in", "h_out"))
        return block_shapes(*cols, self.plan.collect.batch_size)

    def network_rows(self, n: int, rows: dict[str, np.ndarray] | None = None, row: int = 0,
                     names: Sequence[str] = STORED) -> list[dict[str, np.ndarray]]:
        """The stored (raw) tensors of network ``n``'s blocks, one dict per block keyed by
        ``STORED`` name (views of ``rows[name][row]``, which ``read_rows`` gave; read here
        when not given)."""
        if rows is None:
            rows, row = self.read_rows(n, n + 1, names), 0
        bt = self.block_table()
        start, nb = int(bt["block_start"][n]), int(bt["n_blocks"][n])
        out = []
        for b in range(start, start + nb):
            shapes = self._block_shapes(b)
            d = {}
            for name in names:
                fam = ARRAY_FAMILY[name]
                shape = shapes[FAMILIES[fam][1]]
                off = int(bt[f"off_{fam}"][b])
                d[name] = rows[name][row, off:off + int(np.prod(shape))].reshape(shape)
            out.append(d)
        return out

    def tensor(self, network: int, block: int, terminal: str) -> np.ndarray:
        """Terminal ``terminal`` of block ``block`` (position within the network, from 0) of
        network ``network``, as a numpy array of its real shape (e.g. (batch, c_out, h_out,
        w_out) for ``act_D``); derived terminals by the evaluator's rules
        (``terminals.terminal_value``), P terminals as P − D. ``terminal`` may also name a
        stored array (``raw_act_P``: the raw P pass)."""
        if not 0 <= int(network) < self.n_networks:
            raise StoreError(f"store {self.url} has networks 0..{self.n_networks - 1}, not {network}")
        nb = int(self.block_table()["n_blocks"][int(network)])
        if not 0 <= int(block) < nb:
            raise StoreError(f"network {network} of store {self.url} has blocks 0..{nb - 1}, not {block}")
        structure = self.plan.collect.structure
        raw_names = {a: s for s, a in self.array_names.items() if a not in TERMINALS}
        if terminal in raw_names:
            blk = self.network_rows(int(network), names=[raw_names[terminal]])[int(block)]
            return np.array(blk[raw_names[terminal]])
        if terminal not in TERMINALS:
            raise UnknownNameError(f"unknown terminal {terminal!r}; terminals: {', '.join(TERMINALS)}; "
                                   f"raw arrays: {', '.join(raw_names)}")
        need: list[str] = []  # the stored tensors the rule reads, found by a dry run on zeros
        terminal_value(terminal, lambda s: need.append(s) or np.zeros(1, np.float32), structure, numpy_relu)
        blk = self.network_rows(int(network), names=sorted(set(need)))[int(block)]
        return np.array(terminal_value(terminal, blk.__getitem__, structure, numpy_relu))
