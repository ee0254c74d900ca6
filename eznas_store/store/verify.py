"""Checking and describing a store: ``eznas-store verify`` and ``eznas-store info``.

``verify_store`` reads every chunk of every array (tables, tensors, data batch). Every
array is written with a CRC32C checksum after its compressor, so a chunk whose bytes
changed (a flipped bit, a truncated file) fails to decode and is named here, with the
networks it holds, before evaluation trips over it. A chunk file that is missing (or a
directory in its place) would read as fill values without an error, so each array's chunk
keys are listed and an absent chunk that held data (``store.chunks``) is named the same
way. It also counts complete networks and lists files an interrupted write left in a local
store (``*.partial``), and checks the tables (``arch``, ``bench_index``, every accuracy
column) against their commit marker and the plan in the attributes;
``ingest.benchmark_check`` compares them with the benchmark file they were copied from.
A proxies-only store is checked the same way, its proxy arrays being what ingest writes.
"""

from __future__ import annotations

import itertools
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eznas_store.store.chunks import WRITTEN, absent_problem, chunk_keys, missing_chunks, rows_of
from eznas_store.store.create import stored_tables_sha256
from eznas_store.store.group import dir_bytes
from eznas_store.store.layout import ARRAY_FAMILY, TENSOR_ARRAYS, Layout
from eznas_store.store.plan import CREATION, codec_level, parse_codec
from eznas_store.store.store import Store
from eznas_store.terminals import STORED, TERMINALS

#: name endings of temporary files a killed write leaves (zarr writes ``<key>.<uuid>.partial``)
STRAY_SUFFIXES = (".partial", ".tmp", "~")


@dataclass(frozen=True)
class BrokenChunk:
    """One chunk that cannot be read: its array, chunk index, the networks it holds and why."""

    array: str
    chunk: tuple[int, ...]
    networks: tuple[int, ...]
    reason: str

    def line(self) -> str:
        idx = ".".join(map(str, self.chunk)) or "0"
        nets = (f"networks {self.networks[0]}..{self.networks[-1]}" if len(self.networks) > 1
                else f"network {self.networks[0]}" if self.networks else "all networks")
        return f"chunk {self.array}/{idx} ({nets}): {self.reason}"


@dataclass
class VerifyReport:
    """What ``verify`` found: corruption (``ok``), completeness and stray files.

    ``broken``: networks flagged complete whose chunks cannot be read (or hold NaN/Inf),
    index → reasons (``ingest --redo-broken`` recollects them); ``broken_chunks``: every
    unreadable chunk of every array; ``problems``: store-level ones (shapes, ``n_blocks``).
    """

    url: str
    checked_chunks: int
    problems: list[str]
    broken: dict[int, list[str]]
    broken_chunks: list[BrokenChunk] = field(default_factory=list)
    n_complete: int = 0
    n_networks: int = 0
    partial_files: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No corruption: every chunk decodes, shapes agree, no flagged network is broken."""
        return not self.problems and not self.broken and not self.broken_chunks

    @property
    def complete(self) -> bool:
        """Every planned network is flagged complete."""
        return self.n_complete == self.n_networks

    def lines(self, archs: Sequence[str]) -> list[str]:
        status = "OK" if self.ok else (f"{len(self.broken_chunks)} broken chunk(s), "
                                       f"{len(self.broken)} broken network(s)")
        out = [f"verify {self.url}: {self.checked_chunks} chunks read, {status}",
               f"  {self.n_complete} of {self.n_networks} networks complete"]
        out += [f"  store: {p}" for p in self.problems]
        out += [f"  {c.line()}" for c in self.broken_chunks]
        for n, why in sorted(self.broken.items()):
            out.append(f"  network {n} ({archs[n]}): {'; '.join(why)}")
        out += [f"  partial file left by an interrupted write: {f}" for f in self.partial_files]
        if self.broken:
            out.append("  repair with: eznas-store ingest ... --redo-broken (same options as the original run)")
        if any(c.array not in WRITTEN for c in self.broken_chunks):
            out.append("  a plan table is broken: --redo-broken cannot rewrite it; ingest into a new store")
        return out


def metadata_problems(store: Store) -> list[str]:
    """Each array's own ``zarr.json`` present and agreeing with the consolidated copy in the root.

    eznas-store opens stores through the consolidated metadata, so a lost or damaged
    ``<array>/zarr.json`` would go unnoticed here, yet a reader that skips the consolidated
    copy (``xarray.open_zarr(..., consolidated=False)``, zarr without it) would lose the array.
    Local stores only (a listing of a remote store costs a request per array)."""
    import json

    root = store.url
    if "://" in root or not os.path.isdir(root):
        return []
    out = []
    for name in sorted(store.group.array_keys()):
        path = os.path.join(root, name, "zarr.json")
        try:
            with open(path, encoding="utf-8") as f:
                own = json.load(f)
        except FileNotFoundError:
            out.append(f"array {name!r}: its metadata file {name}/zarr.json is missing (only the consolidated "
                       "copy in the root remains)")
            continue
        except (OSError, ValueError, RecursionError) as e:
            out.append(f"array {name!r}: its metadata file {name}/zarr.json is unreadable ({type(e).__name__})")
            continue
        meta = store.group[name].metadata
        if not isinstance(own, dict) or own.get("shape") != list(meta.shape):
            out.append(f"array {name!r}: {name}/zarr.json disagrees with the consolidated metadata")
    return out


def verify_store(store: Store, layout: Layout | None = None, *, arrays: Sequence[str] | None = None) -> VerifyReport:
    """Read every chunk of every array; check shapes against the layout and values for NaN/Inf.

    ``layout`` is the plan's layout as its search space gives it (``ingest.layout.plan_layout``);
    without it, array widths are checked against those recorded at creation and
    ``n_blocks`` against the block table. An unreadable chunk of an array ingest writes
    breaks every flagged network in it (a network not flagged complete is missing, not
    broken). ``arrays``: read only these (a quick check of some arrays; shapes and stray
    files are then not checked).
    """
    g = store.group
    names = sorted(g.array_keys()) if arrays is None else list(arrays)
    problems = (_shape_problems(store, layout) + table_problems(store) + metadata_problems(store)
                if arrays is None else [])
    done = _flags(store)
    owners = _block_owners(store)
    broken: dict[int, list[str]] = defaultdict(list)
    bad: list[BrokenChunk] = []
    checked = 0
    for name in names:
        try:
            keys = chunk_keys(g[name])
        except Exception as e:  # the listing itself fails: every chunk is read as before
            problems.append(f"array {name!r}: its chunks cannot be listed ({type(e).__name__})")
            keys = None
        for chunk, sl, values in _chunks(g[name]):
            checked += 1
            nets = _networks_of(g[name], sl, owners)
            if keys is not None and g[name].metadata.encode_chunk_key(chunk) not in keys:
                why = absent_problem(store, name, chunk, done[sl[0]] if name in WRITTEN else None)
                if why:
                    bad.append(BrokenChunk(name, chunk, nets, why))
                    _mark_broken(broken, name, nets, done, "missing", "missing")
                continue  # absent and nothing lost: fill values, nothing to check
            if isinstance(values, Exception):
                bad.append(BrokenChunk(name, chunk, nets, f"unreadable ({type(values).__name__}: "
                                                          f"{str(values)[:80]})"))
                _mark_broken(broken, name, nets, done, type(values).__name__)
            elif name in TENSOR_ARRAYS and values.ndim == 2:
                rows = ~np.isfinite(values).all(axis=1)
                for k in np.flatnonzero(rows & done[sl[0]]):
                    broken[sl[0].start + int(k)].append(f"{name} holds NaN/Inf")
    return VerifyReport(url=store.url, checked_chunks=checked, problems=problems, broken=dict(broken),
                        broken_chunks=bad, n_complete=int(done.sum()), n_networks=store.n_networks,
                        partial_files=stray_files(store.url) if arrays is None else [])


def _chunks(a: Any) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...], Any]]:
    """(chunk index, its selection, its values or the exception reading it) of every chunk."""
    for idx in itertools.product(*(range(n) for n in a.cdata_shape)):
        sl = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(idx, a.chunks, a.shape))
        try:
            values: Any = np.asarray(a[sl])
        except Exception as e:
            values = e
        yield idx, sl, values


def _flags(store: Store) -> np.ndarray:
    """Completion flags in one read; chunk by chunk (unreadable: not complete) if that fails."""
    try:
        return np.asarray(store.group["complete"][:], dtype=bool)
    except Exception:
        return store.complete()


def _block_owners(store: Store) -> np.ndarray | None:
    """The network of every block (None if the block table cannot be read)."""
    try:
        return np.asarray(store.group["block_network"][:])
    except Exception:
        return None


def _networks_of(a: Any, sl: tuple[slice, ...], owners: np.ndarray | None) -> tuple[int, ...]:
    """The networks a chunk holds: its rows on dim ``network``, its blocks' owners on dim
    ``block``; () for arrays of neither (the data batch: every network)."""
    dims = tuple(getattr(a.metadata, "dimension_names", None) or ())
    if not sl or not dims:
        return ()
    if dims[0] == "network":
        return tuple(range(sl[0].start, sl[0].stop))
    if dims[0] == "block" and owners is not None:
        return tuple(int(n) for n in np.unique(owners[sl[0]]))
    return ()


def _mark_broken(broken: dict[int, list[str]], name: str, nets: tuple[int, ...], done: np.ndarray,
                 why: str, state: str = "unreadable") -> None:
    """An unreadable (or missing) chunk of an array ingest writes breaks its networks (flags:
    all of them)."""
    if name == "complete":
        for k in nets:
            broken[k].append(f"completion flags {state} ({why})")
    elif name in WRITTEN:
        for k in nets:
            if done[k]:
                broken[k].append(f"{name} chunk {state}" + (f" ({why})" if why != state else ""))


def stray_files(url: str) -> list[str]:
    """Temporary files (``*.partial``) under a local store, relative to it; [] for remote URLs."""
    if "://" in url and not url.startswith("file://"):
        return []
    root = url[len("file://"):] if url.startswith("file://") else url
    out = []
    for dirpath, _, files in os.walk(root):
        out += [os.path.relpath(os.path.join(dirpath, f), root) for f in files if f.endswith(STRAY_SUFFIXES)]
    return sorted(out)


def _shape_problems(store: Store, layout: Layout | None) -> list[str]:
    """Stored arrays missing or of the wrong width; ``n_blocks`` not what the layout says."""
    problems: list[str] = []
    n = store.n_networks
    if not store.plan.statistics:  # a proxies-only store: no tensors, no blocks
        return [f"array {a!r} is missing" for a in ("complete", "proxy_value", "proxy_reason")
                if not store.has_array(a)]
    widths = layout.widths if layout is not None else store.meta["layout"]["widths"]
    for stored in STORED:
        name = store.array_names[stored]
        want = (n, max(int(widths[ARRAY_FAMILY[stored]]), 1))
        if not store.has_array(name):
            problems.append(f"array {name!r} is missing")
        elif tuple(store.group[name].shape) != want:
            problems.append(f"array {name!r} has shape {tuple(store.group[name].shape)}, the plan needs {want}")
    try:
        nb = store.column("n_blocks")
        want_nb = layout.n_blocks if layout is not None else np.bincount(store.column("block_network"), minlength=n)
        if not np.array_equal(nb, want_nb):
            problems.append("n_blocks differs from the plan's layout")
    except Exception as e:
        problems.append(f"n_blocks cannot be read ({type(e).__name__})")
    return problems


def table_problems(store: Store) -> list[str]:
    """The tables disagree with their commit marker (``tables_sha256``, written when they were
    filled) or with the plan in the attributes they were made from. A table whose chunks cannot
    be read is reported as a broken chunk instead."""
    g, p = store.group, store.plan
    creation = g.attrs.get(CREATION)
    problems: list[str] = []
    if isinstance(creation, dict) and isinstance(creation.get("tables"), list):
        if stored_tables_sha256(g, creation["tables"]) not in (None, creation.get("tables_sha256")):
            problems.append("the tables do not match their commit marker (changed after creation)")
    want = {"arch": np.asarray(p.archs, dtype=object), "bench_index": np.asarray(p.bench_index, dtype=np.int64),
            "accuracy": np.asarray(p.accuracies.get(p.accuracy_column, ()), dtype=np.float64),
            **{c: np.asarray(v, dtype=np.float64) for c, v in p.accuracies.items() if c != "accuracy"}}
    for name, values in want.items():
        try:
            have = np.asarray(g[name][...])
        except Exception:  # missing or unreadable: _shape_problems / the chunk reads say so
            continue
        if have.shape != values.shape:
            problems.append(f"table {name!r} has shape {have.shape}, the plan has {values.shape}")
            continue
        same = (np.array([str(x) for x in have]) == np.array([str(x) for x in values]) if values.dtype == object
                else np.isclose(have.astype(np.float64), values.astype(np.float64), rtol=0, atol=0, equal_nan=True))
        if not same.all():
            bad = np.flatnonzero(~same)
            problems.append(f"table {name!r} differs from the plan's at {bad.size} network(s) (first: {int(bad[0])})")
    return problems


def codec_line(codec: str) -> str:
    """How the float32 tensor arrays are encoded, for ``info``."""
    kind, arg = parse_codec(codec)
    if arg is None:
        return "lossless (Blosc zstd, CRC32C)"
    blosc = f"relative error <= 2^-{arg}, then Blosc zstd level {codec_level(codec)}, CRC32C"
    how = {"bitround": f"BitRound keeps {arg} mantissa bits, {blosc}",
           "sumround": f"{arg} mantissa bits, each block tensor rounded so its sum keeps its value, {blosc}",
           "zfp": f"ZFP fixed accuracy, absolute error <= {arg:g}, then CRC32C"}
    return f"{codec} (tensors: {how[kind]}; P kept as P - D)"


def intact_networks(store: Store) -> tuple[np.ndarray, int, int]:
    """Networks flagged complete whose chunks all exist; how many flagged ones lack a chunk;
    how many table chunks are missing (one listing per array: cheap, unlike ``verify``)."""
    complete = store.complete()
    lost = np.zeros_like(complete)
    tables = 0
    for name, idx, _ in missing_chunks(store):
        if name in WRITTEN:
            lo, hi = rows_of(store.group[name], idx)
            lost[lo:hi] |= complete[lo:hi]
        else:
            tables += 1
    return complete & ~lost, int(lost.sum()), tables


def store_summary(store: Store) -> str:
    """Human-readable summary for ``eznas-store info``."""
    p = store.plan
    complete, lost, tables = intact_networks(store)
    acc = np.asarray(store.group["accuracy"][:], dtype=np.float64)
    lines = [
        f"store        {store.url}",
        f"space        {p.space} (C={p.C}, N={p.N}), dataset {p.dataset} ({p.image_size} px, {p.num_classes} classes)",
        f"benchmark    {p.benchmark or '(none)'}; fitness target column '{p.accuracy_column}'",
        f"contents     {'statistics and proxies' if p.proxies else 'statistics'}" if p.statistics else
        "contents     proxies only (no statistics: eznas-store ingest --no-statistics / proxy-table)",
        f"collection   batch {p.collect.batch_size}, structure {p.collect.structure}, "
        f"perturb scale {p.collect.perturb_scale:.4g}, seed {p.collect.seed}",
        *([f"codec        {codec_line(p.codec)}"] if p.statistics else []),
        f"networks     {store.n_networks} planned, {int(complete.sum())} complete, "
        f"{store.n_networks - int(complete.sum())} missing; {len(store.chunk_ranges())} chunks of "
        f"{store.chunk_networks}" + (f"; {lost} flagged complete but missing chunks: run 'eznas-store verify'"
                                     if lost else ""),
        *_blocks_line(store), *proxy_lines(p),
    ]
    if tables:
        lines.append(f"damaged      {tables} table chunk(s) missing: run 'eznas-store verify'")
    if np.isfinite(acc).any():
        lines.append(f"accuracy     min {np.nanmin(acc):.2f}  mean {np.nanmean(acc):.2f}  max {np.nanmax(acc):.2f}"
                     f"  ({p.accuracy_column})")
        best = int(np.nanargmax(acc))
        lines.append(f"best         {p.archs[best]}  {acc[best]:.2f}")
    size = dir_bytes(store.url)
    if size is not None and complete.any():
        lines.append(f"on disk      {size / 2**20:.1f} MiB ({size / max(int(complete.sum()), 1) / 2**20:.2f} MiB "
                     "per complete network)")
    if p.statistics:
        lines.append(f"terminals    {len(TERMINALS)}: {', '.join(TERMINALS)}")
    lines.append(f"runs         {len(store.runs())} ingest run(s) recorded")
    return "\n".join(lines)


def _blocks_line(store: Store) -> list[str]:
    """The block count line of a store with statistics (none for a proxies-only store)."""
    if not store.plan.statistics:
        return []
    nb = np.asarray(store.group["n_blocks"][:])
    return [f"blocks       {int(nb.sum())} in all, {nb.min()}..{nb.max()} per network (mean {nb.mean():.1f})"]


def proxy_lines(p: Any) -> list[str]:
    """``info``'s lines on a plan's proxies: names, proxy batch, label sets, what was joined."""
    if not p.proxies and not p.suitezero_proxies:
        return ["proxies      none"]
    batch = p.proxy_batch_size or p.collect.batch_size
    out = [f"proxies      {len(p.proxies)} (proxy batch {batch}): {', '.join(p.proxies)}"]
    if p.label_sets:
        out.append("label sets   " + ", ".join(f"{n} ({c} classes, {col})" for n, c, col in p.label_sets))
    if p.suitezero_proxies:
        out.append(f"joined       {len(p.suitezero_proxies)} from Suite-Zero ({p.suitezero}): "
                   f"{', '.join(p.suitezero_proxies)}")
    return out
