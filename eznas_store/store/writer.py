"""Writes into an existing store: one whole chunk of networks at a time, and run records.

A chunk's tensors are written first and its ``complete`` flags last, each chunk by one
writer, so a killed job leaves at worst a chunk without flags, which is redone. What is
written are numpy arrays; the store does not know what produced them.
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
from eznas_store.store.group import quiet_zarr
from eznas_store.store.layout import ARRAY_FAMILY
from eznas_store.store.reader import Store
from eznas_store.store.rounding import for_codec
from eznas_store.terminals import STORED, split

#: threads that encode and write a chunk's tensor arrays at once (one array each); at most 4,
#: since sumround's temporaries are ~70 bytes per value (~0.6 GB for one batch-16 NB201 array)
WRITE_THREADS = max(1, min(4, os.cpu_count() or 1))
#: per proxy name: (value, reason it failed or None)
ProxyValues = dict[str, tuple[float, str | None]]


@dataclass
class NetworkArrays:
    """What ingest stores of one network: per block its ``STORED`` tensors, and its totals."""

    blocks: list[dict[str, np.ndarray]]
    params: int
    flops: float
    seconds: float


def write_chunk(store: Store, lo: int, networks: Sequence[NetworkArrays],
                proxies: Sequence[ProxyValues] | None = None) -> None:
    """Write networks ``lo .. lo+len(networks)`` (one whole chunk), flags last.

    ``proxies``: per network ``{name: (value, reason or None)}`` for the plan's proxies.
    """
    hi = lo + len(networks)
    if (lo, hi) not in store.chunk_ranges():
        raise StoreError(f"networks {lo}..{hi} are not one chunk of {store.url}")
    g = store.group
    write_tensors(store, lo, _tensor_rows(store, lo, networks), {name: g[store.array_names[name]] for name in STORED})
    g["params"][lo:hi] = np.array([r.params for r in networks], dtype=np.int64)
    g["flops"][lo:hi] = np.array([r.flops for r in networks], dtype=np.float64)
    g["seconds"][lo:hi] = np.array([r.seconds for r in networks], dtype=np.float32)
    if store.plan.proxies:
        _write_proxies(store, lo, hi, proxies)
    g["complete"][lo:hi] = np.ones(hi - lo, dtype=bool)


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


def write_tensors(store: Store, lo: int, raw: dict[str, np.ndarray], arrays: dict[str, zarr.Array]) -> None:
    """Encode (``encode_array``) and write every ``STORED`` array's rows of networks ``lo..``,
    ``WRITE_THREADS`` arrays at a time: sumround's numpy and Blosc's zstd release the GIL, and
    the strong zstd of ``compact`` is a single core's work per array otherwise. Returns when
    all are written (so a chunk's flags still come last)."""
    n = len(next(iter(raw.values())))

    def one(name: str) -> None:
        arrays[name][lo:lo + n] = encode_array(store, lo, name, raw)

    with ThreadPoolExecutor(max_workers=WRITE_THREADS) as pool:
        for done in [pool.submit(one, name) for name in STORED]:
            done.result()


def _write_proxies(store: Store, lo: int, hi: int, proxies: Sequence[ProxyValues] | None) -> None:
    if proxies is None or len(proxies) != hi - lo:
        raise StoreError(f"store {store.url} expects proxy values for networks {lo}..{hi - 1}")
    names = store.plan.proxies
    store.group["proxy_value"][lo:hi] = np.array([[p[k][0] for k in names] for p in proxies], dtype=np.float64)
    store.group["proxy_reason"][lo:hi] = np.array([[p[k][1] or "" for k in names] for p in proxies],
                                                  dtype=object)


def record_run(store: Store, run_id: str, record: dict[str, Any]) -> None:
    """Keep one ingest run's configuration in its own subgroup (no race between shards)."""
    with quiet_zarr():
        sub = zarr.open_group(store.group.store, path=f"runs/{run_id}", mode="a", zarr_format=3)
    sub.attrs.update(json.loads(json.dumps(record, default=str)))
