"""The statistics store: one Zarr v3 group that plain xarray can open.

Layout (all arrays carry ``dimension_names``, so ``xarray.open_zarr(url)`` labels them):

* network table, dim ``network``: ``arch``, ``bench_index``, ``accuracy`` (the fitness
  target) and every accuracy column of the benchmark table, ``n_blocks``,
  ``block_start``; written at creation. Per-network results written by ingest, chunked
  like the tensors: ``complete``, ``params``, ``flops``, ``seconds``.
* block table, dim ``block``: ``block_network``, ``block_index``, shapes (``c_in``,
  ``c_out``, ``kernel``, ``stride``, ``h_in``, ``h_out``) and, per stored family, the
  element offset of the block's tensor inside its network's row (``off_*``).
* tensors, dims ``(network, <family>_elem)``: each network's tensors of one kind,
  flattened and concatenated into one row, padded with zeros to the widest network.
  A chunk holds ``chunk_networks`` whole rows, so one chunk read gives whole networks and
  there is one file per chunk per kind, not per network or block.

What is stored is the smallest exact set (``collect.STORED``); the rest of the 22
terminals are derived on read (``read_chunk``): ``preact``/``inpactgrad`` from
``inpact``/``preactgrad``, and P terminals as (P − D) differences, the released EZNAS
code's semantics. Tensors that a NB201 cell holds twice are stored once: edges out of
one node share their input (``off_inpact`` repeats), edges into one node share their
output gradient (``off_actgrad`` repeats).

Ingest writes a chunk's tensors first and its ``complete`` flags last, each chunk by one
writer, so a killed job leaves at worst a chunk without flags, which is redone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import pathlib
import platform
import re
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from zarr.errors import ContainsArrayError, ContainsGroupError

from eznas_store import __version__
from eznas_store.evaluate.chunk import BlockGroup, Chunk, LazyTerminals
from eznas_store.collect.statistics import STORED, STORED_KINDS, CollectConfig, NetworkStats
from eznas_store.config import schema_validator
from eznas_store.errors import CorruptChunkError, StoreError
from eznas_store.sources.spaces import get_space
from eznas_store.terminals import INPUTS, TERMINALS

FORMAT = "eznas-store"
FORMAT_VERSION = 1

#: stored family → (dim name, which BlockSpec shape, dedup key attribute or None)
FAMILIES: dict[str, tuple[str, str, str | None]] = {
    "wt": ("wt_elem", "weight", None),
    "inpact": ("inpact_elem", "input", "input_key"),
    "preactgrad": ("preactgrad_elem", "input", None),
    "act": ("act_elem", "output", None),
    "actgrad": ("actgrad_elem", "output", "output_key"),
}
#: stored array name → family
ARRAY_FAMILY: dict[str, str] = {"wt": "wt", **{
    f"{k}_{x}": ("wt" if k == "wtgrad" else k) for k in STORED_KINDS for x in INPUTS}}
assert set(ARRAY_FAMILY) == set(STORED)

SHAPE_COLUMNS = ("c_in", "c_out", "kernel", "stride", "h_in", "h_out")
#: target bytes of one chunk across all stored arrays, uncompressed (bounds reader RAM)
CHUNK_TARGET_BYTES = 256 * 2**20


@dataclass(frozen=True, kw_only=True)
class StorePlan:
    """Everything that fixes a store's layout; equal plans may share a store."""

    space: str
    dataset: str
    archs: tuple[str, ...]
    bench_index: tuple[int, ...]
    accuracy_column: str
    accuracies: dict[str, tuple[float, ...]]
    collect: CollectConfig
    image_size: int
    num_classes: int
    C: int
    N: int
    benchmark: str = ""
    data_root: str = ""
    batch_indices: tuple[int, ...] = ()
    chunk_networks: int = 0  # 0: choose from CHUNK_TARGET_BYTES
    #: hand-crafted proxies computed during ingest on the same networks, batch and init
    proxies: tuple[str, ...] = ()
    #: 0: proxies used the statistics batch; else their own seeded batch of this size
    proxy_batch_size: int = 0

    def identity(self) -> dict[str, Any]:
        """The fields two shards must agree on (paths may differ between nodes)."""
        d = plan_to_json(self)
        for k in ("benchmark", "data_root"):
            d.pop(k)
        return d


def plan_to_json(plan: StorePlan) -> dict[str, Any]:
    d = dataclasses.asdict(plan)
    d["archs"] = list(plan.archs)
    d["bench_index"] = list(plan.bench_index)
    d["accuracies"] = {k: list(v) for k, v in plan.accuracies.items()}
    d["batch_indices"] = list(plan.batch_indices)
    d["proxies"] = list(plan.proxies)
    return d


def plan_from_json(d: dict[str, Any]) -> StorePlan:
    d = dict(d)
    d["collect"] = CollectConfig(**d["collect"])
    d["archs"] = tuple(d["archs"])
    d["bench_index"] = tuple(int(i) for i in d["bench_index"])
    d["accuracies"] = {k: tuple(float(x) for x in v) for k, v in d["accuracies"].items()}
    d["batch_indices"] = tuple(d.get("batch_indices", ()))
    d["proxies"] = tuple(d.get("proxies", ()))
    d.setdefault("proxy_batch_size", 0)
    return StorePlan(**d)


# ----------------------------------------------------------------------------- layout
@dataclass
class Layout:
    """Block table and row widths computed from the plan, before anything runs."""

    n_blocks: np.ndarray
    block_start: np.ndarray
    blocks: dict[str, np.ndarray]  # block-table columns
    widths: dict[str, int]  # family → row width (elements)
    chunk_networks: int


def compute_layout(plan: StorePlan) -> Layout:
    space = get_space(plan.space)
    B = plan.collect.batch_size
    cols: dict[str, list[int]] = defaultdict(list)
    n_blocks = np.zeros(len(plan.archs), dtype=np.int32)
    widths = dict.fromkeys(FAMILIES, 0)
    for n, arch in enumerate(plan.archs):
        specs = space.block_specs(arch, batch_size=B, image_size=plan.image_size, C=plan.C, N=plan.N,
                                  structure=plan.collect.structure)
        n_blocks[n] = len(specs)
        fill = dict.fromkeys(FAMILIES, 0)
        seen: dict[str, dict[str, int]] = {f: {} for f in FAMILIES}
        for b, s in enumerate(specs):
            cols["block_network"].append(n)
            cols["block_index"].append(b)
            for c in SHAPE_COLUMNS:
                cols[c].append(getattr(s, c))
            for fam, (_, shape_kind, key_attr) in FAMILIES.items():
                shape = {"weight": s.weight_shape(), "input": s.input_shape(B),
                         "output": s.output_shape(B)}[shape_kind]
                size = int(np.prod(shape))
                key = getattr(s, key_attr) if key_attr else None
                if key is not None and key in seen[fam]:
                    off = seen[fam][key]
                else:
                    off = fill[fam]
                    fill[fam] += size
                    if key is not None:
                        seen[fam][key] = off
                cols[f"off_{fam}"].append(off)
        for fam in FAMILIES:
            widths[fam] = max(widths[fam], fill[fam])
    block_start = np.concatenate([[0], np.cumsum(n_blocks)[:-1]]).astype(np.int64)
    blocks = {k: np.asarray(v, dtype=np.int64 if k.startswith("off_") else np.int32) for k, v in cols.items()}
    row_bytes = 4 * sum(widths[ARRAY_FAMILY[a]] for a in STORED)
    k = plan.chunk_networks or int(np.clip(CHUNK_TARGET_BYTES // max(row_bytes, 1), 1, 64))
    return Layout(n_blocks, block_start, blocks, widths, min(k, max(len(plan.archs), 1)))


# ----------------------------------------------------------------------------- open/create
def _zarr():
    import zarr

    return zarr


def _compressor():
    from zarr.codecs import BloscCodec

    return [BloscCodec(cname="zstd", clevel=3, shuffle="shuffle", typesize=4)]


def normalise_url(url: str) -> str:
    """``file://`` URLs become plain paths (zarr's LocalStore creates folders; fsspec's
    local filesystem does not); every other fsspec URL is passed through."""
    url = str(url)
    return url[len("file://"):] if url.startswith("file://") else url


def _open_group(url: str, mode: str, storage_options: dict | None = None):
    zarr = _zarr()
    url = normalise_url(url)
    kw: dict[str, Any] = {"mode": mode, "zarr_format": 3}
    if storage_options:
        kw["storage_options"] = storage_options
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return zarr.open_group(url, **kw)


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "eznas-store": __version__}
    for p in ("torch", "zarr", "numpy", "xarray", "dask", "numcodecs"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[p] = md.version(p)
    return out


def store_exists(url: str, storage_options: dict | None = None) -> bool:
    try:
        g = _open_group(url, "r", storage_options)
    except Exception:
        return False
    return FORMAT in g.attrs


def create_or_open(url: str, plan: StorePlan, *, data_batch: np.ndarray | None = None,
                   data_labels: np.ndarray | None = None, storage_options: dict | None = None) -> "Store":
    """Create the store for ``plan``, or open it if it already holds the same plan.

    Shards of one job call this concurrently; they all write identical metadata, so a
    race is benign. A store made with a different plan is refused with the difference.
    """
    url = normalise_url(url)
    if store_exists(url, storage_options):
        store = open_store(url, storage_options=storage_options)
        mine, theirs = plan.identity(), store.plan.identity()
        if mine != theirs:
            diff = sorted(k for k in mine if mine[k] != theirs.get(k))
            raise StoreError(
                f"store {url} was made with a different configuration ({', '.join(diff)} differ); "
                "use another --store path or the same options"
            )
        return store
    layout = compute_layout(plan)
    try:
        g = _open_group(url, "a", storage_options)
    except ContainsGroupError:
        # another shard created the root group between our look and our create: join it
        g = _open_group(url, "r+", storage_options)
    n = len(plan.archs)
    K = layout.chunk_networks

    def arr(name, data=None, *, shape=None, dtype=None, chunks=None, dims=("network",), fill=0):
        shape = shape if shape is not None else data.shape
        dtype = dtype or data.dtype
        chunks = chunks or shape
        kw: dict[str, Any] = dict(shape=shape, chunks=chunks, dtype=dtype, dimension_names=dims,
                                  overwrite=False)
        if dtype is not str:
            kw["fill_value"] = fill
            kw["compressors"] = _compressor()
        try:
            a = g.create_array(name, **kw)
        except ContainsArrayError:
            # another shard of the same job created it a moment ago: never overwrite (that
            # would drop chunks it may already have written); a leftover of another plan is refused
            a = g[name]
            if tuple(a.shape) != tuple(shape) or tuple(a.chunks) != tuple(chunks):
                raise StoreError(
                    f"{url} holds a partial store of another configuration (array {name!r} has shape "
                    f"{tuple(a.shape)}, this plan needs {tuple(shape)}); delete it or use another --store"
                ) from None
            return a
        if data is not None and (len(shape) == 0 or shape[0] > 0):
            a[...] = data
        return a

    arr("arch", np.array(plan.archs, dtype=object), dtype=str)
    arr("bench_index", np.asarray(plan.bench_index, dtype=np.int64))
    arr("accuracy", np.asarray(plan.accuracies[plan.accuracy_column], dtype=np.float64))
    for col, values in plan.accuracies.items():
        if col != "accuracy":
            arr(col, np.asarray(values, dtype=np.float64))
    arr("n_blocks", layout.n_blocks)
    arr("block_start", layout.block_start)
    for name, dtype in (("complete", bool), ("params", np.int64), ("flops", np.float64), ("seconds", np.float32)):
        arr(name, shape=(n,), dtype=dtype, chunks=(K,), fill=False if dtype is bool else 0)
    nb = int(layout.n_blocks.sum())
    for name, values in layout.blocks.items():
        arr(name, values, dims=("block",), chunks=(max(min(nb, 2**20), 1),))
    for name in STORED:
        fam = ARRAY_FAMILY[name]
        w = max(layout.widths[fam], 1)
        arr(name, shape=(n, w), dtype=np.float32, chunks=(K, w), dims=("network", FAMILIES[fam][0]))
    if data_batch is not None:
        arr("data_batch", np.asarray(data_batch, dtype=np.float32), dims=("sample", "channel", "y", "x"))
    if data_labels is not None:
        arr("data_labels", np.asarray(data_labels, dtype=np.int64), dims=("sample",))
    if plan.proxies:
        P = len(plan.proxies)
        arr("proxy", np.array(plan.proxies, dtype=object), dtype=str, dims=("proxy",))
        arr("proxy_value", shape=(n, P), dtype=np.float64, chunks=(K, P), dims=("network", "proxy"),
            fill=float("nan"))
        arr("proxy_reason", shape=(n, P), dtype=str, chunks=(K, P), dims=("network", "proxy"))
    g.attrs.update({
        FORMAT: {
            "format_version": FORMAT_VERSION,
            "plan": plan_to_json(plan),
            "layout": {"chunk_networks": K, "widths": layout.widths},
            "created_with": package_versions(),
            "terminals": list(TERMINALS),
            "stored": list(STORED),
            "derived": "preact=relu(inpact), inpactgrad=preactgrad*(inpact>0) (rcb; identity for cbr); "
                       "X_P terminals are P-D differences",
        },
    })
    zarr = _zarr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if storage_options:
            zarr.consolidate_metadata(g.store)
        else:
            zarr.consolidate_metadata(url)
    return open_store(url, storage_options=storage_options)


def open_store(url: str, *, storage_options: dict | None = None) -> "Store":
    """Open an eznas store (a local path or any fsspec URL)."""
    url = normalise_url(url)
    try:
        g = _open_group(str(url), "r+", storage_options)
    except Exception as e:  # zarr raises several types for "not a group"
        raise StoreError(f"{url} is not an eznas store (no Zarr v3 group there: {type(e).__name__})") from None
    meta = g.attrs.get(FORMAT)
    if not isinstance(meta, dict) or "plan" not in meta:
        raise StoreError(f"{url} is a Zarr group but not an eznas store (no '{FORMAT}' attributes)")
    if isinstance(meta, dict) and meta.get("format_version") == FORMAT_VERSION:
        problem = _schema_problem(meta)
        if problem:
            raise StoreError(f"{url} has invalid eznas-store attributes: {problem}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise StoreError(f"{url} has store format version {meta.get('format_version')}, "
                         f"this eznas-store reads version {FORMAT_VERSION}")
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


# ----------------------------------------------------------------------------- the store
@dataclass
class Store:
    """An open store: tables, chunking, writes of whole chunks, and chunk reads for evaluation."""

    url: str
    group: Any
    plan: StorePlan
    meta: dict
    storage_options: dict | None = None
    _blocks: dict[str, np.ndarray] | None = field(default=None, repr=False)

    # -- tables ---------------------------------------------------------------------------
    @property
    def terminals(self) -> tuple[str, ...]:
        return TERMINALS

    @property
    def n_networks(self) -> int:
        return len(self.plan.archs)

    @property
    def chunk_networks(self) -> int:
        return int(self.meta["layout"]["chunk_networks"])

    def chunk_ranges(self) -> list[tuple[int, int]]:
        K = self.chunk_networks
        return [(lo, min(lo + K, self.n_networks)) for lo in range(0, self.n_networks, K)]

    def dataset(self):
        """The whole store as a lazy ``xarray.Dataset`` (dask arrays, nothing read yet)."""
        import xarray as xr

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return xr.open_zarr(self.url, storage_options=self.storage_options)

    @property
    def networks(self):
        """The network table as an ``xarray.Dataset`` (loaded; small)."""
        ds = self.dataset()
        names = [v for v in ds.data_vars if ds[v].dims == ("network",)]
        return ds[names].load()

    @property
    def blocks(self):
        ds = self.dataset()
        names = [v for v in ds.data_vars if ds[v].dims == ("block",)]
        return ds[names].load()

    def lazy(self, networks: slice | None = None):
        """Stored tensor rows of a network range as a lazy (dask-backed) ``xarray.Dataset``."""
        ds = self.dataset()[list(STORED)]
        return ds.isel(network=networks) if networks is not None else ds

    def block_table(self) -> dict[str, np.ndarray]:
        if self._blocks is None:
            cols = ["block_network", "block_index", *SHAPE_COLUMNS, *[f"off_{f}" for f in FAMILIES]]
            self._blocks = {c: np.asarray(self.group[c][:]) for c in cols}
            self._blocks["n_blocks"] = np.asarray(self.group["n_blocks"][:])
            self._blocks["block_start"] = np.asarray(self.group["block_start"][:])
        return self._blocks

    def accuracy(self) -> np.ndarray:
        return np.asarray(self.group["accuracy"][:], dtype=np.float64)

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

    def proxy_table(self):
        """Hand-crafted proxy values as an ``xarray.DataArray`` (network × proxy), NaN where a
        proxy failed (``proxy_reason`` says why); ``None`` for a store ingested without them."""
        if not self.plan.proxies:
            return None
        ds = self.dataset()
        return ds["proxy_value"].assign_coords(proxy=ds["proxy"].values).load()

    def proxy_reasons(self) -> np.ndarray:
        return np.asarray(self.group["proxy_reason"][:], dtype=object)

    def data_labels(self) -> np.ndarray | None:
        return np.asarray(self.group["data_labels"][:]) if "data_labels" in self.group else None

    def data_batch(self) -> np.ndarray | None:
        return np.asarray(self.group["data_batch"][:]) if "data_batch" in self.group else None

    # -- writing --------------------------------------------------------------------------
    def write_chunk(self, lo: int, results: Sequence[NetworkStats],
                    proxies: Sequence[dict[str, tuple[float, str | None]]] | None = None) -> None:
        """Write networks ``lo .. lo+len(results)`` (one whole chunk), flags last.

        ``proxies``: per network ``{name: (value, reason or None)}`` for the plan's proxies.
        """
        hi = lo + len(results)
        if (lo, hi) not in self.chunk_ranges():
            raise StoreError(f"networks {lo}..{hi} are not one chunk of {self.url}")
        bt = self.block_table()
        rows: dict[str, np.ndarray] = {}
        for name in STORED:
            rows[name] = np.zeros(self.group[name].shape[1:], dtype=np.float32)[None].repeat(hi - lo, 0)
        for j, res in enumerate(results):
            n = lo + j
            start, nb = int(bt["block_start"][n]), int(bt["n_blocks"][n])
            if len(res.blocks) != nb:
                raise StoreError(f"network {n} ({self.plan.archs[n]}) ran {len(res.blocks)} blocks, "
                                 f"the layout predicted {nb}")
            for b, block in enumerate(res.blocks):
                for name in STORED:
                    fam = ARRAY_FAMILY[name]
                    flat = block.tensors[name].reshape(-1).numpy()
                    off = int(bt[f"off_{fam}"][start + b])
                    rows[name][j, off:off + flat.size] = flat
        for name in STORED:
            self.group[name][lo:hi] = rows[name]
        self.group["params"][lo:hi] = np.array([r.params for r in results], dtype=np.int64)
        self.group["flops"][lo:hi] = np.array([r.flops for r in results], dtype=np.float64)
        self.group["seconds"][lo:hi] = np.array([r.seconds for r in results], dtype=np.float32)
        if self.plan.proxies:
            if proxies is None or len(proxies) != len(results):
                raise StoreError(f"store {self.url} expects proxy values for networks {lo}..{hi - 1}")
            names = self.plan.proxies
            self.group["proxy_value"][lo:hi] = np.array([[p[k][0] for k in names] for p in proxies], dtype=np.float64)
            self.group["proxy_reason"][lo:hi] = np.array([[p[k][1] or "" for k in names] for p in proxies],
                                                         dtype=object)
        self.group["complete"][lo:hi] = np.ones(hi - lo, dtype=bool)

    def record_run(self, run_id: str, record: dict[str, Any]) -> None:
        """Keep one ingest run's configuration in its own subgroup (no race between shards)."""
        zarr = _zarr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sub = zarr.open_group(self.group.store, path=f"runs/{run_id}", mode="a", zarr_format=3)
        sub.attrs.update(json.loads(json.dumps(record, default=str)))

    def runs(self) -> dict[str, dict]:
        """Ingest run records (not in the consolidated metadata: they are added later)."""
        zarr = _zarr()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                runs = zarr.open_group(self.group.store, path="runs", mode="r", zarr_format=3,
                                       use_consolidated=False)
        except Exception:
            return {}
        return {name: dict(sub.attrs) for name, sub in runs.groups()}

    # -- reading --------------------------------------------------------------------------
    def read_rows(self, lo: int, hi: int, names: Sequence[str] = STORED) -> dict[str, np.ndarray]:
        out = {}
        for name in names:
            try:
                out[name] = np.asarray(self.group[name][lo:hi])
            except Exception as e:
                raise CorruptChunkError(
                    f"store {self.url}: array {name!r}, networks {lo}..{hi - 1} cannot be read "
                    f"({type(e).__name__}: {e}); rerun ingest with --redo-broken"
                ) from None
        return out

    def network_tensors(self, n: int, rows: dict[str, np.ndarray] | None = None, row: int = 0
                        ) -> list[dict[str, torch.Tensor]]:
        """The stored (raw) tensors of network ``n``'s blocks, one dict per block."""
        if rows is None:
            rows, row = self.read_rows(n, n + 1), 0
        bt = self.block_table()
        B = self.plan.collect.batch_size
        start, nb = int(bt["block_start"][n]), int(bt["n_blocks"][n])
        out = []
        for b in range(start, start + nb):
            shapes = _shapes(bt, b, B)
            d = {}
            for name in STORED:
                fam = ARRAY_FAMILY[name]
                shape = shapes[FAMILIES[fam][1]]
                off = int(bt[f"off_{fam}"][b])
                d[name] = torch.from_numpy(rows[name][row, off:off + int(np.prod(shape))].reshape(shape))
            out.append(d)
        return out

    def read_chunk(self, lo: int, hi: int) -> Chunk:
        """Networks ``lo..hi`` as a ``Chunk``: blocks grouped by shape, all 22 terminals (lazy)."""
        rows = self.read_rows(lo, hi)
        networks = [self.network_tensors(n, rows, j) for j, n in enumerate(range(lo, hi))]
        return chunk_from_raw(networks, structure=self.plan.collect.structure,
                              network_ids=np.arange(lo, hi))

    def iter_chunks(self) -> Iterator[Chunk]:
        for lo, hi in self.chunk_ranges():
            yield self.read_chunk(lo, hi)


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


def _shapes(bt: dict[str, np.ndarray], b: int, B: int) -> dict[str, tuple[int, ...]]:
    ci, co, k, hi_, ho = (int(bt[c][b]) for c in ("c_in", "c_out", "kernel", "h_in", "h_out"))
    return {"weight": (co, ci, k, k), "input": (B, ci, hi_, hi_), "output": (B, co, ho, ho)}


def terminal_derivations(structure: str) -> dict[str, Any]:
    """Terminal name → function of the raw tensors (keys ``raw:<stored name>``)."""

    def raw(kind: str, x: str):
        """Raw (undifferenced) value of a per-input kind, derived where not stored."""
        if kind in STORED_KINDS:
            return lambda t: t[f"raw:{kind}_{x}"]
        if kind == "preact":
            return (lambda t: t[f"raw:inpact_{x}"]) if structure == "cbr" else (
                lambda t: torch.relu(t[f"raw:inpact_{x}"]))
        if kind == "inpactgrad":
            return (lambda t: t[f"raw:preactgrad_{x}"]) if structure == "cbr" else (
                lambda t: t[f"raw:preactgrad_{x}"] * (t[f"raw:inpact_{x}"] > 0))
        raise KeyError(kind)

    d: dict[str, Any] = {"wt": lambda t: t["raw:wt"]}
    for name in TERMINALS[1:]:
        kind, x = name.rsplit("_", 1)
        if x == "P":
            fp, fd = raw(kind, "P"), raw(kind, "D")
            d[name] = (lambda fp, fd: (lambda t: fp(t) - fd(t)))(fp, fd)
        else:
            d[name] = raw(kind, x)
    return d


def raw_to_terminals(raw: dict[str, torch.Tensor], structure: str) -> dict[str, torch.Tensor]:
    """All 22 terminals of one block from its stored (raw) tensors, for the slow paths."""
    lt = LazyTerminals({f"raw:{k}": v for k, v in raw.items()}, terminal_derivations(structure))
    return {t: lt[t] for t in TERMINALS}


def dir_bytes(url: str) -> int | None:
    """Bytes under a local store path (or one of its arrays); None for remote URLs."""
    import os

    if "://" in url and not url.startswith("file://"):
        return None
    path = url[len("file://"):] if url.startswith("file://") else url
    total = 0
    for dirpath, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(dirpath, f)) for f in files)
    return total


def store_summary(store: Store) -> str:
    """Human-readable summary for ``eznas-store info``."""
    p = store.plan
    complete = store.complete()
    acc = store.accuracy()
    nb = store.block_table()["n_blocks"]
    lines = [
        f"store        {store.url}",
        f"space        {p.space} (C={p.C}, N={p.N}), dataset {p.dataset} ({p.image_size} px, {p.num_classes} classes)",
        f"benchmark    {p.benchmark or '(none)'}; fitness target column '{p.accuracy_column}'",
        f"collection   batch {p.collect.batch_size}, structure {p.collect.structure}, "
        f"perturb scale {p.collect.perturb_scale:.4g}, seed {p.collect.seed}",
        f"networks     {store.n_networks} planned, {int(complete.sum())} complete, "
        f"{store.n_networks - int(complete.sum())} missing; {len(store.chunk_ranges())} chunks of "
        f"{store.chunk_networks}",
        f"blocks       {int(nb.sum())} in all, {nb.min()}..{nb.max()} per network (mean {nb.mean():.1f})",
    ]
    if np.isfinite(acc).any():
        lines.append(f"accuracy     min {np.nanmin(acc):.2f}  mean {np.nanmean(acc):.2f}  max {np.nanmax(acc):.2f}"
                     f"  ({p.accuracy_column})")
        best = int(np.nanargmax(acc))
        lines.append(f"best         {p.archs[best]}  {acc[best]:.2f}")
    size = dir_bytes(store.url)
    if size is not None and complete.any():
        lines.append(f"on disk      {size / 2**20:.1f} MiB ({size / max(int(complete.sum()), 1) / 2**20:.2f} MiB "
                     "per complete network)")
    lines.append(f"terminals    {len(TERMINALS)}: {', '.join(TERMINALS)}")
    lines.append(f"runs         {len(store.runs())} ingest run(s) recorded")
    return "\n".join(lines)


@dataclass
class VerifyReport:
    """What ``verify`` found: broken networks (index → reasons) and store-level problems."""

    url: str
    checked_chunks: int
    problems: list[str]
    broken: dict[int, list[str]]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.broken

    def lines(self, archs: Sequence[str]) -> list[str]:
        out = [f"verify {self.url}: {self.checked_chunks} chunks read, "
               f"{'OK' if self.ok else f'{len(self.broken)} broken network(s)'}"]
        out += [f"  store: {p}" for p in self.problems]
        for n, why in sorted(self.broken.items()):
            out.append(f"  network {n} ({archs[n]}): {'; '.join(why)}")
        if self.broken:
            out.append("  repair with: eznas-store ingest ... --redo-broken (same options as the original run)")
        return out


def verify_store(store: Store) -> VerifyReport:
    """Check shapes against the plan's layout, completion flags and that every chunk decodes.

    A chunk that cannot be read breaks every network in it; a network not flagged complete
    is reported as missing (not broken) by ``info``, so only flagged networks are checked.
    """
    problems: list[str] = []
    broken: dict[int, list[str]] = defaultdict(list)
    layout = compute_layout(store.plan)
    n = store.n_networks
    for name in STORED:
        fam = ARRAY_FAMILY[name]
        want = (n, max(layout.widths[fam], 1))
        if name not in store.group:
            problems.append(f"array {name!r} is missing")
        elif tuple(store.group[name].shape) != want:
            problems.append(f"array {name!r} has shape {tuple(store.group[name].shape)}, the plan needs {want}")
    try:
        nb = np.asarray(store.group["n_blocks"][:])
        if not np.array_equal(nb, layout.n_blocks):
            problems.append("n_blocks differs from the plan's layout")
    except Exception as e:
        problems.append(f"n_blocks cannot be read ({type(e).__name__})")
    flags = store.group["complete"]
    chunks = store.chunk_ranges()
    for lo, hi in chunks:
        try:
            done = np.asarray(flags[lo:hi], dtype=bool)
        except Exception as e:
            for k in range(lo, hi):
                broken[k].append(f"completion flags unreadable ({type(e).__name__})")
            continue
        if not done.any():
            continue
        for name in [*STORED, "params", "flops"] + (["proxy_value"] if store.plan.proxies else []):
            if name not in store.group:
                continue
            try:
                values = np.asarray(store.group[name][lo:hi])
            except Exception as e:
                for k in range(lo, hi):
                    if done[k - lo]:
                        broken[k].append(f"{name} chunk unreadable ({type(e).__name__})")
                continue
            if name in STORED:
                bad = ~np.isfinite(values).all(axis=1)
                for k in np.flatnonzero(bad & done):
                    broken[lo + int(k)].append(f"{name} holds NaN/Inf")
    return VerifyReport(url=store.url, checked_chunks=len(chunks), problems=problems, broken=dict(broken))
