"""Which chunks a store must hold: an absent chunk key is lost data, not zeros.

Zarr reads a chunk whose key is absent as the array's fill value, so a deleted chunk file,
or a directory where it belongs, reads as zeros, NaN or "" without an error. Completeness is
therefore checked against the keys the store lists (``chunk_keys``), by these rules
(``absent_problem``):

* a directory where a chunk file belongs is always reported;
* ``complete``: an absent chunk means its networks are not collected yet (ingest redoes them);
* every other array ingest writes per chunk of networks (``WRITTEN``) must hold each chunk
  once any of its networks is flagged complete. From this version every write keeps empty
  chunks too (``group.writable``), but older stores have no key for a chunk that equalled its
  fill value, so an absent chunk is accepted where it can have held only that value: a
  ``proxy_reason`` chunk whose proxy values are all finite (a reason is "" exactly when the
  value is finite), a ``proxy_value`` chunk whose reasons are all set (every value NaN), a
  tensor array of row width 0;
* tables (written once, at creation): an absent chunk is accepted while the tables match
  their commit marker (``tables_sha256``: they read back as written, so the chunk held the
  fill value); stores made before that marker are not checked here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
from zarr.core.sync import sync

from eznas_store.store.group import quiet_zarr
from eznas_store.store.layout import ARRAY_FAMILY, TENSOR_ARRAYS
from eznas_store.store.plan import CREATION

#: arrays ingest writes per chunk of networks (``--redo-broken`` rewrites them); every
#: other array is fixed by the plan when the store is created
WRITTEN = frozenset([*TENSOR_ARRAYS, "complete", "params", "flops", "seconds", "proxy_value", "proxy_reason"])
#: what a missing chunk's message tells the user to do
REPAIR = "run 'eznas-store verify' on it and repair it with 'eznas-store ingest ... --redo-broken'"


def chunk_keys(a: Any) -> frozenset[str]:
    """The keys (``c/i/j``) array ``a`` has in its store, files only: one listing (a walk of the
    array's folder for a local store, ``list_prefix`` for any other)."""
    store, path = a.store_path.store, a.store_path.path
    prefix = f"{path}/" if path else ""
    root = getattr(store, "root", None)
    if root is not None:  # LocalStore: os.walk is ~50x faster than its pathlib rglob
        top = os.path.join(str(root), path)
        return frozenset(os.path.relpath(os.path.join(d, f), top).replace(os.sep, "/")
                         for d, _, files in os.walk(top) for f in files)

    async def listing() -> list[str]:
        return [k async for k in store.list_prefix(prefix)]

    return frozenset(k[len(prefix):] for k in sync(listing()) if k.startswith(prefix))


def key_exists(a: Any, key: str) -> bool:
    """Whether chunk ``key`` of ``a`` is stored now (asked afresh; a directory is not a chunk)."""
    path = a.store_path.path
    return bool(sync(a.store_path.store.exists(f"{path}/{key}" if path else key))) and not is_directory(a, key)


def is_directory(a: Any, key: str) -> bool:
    """Whether a local store has a directory where chunk ``key`` of ``a`` belongs."""
    root = getattr(a.store_path.store, "root", None)
    return root is not None and os.path.isdir(os.path.join(str(root), a.store_path.path, key))


def chunk_indices(a: Any, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, ...]]:
    """The chunk indices of ``a`` that hold its rows ``lo..hi`` (all rows: every chunk)."""
    if not a.shape:
        return iter([()])
    hi = a.shape[0] if hi is None else min(hi, a.shape[0])
    if hi <= lo or 0 in a.shape:
        return iter(())
    first = range(lo // a.chunks[0], (hi - 1) // a.chunks[0] + 1)
    return itertools.product(first, *(range(n) for n in a.cdata_shape[1:]))


def rows_of(a: Any, idx: tuple[int, ...]) -> tuple[int, int]:
    """The rows (along the first dim) that chunk ``idx`` of ``a`` holds."""
    if not idx:
        return 0, 1
    lo = idx[0] * a.chunks[0]
    return lo, min(lo + a.chunks[0], a.shape[0])


def chunk_label(a: Any, idx: tuple[int, ...]) -> str:
    """``chunk act_D/1.0 (networks 3..5)``, as ``verify`` names a chunk."""
    dims = tuple(getattr(a.metadata, "dimension_names", None) or ())
    lo, hi = rows_of(a, idx)
    nets = ("all networks" if not dims or dims[0] not in ("network", "block") else "the block table"
            if dims[0] == "block" else f"network {lo}" if hi - lo == 1 else f"networks {lo}..{hi - 1}")
    return f"chunk {a.basename}/{'.'.join(map(str, idx)) or '0'} ({nets})"


def absent_problem(store: Any, name: str, idx: tuple[int, ...], flags: np.ndarray | None = None,
                   reading: bool = False) -> str | None:
    """Why the absent chunk ``idx`` of array ``name`` is lost data, or None if its absence
    loses nothing (the module's rules). ``flags``: the completion flags of its rows (read
    here if None). ``reading``: the key list was made earlier (``Store`` keeps one per array),
    so the store is asked again (after the flags: a writer writes a chunk before its flags),
    and the tables' state is kept on ``store`` once known."""
    a = store.group[name]
    key = a.metadata.encode_chunk_key(idx)
    if is_directory(a, key):
        return "a directory, not a chunk file"
    if name == "complete":
        return None
    lo, hi = rows_of(a, idx)
    if name not in WRITTEN:
        if (reading and key_exists(a, key)) or tables_intact(store, keep=reading):
            return None
        return "missing (the tables do not match their commit marker; zarr would read fill values)"
    if flags is None:
        flags = _flags(store, lo, hi)
    if not np.asarray(flags).any() or (reading and key_exists(a, key)):
        return None
    if _fill_was_the_value(store, name, lo, hi):
        return None
    return "missing (its networks are flagged complete; zarr would read fill values)"


def _flags(store: Any, lo: int, hi: int) -> np.ndarray:
    """Completion flags of networks ``lo..hi`` read now; unreadable: not complete."""
    try:
        return np.asarray(store.group["complete"][lo:hi], dtype=bool)
    except Exception:
        return np.zeros(hi - lo, dtype=bool)


def _fill_was_the_value(store: Any, name: str, lo: int, hi: int) -> bool:
    """Whether an absent chunk of ``WRITTEN`` array ``name`` (rows ``lo..hi``) can only have
    held its fill value, which stores written before ``write_empty_chunks`` did not write."""
    g = store.group
    try:
        if name == "proxy_reason":  # "" reasons: only where every value is finite
            return bool(np.isfinite(np.asarray(g["proxy_value"][lo:hi], dtype=np.float64)).all())
        if name == "proxy_value":  # NaN values: only where every reason is set
            reasons = store.group["proxy_reason"]
            idx = tuple(0 for _ in reasons.shape[1:])
            if not key_exists(reasons, reasons.metadata.encode_chunk_key((lo // reasons.chunks[0], *idx))):
                return False
            return all(str(r) != "" for r in np.asarray(reasons[lo:hi]).ravel())
    except Exception:  # the partner cannot be read: it is reported on its own
        return False
    stored = {v: k for k, v in store.array_names.items()}.get(name)
    widths = store.meta.get("layout", {}).get("widths", {})
    return stored is not None and int(widths.get(ARRAY_FAMILY[stored], 1)) == 0


def tables_intact(store: Any, keep: bool = False) -> bool:
    """Whether the tables match their commit marker (True for stores made before it);
    ``keep``: remember the answer on ``store`` (``Store.tables_intact``) and use it next time."""
    cached = getattr(store, "tables_intact", None) if keep else None
    if cached is not None:
        return cached
    creation = store.group.attrs.get(CREATION)
    ok = True
    if isinstance(creation, dict) and isinstance(creation.get("tables"), list):
        ok = stored_tables_sha256(store.group, creation["tables"]) == creation.get("tables_sha256")
    if keep:
        store.tables_intact = ok
    return ok


def missing_chunks(store: Any, names: list[str] | None = None) -> list[tuple[str, tuple[int, ...], str]]:
    """(array, chunk index, why) of every chunk ``names`` (default: every array) lack that
    holds data, from one fresh listing per array and one read of the completion flags."""
    g = store.group
    names = sorted(g.array_keys()) if names is None else names
    flags = store.complete()
    out = []
    for name in names:
        a = g[name]
        keys = chunk_keys(a)
        for idx in chunk_indices(a):
            if a.metadata.encode_chunk_key(idx) in keys:
                continue
            lo, hi = rows_of(a, idx)
            why = absent_problem(store, name, idx, flags[lo:hi] if name in WRITTEN else None)
            if why:
                out.append((name, idx, why))
    return out


def tables_sha256(values: dict[str, np.ndarray]) -> str:
    """sha256 over the tables' names, dtypes, shapes and bytes (strings as JSON)."""
    h = hashlib.sha256()
    for name in sorted(values):
        a = np.asarray(values[name])
        if a.dtype.kind in "OUT":
            kind, body = "str", json.dumps([str(x) for x in a.ravel()]).encode()
        else:
            kind, body = a.dtype.str, np.ascontiguousarray(a).tobytes()
        h.update(json.dumps([name, kind, list(a.shape)]).encode())
        h.update(body)
    return h.hexdigest()


def stored_tables_sha256(g: Any, names: list[str]) -> str | None:
    """``tables_sha256`` of the tables as stored; None if one cannot be read."""
    try:
        with quiet_zarr():
            return tables_sha256({str(n): g[str(n)][...] for n in names})
    except Exception:  # a missing array or chunk: not the committed tables
        return None
