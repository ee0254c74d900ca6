"""Checking and describing a store: ``eznas-store verify`` and ``eznas-store info``.

``verify_store`` reads every chunk of every flagged network, so a corrupted chunk file
is named (with its networks) before evaluation trips over it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eznas_store.store.group import dir_bytes
from eznas_store.store.layout import ARRAY_FAMILY, Layout
from eznas_store.store.reader import Store
from eznas_store.terminals import STORED, TERMINALS


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


def verify_store(store: Store, layout: Layout | None = None) -> VerifyReport:
    """Check shapes against the layout, completion flags and that every chunk decodes.

    ``layout`` is the plan's layout as its search space gives it (``ingest.layout.plan_layout``);
    without it, array widths are checked against those recorded at creation and
    ``n_blocks`` against the block table. A chunk that cannot be read breaks every network
    in it; a network not flagged complete is reported as missing (not broken) by ``info``,
    so only flagged networks are checked.
    """
    problems = _shape_problems(store, layout)
    broken: dict[int, list[str]] = defaultdict(list)
    flags = store.group["complete"]
    chunks = store.chunk_ranges()
    for lo, hi in chunks:
        _check_chunk(store, flags, lo, hi, broken)
    return VerifyReport(url=store.url, checked_chunks=len(chunks), problems=problems, broken=dict(broken))


def _shape_problems(store: Store, layout: Layout | None) -> list[str]:
    """Stored arrays missing or of the wrong width; ``n_blocks`` not what the layout says."""
    problems: list[str] = []
    n = store.n_networks
    widths = layout.widths if layout is not None else store.meta["layout"]["widths"]
    for name in STORED:
        want = (n, max(int(widths[ARRAY_FAMILY[name]]), 1))
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


def _check_chunk(store: Store, flags: Any, lo: int, hi: int, broken: dict[int, list[str]]) -> None:
    """Add to ``broken`` each flagged network of chunk ``lo..hi`` whose values cannot be read
    or are not finite (``flags``: the ``complete`` array)."""
    try:
        done = np.asarray(flags[lo:hi], dtype=bool)
    except Exception as e:
        for k in range(lo, hi):
            broken[k].append(f"completion flags unreadable ({type(e).__name__})")
        return
    if not done.any():
        return
    for name in [*STORED, "params", "flops"] + (["proxy_value"] if store.plan.proxies else []):
        if not store.has_array(name):
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
