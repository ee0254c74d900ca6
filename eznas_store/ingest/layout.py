"""The store a plan needs: its layout, predicted by the plan's search space, the store made
with it (or joined, when another shard or an earlier run made it already), and which of its
chunks a shard still has to collect."""

from __future__ import annotations

import numpy as np

from eznas_store.sources import get_space
from eznas_store.store import create_store, open_for_plan
from eznas_store.store import Layout, compute_layout
from eznas_store.store import StorePlan
from eznas_store.store import Store


def plan_layout(plan: StorePlan) -> Layout:
    """The layout of ``plan``'s store: every network's blocks as its search space predicts them."""
    B = plan.collect.batch_size
    if not plan.statistics:  # a proxies-only store: no blocks, rows of proxies only
        return compute_layout([() for _ in plan.archs], batch_size=B, chunk_networks=plan.chunk_networks)
    space = get_space(plan.space)
    networks = [space.block_specs(arch, batch_size=B, image_size=plan.image_size, C=plan.C, N=plan.N,
                                  structure=plan.collect.structure) for arch in plan.archs]
    return compute_layout(networks, batch_size=B, chunk_networks=plan.chunk_networks)


def create_or_open(url: str, plan: StorePlan, *, data_batch: np.ndarray | None = None,
                   data_labels: np.ndarray | None = None, storage_options: dict | None = None,
                   suitezero_values: np.ndarray | None = None, proxy_info: dict | None = None) -> Store:
    """Create the store for ``plan``, or open it if it already holds the same plan.

    Shards of one job call this concurrently; they all write identical metadata, so a
    race is benign. A store made with a different plan is refused with the difference.
    The layout is computed only when the store must be made.
    """
    store = open_for_plan(url, plan, storage_options)
    if store is not None:
        return store
    return create_store(url, plan, plan_layout(plan), data_batch=data_batch, data_labels=data_labels,
                        storage_options=storage_options, suitezero_values=suitezero_values, proxy_info=proxy_info)


def shard_todo(store: Store, shard: tuple[int, int], complete: np.ndarray,
               redo: set[int] | None) -> tuple[list[tuple[int, int]], int]:
    """This shard's chunks still to collect (incomplete, or holding a network to redo), and
    how many of its networks are skipped as complete."""
    i, n_shards = shard
    mine = [r for c, r in enumerate(store.chunk_ranges()) if c % n_shards == i]
    todo = [r for r in mine if not complete[r[0]:r[1]].all() or (redo and any(k in redo for k in range(*r)))]
    skipped = sum(hi - lo for lo, hi in mine) - sum(hi - lo for lo, hi in todo)
    return todo, skipped
