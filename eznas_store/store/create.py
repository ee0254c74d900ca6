"""Making a store for a plan: every array created with its final shape before any data.

Shards of one job create the same store concurrently; they all write identical
metadata, so a race is benign: an array or group another shard made a moment ago is
joined, never overwritten (that would drop chunks it may already have written).
A store, or a partial one, made with a different plan is refused with the difference.

Creation cannot be half-done: the plan's fingerprint (``plan_fingerprint``) is the root
group's first write, so every later writer checks it before touching anything; the tables
(every array written with data at creation) are committed as a unit by ``tables_sha256``
in the same attribute, written only after they were read back intact. A later run with
the same fingerprint and no commit marker rewrites them (they follow from the plan); one
that finds committed tables whose bytes do not match refuses. A directory or Zarr group
that is not an eznas store is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import zarr
from zarr.errors import ContainsArrayError, ContainsGroupError

from eznas_store.errors import StoreError
from eznas_store.outputs import package_versions
from eznas_store.store.group import (compressors, normalise_url, open_group, quiet_zarr, store_exists,
                                     string_compressors, tensor_codecs, unreachable, is_access_error, writable)
from eznas_store.store.chunks import tables_sha256, stored_tables_sha256
from eznas_store.store.describe import array_attributes
from eznas_store.store.layout import ARRAY_FAMILY, FAMILIES, Layout, array_name
from eznas_store.store.plan import (CREATION, FORMAT, FORMAT_VERSION, StorePlan, first_difference,
                                    plan_fingerprint, plan_to_json)
from eznas_store.store.store import Store, open_store
from eznas_store.terminals import STORED, TERMINALS

#: creates one array of the root group: (name, data=None, *, shape, dtype, chunks, dims, fill)
MakeArray = Callable[..., Any]
#: a table array's values and the keyword arguments it is made with
Tables = dict[str, tuple[np.ndarray, dict[str, Any]]]


def open_for_plan(url: str, plan: StorePlan, storage_options: dict | None = None) -> Store | None:
    """The store at ``url`` if it holds ``plan``; None if there is none; refused if it differs."""
    url = normalise_url(url)
    if not store_exists(url, storage_options):
        return None
    store = open_store(url, storage_options=storage_options)
    if plan.identity() != store.plan.identity():
        _refuse_difference(url, plan_fingerprint(plan), plan_fingerprint(store.plan))
    creation = store.group.attrs.get(CREATION)
    if isinstance(creation, dict):  # stores made before the fingerprint have none
        _refuse_difference(url, plan_fingerprint(plan), creation)
        marker = creation.get("tables_sha256")
        names = creation.get("tables")
        if not isinstance(names, list) or stored_tables_sha256(store.group, names) != marker:
            raise StoreError(f"store {url} has tables that do not match their commit marker "
                             "(changed after creation); delete it or use another --store")
    return store


def _refuse_difference(url: str, want: dict[str, Any], have: Any) -> None:
    """A one-line refusal naming the first option where the store's fingerprint differs."""
    option = first_difference(want, have)
    if option is not None:
        raise StoreError(f"store {url} was made with a different configuration (option {option!r} "
                         "differs); use another --store path or the same options")


def create_store(url: str, plan: StorePlan, layout: Layout, *, data_batch: np.ndarray | None = None,
                 data_labels: np.ndarray | None = None, storage_options: dict | None = None,
                 suitezero_values: np.ndarray | None = None, proxy_info: dict[str, dict] | None = None) -> Store:
    """Create (or join another shard's half-made) store for ``plan`` laid out as ``layout``.

    ``suitezero_values``: the joined NASLib values, (network, suitezero proxy[, label set]) as
    ``plan.suitezero_proxies`` and ``plan.label_sets`` order them (their sha256 is the plan's
    ``suitezero_sha256``); ``proxy_info``: per proxy its card, kept in ``proxy_value``'s attributes."""
    url = normalise_url(url)
    _refuse_foreign(url, storage_options)
    want = plan_fingerprint(plan)
    g = _open_root(url, want, storage_options)
    make = functools.partial(_create_array, g, url,
                             describe=functools.partial(array_attributes, plan=plan, proxy_info=proxy_info))
    tables = _table_values(plan, layout, data_batch, data_labels)
    tables.update(_proxy_tables(plan, suitezero_values))
    marker = _write_tables(url, g, make, tables, want, storage_options)
    _network_table(make, plan, layout)
    if plan.statistics:
        _tensor_arrays(make, plan, layout)
    if plan.proxies:
        _proxy_arrays(make, plan, layout)
    _recheck(url, want, storage_options)
    attrs = {**_attributes(plan, layout), "fingerprint": want["fingerprint"], "tables_sha256": marker}
    g = open_group(url, "r+", storage_options)  # fresh attributes: never write back a stale copy
    g.attrs.update({FORMAT: attrs})
    with quiet_zarr():
        zarr.consolidate_metadata(g.store if storage_options else url)
    return open_store(url, storage_options=storage_options)


def _create_array(g: Any, url: str, name: str, data: np.ndarray | None = None, *, shape=None, dtype=None,
                  chunks=None, dims=("network",), fill: Any = 0,
                  describe: Callable[..., dict[str, Any]] | None = None, codec: str | None = None) -> Any:
    """One array of the root group, written with ``data`` if given; joined if it exists.
    ``describe(name, dims=...)`` gives its attributes (``describe.array_attributes``);
    ``codec`` (tensor arrays only) its ``group.tensor_codecs``."""
    shape = shape if shape is not None else data.shape
    dtype = dtype or data.dtype
    chunks = chunks or shape
    kw: dict[str, Any] = dict(shape=shape, chunks=chunks, dtype=dtype, dimension_names=dims, overwrite=False,
                              config={"write_empty_chunks": True})
    if describe is not None:
        kw["attributes"] = describe(name, dims=tuple(dims))
    kw["compressors"] = compressors() if dtype is not str else string_compressors()
    if codec is not None:
        kw.update(tensor_codecs(codec))
    if dtype is not str:
        kw["fill_value"] = fill
    try:
        # numcodecs.* codecs are registered but not in the v3 spec: zarr warns about them
        with quiet_zarr() if codec is not None else contextlib.nullcontext():
            a = g.create_array(name, **kw)
    except ContainsArrayError:
        # another shard of the same job created it a moment ago: never overwrite; a
        # leftover of another plan is refused
        a = writable(g[name])
        if tuple(a.shape) != tuple(shape) or tuple(a.chunks) != tuple(chunks):
            raise StoreError(
                f"{url} holds a partial store of another configuration (array {name!r} has shape "
                f"{tuple(a.shape)}, this plan needs {tuple(shape)}); delete it or use another --store"
            ) from None
    # data (a table) is (re)written even into an existing array: it follows from the plan
    if data is not None and (len(shape) == 0 or shape[0] > 0):
        a[...] = data
    return a


def _network_table(make: MakeArray, plan: StorePlan, layout: Layout) -> None:
    """Dim ``network``: the per-network results ingest fills in (what the plan fixes is a table)."""
    n, K = len(plan.archs), layout.chunk_networks
    columns = (("complete", bool), ("params", np.int64), ("flops", np.float64), ("seconds", np.float32))
    for name, dtype in columns if plan.statistics else (columns[0], columns[3]):
        make(name, shape=(n,), dtype=dtype, chunks=(K,), fill=False if dtype is bool else 0)


def _table_values(plan: StorePlan, layout: Layout, data_batch: np.ndarray | None,
                  data_labels: np.ndarray | None) -> Tables:
    """Every array written with data at creation: what the plan fixes per network (dim
    ``network``), the block table (dim ``block``), the image batch and the proxy names."""
    t: Tables = {"arch": (np.array(plan.archs, dtype=object), {"dtype": str}),
                 "bench_index": (np.asarray(plan.bench_index, dtype=np.int64), {}),
                 "accuracy": (np.asarray(plan.accuracies[plan.accuracy_column], dtype=np.float64), {})}
    for col, values in plan.accuracies.items():
        if col != "accuracy":
            t[col] = (np.asarray(values, dtype=np.float64), {})
    if plan.statistics:  # a proxies-only store has no blocks
        t["n_blocks"], t["block_start"] = (layout.n_blocks, {}), (layout.block_start, {})
        nb = int(layout.n_blocks.sum())
        for name, values in layout.blocks.items():
            t[name] = (values, {"dims": ("block",), "chunks": (max(min(nb, 2**20), 1),)})
    if data_batch is not None:
        t["data_batch"] = (np.asarray(data_batch, dtype=np.float32), {"dims": ("sample", "channel", "y", "x")})
    if data_labels is not None:
        t["data_labels"] = (np.asarray(data_labels, dtype=np.int64), {"dims": ("sample",)})
    if plan.proxies:
        t["proxy"] = (np.array(plan.proxies, dtype=object), {"dtype": str, "dims": ("proxy",)})
    return t


def _proxy_tables(plan: StorePlan, suitezero_values: np.ndarray | None) -> Tables:
    """The label sets (dim ``label_set``, where given) and the joined Suite-Zero values."""
    t: Tables = {}
    if plan.label_sets:
        names, classes, columns = zip(*plan.label_sets)
        t["label_set"] = (np.array(names, dtype=object), {"dtype": str, "dims": ("label_set",)})
        t["label_set_classes"] = (np.asarray(classes, dtype=np.int64), {"dims": ("label_set",)})
        t["label_set_accuracy"] = (np.array(columns, dtype=object), {"dtype": str, "dims": ("label_set",)})
    if plan.suitezero_proxies:
        dims = ("network", "suitezero_proxy", *(("label_set",) if plan.label_sets else ()))
        shape = (len(plan.archs), len(plan.suitezero_proxies), *((len(plan.label_sets),) if plan.label_sets else ()))
        values = np.asarray(suitezero_values, dtype=np.float64) if suitezero_values is not None else None
        if values is None or values.shape != shape or suitezero_sha256(values) != plan.suitezero_sha256:
            raise StoreError("the joined Suite-Zero values do not match the plan (their shape or sha256); "
                             "plan the store again")
        t["suitezero_proxy"] = (np.array(plan.suitezero_proxies, dtype=object), {"dtype": str,
                                                                                 "dims": ("suitezero_proxy",)})
        t["suitezero_value"] = (values, {"dims": dims})
    return t


def suitezero_sha256(values: np.ndarray) -> str:
    """The sha256 a plan records of its joined Suite-Zero values (float64, C order)."""
    return tables_sha256({"suitezero_value": np.ascontiguousarray(values, dtype=np.float64)})


def _write_tables(url: str, g: Any, make: MakeArray, tables: Tables, want: dict[str, Any],
                  storage_options: dict | None) -> str:
    """Fill the tables as a unit and commit them; joined if committed already, refused if the
    committed ones differ. Returns the commit marker."""
    expected = tables_sha256({k: v for k, (v, _) in tables.items()})
    creation = _recheck(url, want, storage_options)
    marker = creation.get("tables_sha256")
    if isinstance(marker, str) and len(marker) == 64:
        if marker == expected and stored_tables_sha256(g, list(tables)) == expected:
            return expected
        raise StoreError(f"store {url} holds committed tables that differ from this plan's "
                         "(changed after creation, or made elsewhere); delete it or use another --store")
    for name, (values, kw) in tables.items():
        make(name, values, **kw)
    if stored_tables_sha256(g, list(tables)) != expected:
        raise StoreError(f"store {url}: tables changed while this run wrote them (a concurrent ingest "
                         "with other options?); rerun with the same options or use another --store")
    _recheck(url, want, storage_options)
    root = open_group(url, "r+", storage_options)
    root.attrs.update({CREATION: {**want, "tables": sorted(tables), "tables_sha256": expected}})
    return expected


def _refuse_foreign(url: str, storage_options: dict | None) -> None:
    """Refuse, before anything is written, a target holding something other than an eznas store."""
    problem = _local_problem(url) if "://" not in url else _group_problem(url, storage_options)
    if problem:
        raise StoreError(f"{url} {problem}; refusing to create a store there (use another --store path)")


def _local_problem(path: str) -> str | None:
    """Why the local ``path`` cannot become a store, or None (absent, empty, or ours)."""
    if not os.path.exists(path):
        return None
    if not os.path.isdir(path):
        return "exists and is not a directory"
    entries = set(os.listdir(path))
    if not entries:
        return None
    if "zarr.json" not in entries:
        return "is a non-empty directory that is not an eznas store"
    try:
        with open(os.path.join(path, "zarr.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return "holds an unreadable zarr.json (not an eznas store)"
    if not isinstance(meta, dict) or meta.get("node_type") != "group" or meta.get("zarr_format") != 3:
        return "holds a Zarr node that is not a v3 group (not an eznas store)"
    return _attrs_problem(meta.get("attributes") or {}, has_members=bool(entries - {"zarr.json"}))


def _group_problem(url: str, storage_options: dict | None) -> str | None:
    """Why the Zarr group at a remote ``url`` cannot become a store, or None."""
    try:
        g = open_group(url, "r", storage_options)
        with quiet_zarr():
            members = bool(list(g.keys()))
    except Exception:  # no group there
        return None
    return _attrs_problem(dict(g.attrs), has_members=members)


def _attrs_problem(attrs: dict, *, has_members: bool) -> str | None:
    """An empty attribute-less group (an interrupted creation's first write) or ours is fine."""
    if FORMAT in attrs or CREATION in attrs or not (has_members or attrs):
        return None
    return ("is a Zarr group without eznas-store attributes (another tool's group, or a partial store "
            "of another configuration)")


def _open_root(url: str, want: dict[str, Any], storage_options: dict | None) -> Any:
    """The root group, created with the fingerprint as its very first write, or joined (another
    shard or an interrupted run made it) if it holds the same fingerprint; refused otherwise."""
    kw: dict[str, Any] = {"mode": "a", "zarr_format": 3, "attributes": {CREATION: want}}
    if storage_options:
        kw["storage_options"] = storage_options
    try:
        with quiet_zarr():
            zarr.open_group(url, **kw)
    except ContainsGroupError:
        pass  # another shard created the root group between our look and our create: join it
    except StoreError:
        raise
    except Exception as e:  # unreachable remote (no network, no bucket, no credentials), no permission
        if not is_access_error(url, e):
            raise
        raise unreachable(url, e) from None
    g = open_group(url, "r+", storage_options)
    if CREATION not in g.attrs and FORMAT not in g.attrs:  # an empty group: claim it first
        g.attrs.update({CREATION: want})
    _recheck(url, want, storage_options)
    return g


def _recheck(url: str, want: dict[str, Any], storage_options: dict | None) -> dict[str, Any]:
    """The root's creation record read afresh; refused if another configuration holds it."""
    attrs = open_group(url, "r", storage_options).attrs
    creation = attrs.get(CREATION)
    if not isinstance(creation, dict):
        raise StoreError(f"store {url} lost its creation record (fingerprint) while being created; "
                         "delete it or use another --store")
    _refuse_difference(url, want, creation)
    return creation


def _tensor_arrays(make: MakeArray, plan: StorePlan, layout: Layout) -> None:
    """Dims ``(network, <family>_elem)``: one row per network, ``chunk_networks`` rows a chunk."""
    n, K = len(plan.archs), layout.chunk_networks
    for name in STORED:
        fam = ARRAY_FAMILY[name]
        w = max(layout.widths[fam], 1)
        make(array_name(name, plan.p_difference), shape=(n, w), dtype=np.float32, chunks=(K, w), dims=("network", FAMILIES[fam][0]),
             codec=plan.codec)


def _proxy_arrays(make: MakeArray, plan: StorePlan, layout: Layout) -> None:
    """Dims ``(network, proxy[, label_set])``: hand-crafted proxy values (NaN until written) and reasons."""
    n, K, P = len(plan.archs), layout.chunk_networks, len(plan.proxies)
    sets = (len(plan.label_sets),) if plan.label_sets else ()
    dims = plan.proxy_dims
    make("proxy_value", shape=(n, P, *sets), dtype=np.float64, chunks=(K, P, *sets), dims=dims, fill=float("nan"))
    make("proxy_reason", shape=(n, P, *sets), dtype=str, chunks=(K, P, *sets), dims=dims)


def _attributes(plan: StorePlan, layout: Layout) -> dict[str, Any]:
    """The store's own attributes (``schemas/store.schema.json``)."""
    return {
        "format_version": FORMAT_VERSION,
        "plan": plan_to_json(plan),
        "layout": {"chunk_networks": layout.chunk_networks, "widths": layout.widths},
        "created_with": package_versions(),
        "terminals": list(TERMINALS),
        **stored_attributes(plan),
    }


def stored_attributes(plan: StorePlan) -> dict[str, Any]:
    """The ``stored`` and ``derived`` attributes: which arrays hold tensors, how terminals follow."""
    if not plan.statistics:
        return {"stored": [], "derived": "a proxies-only store: no statistics (tensor arrays) are stored"}
    diff = plan.p_difference
    derived = ("X_P terminals are P-D differences, stored as such (lossy codec): the arrays act_P, ... ARE the "
               "terminals; the raw P pass is act_P + act_D" if diff else
               "X_P terminals are P-D differences: act_P = raw_act_P - act_D (raw_* arrays hold the "
               "raw P pass, every other tensor array is the terminal of its name)")
    return {"stored": [array_name(s, diff) for s in STORED],
            "derived": "preact=relu(inpact), inpactgrad=preactgrad*(inpact>0) (rcb; identity for cbr); " + derived}
