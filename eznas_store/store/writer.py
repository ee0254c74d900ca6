"""Writes into an existing store: one whole chunk of networks at a time, and run records.

A chunk's tensors are written first and its ``complete`` flags last, each chunk by one
writer, so a killed job leaves at worst a chunk without flags, which is redone. Every chunk is
written, also one equal to its fill value (``group.writable``), so each written chunk has a key
and an absent one is lost data (``store.chunks``). What is written are numpy arrays; the store
does not know what produced them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from eznas_store.errors import StoreError
from eznas_store.store.chunks import chunk_indices, chunk_label, is_directory
from eznas_store.store.group import quiet_zarr, writable
from eznas_store.store.layout import ARRAY_FAMILY
from eznas_store.store.store import Store
from eznas_store.store.rounding import for_codec, read_back_problem
from eznas_store.terminals import STORED, split

#: threads that encode and write a chunk's tensor arrays at once (one array each); at most 4,
#: since sumround's temporaries are ~70 bytes per value (~0.6 GB for one batch-16 NB201 array)
WRITE_THREADS = max(1, min(4, os.cpu_count() or 1))
#: per proxy name: (value, reason it failed or None)
ProxyValues = dict[str, tuple[float, str | None]]
#: one network's proxies: one ``ProxyValues`` (the store's one label set) or one per label set
NetworkProxies = ProxyValues | Sequence[ProxyValues]


@dataclass
class NetworkArrays:
    """What ingest stores of one network: per block its ``STORED`` tensors, and its totals."""

    blocks: list[dict[str, np.ndarray]]
    params: int
    flops: float
    seconds: float


def write_chunk(store: Store, lo: int, networks: Sequence[NetworkArrays],
                proxies: Sequence[NetworkProxies] | None = None) -> None:
    """Write networks ``lo .. lo+len(networks)`` (one whole chunk), flags last.

    ``proxies``: per network ``{name: (value, reason or None)}`` for the plan's proxies (one
    such dict per label set where the plan has label sets).
    """
    hi = lo + len(networks)
    if (lo, hi) not in store.chunk_ranges():
        raise StoreError(f"networks {lo}..{hi} are not one chunk of {store.url}")
    store.require_statistics("writing statistics")
    g = store.group
    _refuse_directories(store, lo, hi)
    arrays = {name: writable(g[store.array_names[name]]) for name in STORED}
    write_tensors(store, lo, _tensor_rows(store, lo, networks), arrays)
    writable(g["params"])[lo:hi] = np.array([r.params for r in networks], dtype=np.int64)
    writable(g["flops"])[lo:hi] = np.array([r.flops for r in networks], dtype=np.float64)
    writable(g["seconds"])[lo:hi] = np.array([r.seconds for r in networks], dtype=np.float32)
    if store.plan.proxies:
        _write_proxies(store, lo, hi, proxies)
    writable(g["complete"])[lo:hi] = np.ones(hi - lo, dtype=bool)


def _refuse_directories(store: Store, lo: int, hi: int) -> None:
    """A one-line ``StoreError`` if a local store has a directory where one of the chunk's
    files belongs (zarr cannot replace it; it is not ours to delete)."""
    names = [*store.array_names.values(), "params", "flops"] if store.plan.statistics else []
    names += ["seconds", "complete"] + (["proxy_value", "proxy_reason"] if store.plan.proxies else [])
    for name in names:
        a = store.group[name]
        for idx in chunk_indices(a, lo, hi):
            if is_directory(a, a.metadata.encode_chunk_key(idx)):
                path = os.path.join(store.url, a.basename, a.metadata.encode_chunk_key(idx))
                raise StoreError(f"store {store.url}: {chunk_label(a, idx)} is a directory, not a chunk file; "
                                 f"remove {path} and rerun")


def _tensor_rows(store: Store, lo: int, networks: Sequence[NetworkArrays]) -> dict[str, np.ndarray]:
    """Each stored array's rows for the chunk: every block's tensor flattened at its offset."""
    bt = store.block_table()
    rows = {name: np.zeros(store.group[store.array_names[name]].shape[1:], dtype=np.float32)[None]
            .repeat(len(networks), 0) for name in STORED}
    for j, res in enumerate(networks):
        n = lo + j
        start, nb = int(bt["block_start"][n]), int(bt["n_blocks"][n])
        if len(res.blocks) != nb:
            raise StoreError(f"network {n} ({store.plan.archs[n]}) ran {len(res.blocks)} blocks, "
                             f"the layout predicted {nb}")
        for b, block in enumerate(res.blocks):
            for name in STORED:
                flat = np.asarray(block[name]).reshape(-1)
                off = int(bt[f"off_{ARRAY_FAMILY[name]}"][start + b])
                rows[name][j, off:off + flat.size] = flat
    return rows


def encode_array(store: Store, lo: int, name: str, raw: dict[str, np.ndarray]) -> np.ndarray:
    """``STORED`` array ``name``'s rows of networks ``lo..`` as ``store`` keeps them, from the raw
    rows (P the pass itself): P as float32 P − D where the codec is lossy (bit-equal to the P
    terminal a lossless store gives), then rounded as its codec asks (``rounding.for_codec``).
    Ingest and transcode both write these."""
    rows = raw[name]
    if store.plan.p_difference and name.endswith("_P"):
        rows = rows - raw[f"{split(name)[0]}_D"]
    return for_codec(rows, store, lo, name)


def write_tensors(store: Store, lo: int, raw: dict[str, np.ndarray], arrays: dict[str, zarr.Array], *,
                  read_back: bool = False) -> None:
    """Encode (``encode_array``) and write every ``STORED`` array's rows of networks ``lo..``,
    ``WRITE_THREADS`` arrays at a time: sumround's numpy and Blosc's zstd release the GIL, and
    the strong zstd of ``compact`` is a single core's work per array otherwise. Returns when
    all are written (so a chunk's flags still come last). ``read_back``: read each chunk back
    and compare it with what was written (``rounding.read_back_problem``); a difference is a
    ``StoreError``."""
    n = len(next(iter(raw.values())))

    def one(name: str) -> None:
        rows = encode_array(store, lo, name, raw)
        arrays[name][lo:lo + n] = rows
        if read_back:
            try:
                problem = read_back_problem(store.plan.codec, rows, np.asarray(arrays[name][lo:lo + n]))
            except Exception as e:  # what was just written does not decode
                problem = f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"
            if problem:
                raise StoreError(f"store {store.url}: array {arrays[name].basename!r}, networks {lo}..{lo + n - 1} "
                                 f"read back wrong right after writing ({problem}); check the disk and rerun")

    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        for done in [pool.submit(one, name) for name in STORED]:
            done.result()


def _write_proxies(store: Store, lo: int, hi: int, proxies: Sequence[NetworkProxies] | None) -> None:
    """Rows ``lo..hi`` of ``proxy_value`` and ``proxy_reason`` (dims ``plan.proxy_dims``)."""
    if proxies is None or len(proxies) != hi - lo:
        raise StoreError(f"store {store.url} expects proxy values for networks {lo}..{hi - 1}")
    plan, g = store.plan, store.group
    names, heads = plan.proxies, plan.heads()
    per_set = [[p] if isinstance(p, dict) else list(p) for p in proxies]
    if any(len(p) != len(heads) for p in per_set):
        raise StoreError(f"store {store.url} expects proxy values for {len(heads)} label set(s) per network")
    try:
        values = np.array([[[s[k][0] for s in p] for k in names] for p in per_set], dtype=np.float64)
        reasons = np.array([[[s[k][1] or "" for s in p] for k in names] for p in per_set], dtype=object)
    except KeyError as e:
        raise StoreError(f"store {store.url} expects a value of proxy {e.args[0]!r}") from None
    if not plan.label_sets:  # one label set: dims (network, proxy), as every store before label sets
        values, reasons = values[..., 0], reasons[..., 0]
    writable(g["proxy_value"])[lo:hi] = values
    writable(g["proxy_reason"])[lo:hi] = reasons


def write_proxy_rows(store: Store, lo: int, proxies: Sequence[NetworkProxies], seconds: Sequence[float]) -> None:
    """Networks ``lo..lo+len(proxies)`` (within one chunk) of a proxies-only store: their proxies,
    their seconds, then their flags. A collection writes each network as it finishes (its chunk
    rewritten in place: one writer per chunk, ingest's shards), so a killed one loses at most the
    network it was computing; a whole chunk is written without reading it (``--redo-broken``)."""
    hi = lo + len(proxies)
    if store.plan.statistics:
        raise StoreError(f"store {store.url} holds statistics: write whole chunks (write_chunk)")
    if not any(a <= lo and hi <= b for a, b in store.chunk_ranges()) or hi <= lo or len(seconds) != hi - lo:
        raise StoreError(f"networks {lo}..{hi - 1} are not rows of one chunk of {store.url}")
    _refuse_directories(store, lo, hi)
    _write_proxies(store, lo, hi, proxies)
    g = store.group
    writable(g["seconds"])[lo:hi] = np.asarray(seconds, dtype=np.float32)
    writable(g["complete"])[lo:hi] = np.ones(hi - lo, dtype=bool)


def record_run(store: Store, run_id: str, record: dict[str, Any]) -> None:
    """Keep one ingest run's configuration in its own subgroup (no race between shards)."""
    with quiet_zarr():
        sub = zarr.open_group(store.group.store, path=f"runs/{run_id}", mode="a", zarr_format=3)
    sub.attrs.update(json.loads(json.dumps(record, default=str)))
