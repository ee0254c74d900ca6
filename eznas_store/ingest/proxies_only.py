"""A proxies-only collection (``ingest --no-statistics``, ``proxy-table``): proxies network by network.

The store is the one ingest makes (same plan, tables, checksums, shards, ``verify``), without
tensor arrays or a block table: per network its proxy values (per label set where the plan
has label sets), the reasons of those that failed, its seconds and its completion flag.
Proxies are cheap next to statistics but a full NB201 run is still hours on a CPU, so each
network is written as soon as it is computed (``store.write_proxy_rows``): a killed run
loses one network, and a rerun with the same options continues with the next.
``--redo-broken`` recomputes the chunks that ``verify`` finds broken, each written whole
(a damaged chunk is replaced without being read). ``max_seconds`` stops between networks.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from eznas_store.ingest.config import IngestConfig
from eznas_store.ingest.layout import plan_layout, shard_todo
from eznas_store.ingest.networks import network_proxies
from eznas_store.store import Store, StorePlan, verify_store, write_proxy_rows

__all__ = ["collect_proxies_only"]


def collect_proxies_only(store: Store, cfg: IngestConfig, plan: StorePlan, device: torch.device,
                         redo: set[int] | None) -> tuple[int, int, str]:
    """Compute and write this shard's networks not yet complete: (networks collected, networks
    skipped as complete, why it stopped early or '')."""
    images = torch.from_numpy(store.data_batch())
    stored = store.data_labels()
    labels = torch.from_numpy(stored) if stored is not None else None
    complete = store.complete()
    if cfg.redo_broken:
        redo = set(redo or ()) | set(verify_store(store, plan_layout(plan)).broken)
    todo, skipped = shard_todo(store, cfg.shard, complete, redo)
    whole = [(lo, hi) for lo, hi in todo if redo and any(k in redo for k in range(lo, hi))]
    nets = sum(hi - lo for lo, hi in whole) + sum(int((~complete[lo:hi]).sum()) for lo, hi in todo
                                                   if (lo, hi) not in whole)
    skipped += sum(hi - lo for lo, hi in todo) - nets
    i, n_shards = cfg.shard
    done, t0 = 0, time.perf_counter()

    def one(n: int) -> tuple[object, float]:
        c0 = time.perf_counter()
        return network_proxies(plan, n, images, labels, device), time.perf_counter() - c0

    with tqdm(total=nets, desc=f"proxies {i}/{n_shards}", unit="net", disable=not cfg.progress) as bar:
        for lo, hi in todo:
            rows = range(lo, hi) if (lo, hi) in whole else np.flatnonzero(~complete[lo:hi]) + lo
            got = []
            for n in rows:
                if cfg.max_seconds and time.perf_counter() - t0 >= cfg.max_seconds:
                    return done, skipped, f"--max-seconds {cfg.max_seconds:g} reached"
                got.append(one(int(n)))
                if (lo, hi) not in whole:  # each network as soon as it is computed
                    write_proxy_rows(store, int(n), [got[-1][0]], [got[-1][1]])
                    done += 1
                bar.update(1)
            if (lo, hi) in whole:  # a chunk to redo: written whole, never read
                write_proxy_rows(store, lo, [v for v, _ in got], [s for _, s in got])
                done += hi - lo
    return done, skipped, ""
