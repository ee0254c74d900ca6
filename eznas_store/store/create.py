"""Making a store for a plan: every array created with its final shape before any data.

Shards of one job create the same store concurrently; they all write identical
metadata, so a race is benign: an array or group another shard made a moment ago is
joined, never overwritten (that would drop chunks it may already have written).
A store, or a partial one, made with a different plan is refused with the difference.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import zarr
from zarr.errors import ContainsArrayError, ContainsGroupError

from eznas_store.errors import StoreError
from eznas_store.outputs import package_versions
from eznas_store.store.group import (compressors, normalise_url, open_group, quiet_zarr, store_exists,
                                     string_compressors)
from eznas_store.store.layout import ARRAY_FAMILY, FAMILIES, Layout
from eznas_store.store.plan import FORMAT, FORMAT_VERSION, StorePlan, plan_to_json
from eznas_store.store.reader import Store, open_store
from eznas_store.terminals import STORED, TERMINALS

#: creates one array of the root group: (name, data=None, *, shape, dtype, chunks, dims, fill)
MakeArray = Callable[..., Any]


def open_for_plan(url: str, plan: StorePlan, storage_options: dict | None = None) -> Store | None:
    """The store at ``url`` if it holds ``plan``; None if there is none; refused if it differs."""
    url = normalise_url(url)
    if not store_exists(url, storage_options):
        return None
    store = open_store(url, storage_options=storage_options)
    mine, theirs = plan.identity(), store.plan.identity()
    if mine != theirs:
        diff = sorted(k for k in mine if mine[k] != theirs.get(k))
        raise StoreError(
            f"store {url} was made with a different configuration ({', '.join(diff)} differ); "
            "use another --store path or the same options"
        )
    return store


def create_store(url: str, plan: StorePlan, layout: Layout, *, data_batch: np.ndarray | None = None,
                 data_labels: np.ndarray | None = None, storage_options: dict | None = None) -> Store:
    """Create (or join another shard's half-made) store for ``plan`` laid out as ``layout``."""
    url = normalise_url(url)
    try:
        g = open_group(url, "a", storage_options)
    except ContainsGroupError:
        # another shard created the root group between our look and our create: join it
        g = open_group(url, "r+", storage_options)
    make = functools.partial(_create_array, g, url)
    _network_table(make, plan, layout)
    _block_table(make, layout)
    _tensor_arrays(make, plan, layout)
    _data_arrays(make, data_batch, data_labels)
    if plan.proxies:
        _proxy_arrays(make, plan, layout)
    g.attrs.update({FORMAT: _attributes(plan, layout)})
    with quiet_zarr():
        zarr.consolidate_metadata(g.store if storage_options else url)
    return open_store(url, storage_options=storage_options)


def _create_array(g: Any, url: str, name: str, data: np.ndarray | None = None, *, shape=None, dtype=None,
                  chunks=None, dims=("network",), fill: Any = 0) -> Any:
    """One array of the root group, written with ``data`` if given; joined if it exists."""
    shape = shape if shape is not None else data.shape
    dtype = dtype or data.dtype
    chunks = chunks or shape
    kw: dict[str, Any] = dict(shape=shape, chunks=chunks, dtype=dtype, dimension_names=dims, overwrite=False)
    kw["compressors"] = compressors() if dtype is not str else string_compressors()
    if dtype is not str:
        kw["fill_value"] = fill
    try:
        a = g.create_array(name, **kw)
    except ContainsArrayError:
        # another shard of the same job created it a moment ago: never overwrite; a
        # leftover of another plan is refused
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


def _network_table(make: MakeArray, plan: StorePlan, layout: Layout) -> None:
    """Dim ``network``: what the plan fixes, then the per-network results ingest fills in."""
    make("arch", np.array(plan.archs, dtype=object), dtype=str)
    make("bench_index", np.asarray(plan.bench_index, dtype=np.int64))
    make("accuracy", np.asarray(plan.accuracies[plan.accuracy_column], dtype=np.float64))
    for col, values in plan.accuracies.items():
        if col != "accuracy":
            make(col, np.asarray(values, dtype=np.float64))
    make("n_blocks", layout.n_blocks)
    make("block_start", layout.block_start)
    n, K = len(plan.archs), layout.chunk_networks
    for name, dtype in (("complete", bool), ("params", np.int64), ("flops", np.float64), ("seconds", np.float32)):
        make(name, shape=(n,), dtype=dtype, chunks=(K,), fill=False if dtype is bool else 0)


def _block_table(make: MakeArray, layout: Layout) -> None:
    """Dim ``block``: owning network, index, shapes and per-family offsets."""
    nb = int(layout.n_blocks.sum())
    for name, values in layout.blocks.items():
        make(name, values, dims=("block",), chunks=(max(min(nb, 2**20), 1),))


def _tensor_arrays(make: MakeArray, plan: StorePlan, layout: Layout) -> None:
    """Dims ``(network, <family>_elem)``: one row per network, ``chunk_networks`` rows a chunk."""
    n, K = len(plan.archs), layout.chunk_networks
    for name in STORED:
        fam = ARRAY_FAMILY[name]
        w = max(layout.widths[fam], 1)
        make(name, shape=(n, w), dtype=np.float32, chunks=(K, w), dims=("network", FAMILIES[fam][0]))


def _data_arrays(make: MakeArray, data_batch: np.ndarray | None, data_labels: np.ndarray | None) -> None:
    """The image batch (and its labels) every network saw."""
    if data_batch is not None:
        make("data_batch", np.asarray(data_batch, dtype=np.float32), dims=("sample", "channel", "y", "x"))
    if data_labels is not None:
        make("data_labels", np.asarray(data_labels, dtype=np.int64), dims=("sample",))


def _proxy_arrays(make: MakeArray, plan: StorePlan, layout: Layout) -> None:
    """Dims ``(network, proxy)``: hand-crafted proxy values (NaN until written) and reasons."""
    n, K, P = len(plan.archs), layout.chunk_networks, len(plan.proxies)
    make("proxy", np.array(plan.proxies, dtype=object), dtype=str, dims=("proxy",))
    make("proxy_value", shape=(n, P), dtype=np.float64, chunks=(K, P), dims=("network", "proxy"),
         fill=float("nan"))
    make("proxy_reason", shape=(n, P), dtype=str, chunks=(K, P), dims=("network", "proxy"))


def _attributes(plan: StorePlan, layout: Layout) -> dict[str, Any]:
    """The store's own attributes (``schemas/store.schema.json``)."""
    return {
        "format_version": FORMAT_VERSION,
        "plan": plan_to_json(plan),
        "layout": {"chunk_networks": layout.chunk_networks, "widths": layout.widths},
        "created_with": package_versions(),
        "terminals": list(TERMINALS),
        "stored": list(STORED),
        "derived": "preact=relu(inpact), inpactgrad=preactgrad*(inpact>0) (rcb; identity for cbr); "
                   "X_P terminals are P-D differences",
    }
