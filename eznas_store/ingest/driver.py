"""``eznas-store ingest``: benchmark table + dataset → networks → statistics → store.

One call handles one shard (``shard=(i, n)`` takes every n-th chunk starting at i), so a
Slurm array of n jobs fills one store with direct region writes and no merge step.
Chunks already flagged complete are skipped, so rerunning a killed job finishes it.

Example
-------
>>> cfg = IngestConfig(benchmark="nb201_accuracies.csv", dataset="cifar10",
...                    data_root="cifar10-images", networks=20, store="s.zarr")  # doctest: +SKIP
>>> run_ingest(cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from eznas_store.collect import resolve_device
from eznas_store.ingest.config import IngestConfig
from eznas_store.ingest.estimate import IngestEstimate, estimate_ingest
from eznas_store.ingest.layout import create_or_open, plan_layout, shard_todo
from eznas_store.ingest.networks import collect_network, network_arrays, network_proxies, proxy_cards
from eznas_store.ingest.job import own_proxy_batch, plan_store, proxy_batch
from eznas_store.ingest.proxies_only import collect_proxies_only
from eznas_store.outputs import ensure_dir, exclusive, package_versions
from eznas_store.store import normalise_url
from eznas_store.store import StorePlan, plan_to_json
from eznas_store.store import Store
from eznas_store.store import verify_store
from eznas_store.store import record_run, write_chunk



@dataclass
class IngestReport:
    """What one shard's run did: networks collected, networks found complete, wall time."""

    store: str
    shard: tuple[int, int]
    done: int
    skipped: int
    seconds: float
    #: why it stopped before every network was collected ('' when it did not: ``max_seconds``)
    stopped: str = ""

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 and self.done else 0.0
        more = f" ({self.stopped}; rerun to continue)" if self.stopped else ""
        return (f"ingest shard {self.shard[0]}/{self.shard[1]}: {self.done} networks collected, "
                f"{self.skipped} already complete, {self.seconds:.1f} s ({rate:.2f} networks/s) → {self.store}{more}")


def run_ingest(cfg: IngestConfig, *, redo: set[int] | None = None,
               on_plan: Callable[[IngestEstimate], None] | None = None) -> IngestReport:
    """Collect every network of this shard that the store does not hold yet.

    ``on_plan`` sees the plan's estimate (networks, bytes, time) before the store is
    created or anything collected; it may raise to refuse the plan (the CLI does). The
    collection holds this shard's one-writer lock (:func:`shard_lock`) throughout.
    """
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    planned = plan_store(cfg)
    plan = planned.plan
    if on_plan is not None:
        on_plan(estimate_ingest(cfg, plan))
    with shard_lock(cfg.store, cfg.shard):
        store = create_or_open(cfg.store, plan, data_batch=planned.images, data_labels=planned.labels,
                               suitezero_values=planned.suitezero_values, proxy_info=proxy_cards(plan))
        _record_run(store, cfg, plan, device)
        collect = _collect if plan.statistics else collect_proxies_only
        done, skipped, stopped = collect(store, cfg, plan, device, redo)
    return IngestReport(store=cfg.store, shard=cfg.shard, done=done, skipped=skipped,
                        seconds=time.perf_counter() - t0, stopped=stopped)


def shard_lock(url: str, shard: tuple[int, int]):
    """The one-writer lock of one shard of a local store (remote URLs are not locked).

    A whole-store run (shard 0/1) locks ``<store>.lock``; shard I/N locks
    ``<store>.shard-I-of-N.lock``, so the shards of one store run side by side (each writes
    its own chunks) while a second run of the same shard is refused in one line naming the
    holder (runs of one store with different N are not kept apart: use one N per store).
    The store's parent folder is made here (zarr would make it anyway).
    """
    local = normalise_url(url).rstrip("/") or str(url)  # a URL that cannot name a store: one line here
    if "://" in local:
        return exclusive(local, "store")
    i, n = shard
    ensure_dir(Path(os.path.abspath(local)).parent, "folder of --store")
    if n == 1:
        return exclusive(local, "store")
    return exclusive(f"{local}.shard-{i}-of-{n}", "store shard")


def _collect(store: Store, cfg: IngestConfig, plan: StorePlan, device: torch.device,
             redo: set[int] | None) -> tuple[int, int, str]:
    """Collect this shard's chunks still to do: (networks collected, networks skipped, why it
    stopped early or '')."""
    data = torch.from_numpy(store.data_batch())
    stored_labels = store.data_labels()
    data_labels = torch.from_numpy(stored_labels) if stored_labels is not None else None
    p_data, p_labels = data, data_labels
    if own_proxy_batch(plan):
        pb = proxy_batch(cfg, plan)
        p_data, p_labels = pb.images, pb.labels
    complete = store.complete()
    if cfg.redo_broken:
        redo = set(redo or ()) | set(verify_store(store, plan_layout(plan)).broken)
    todo, skipped = shard_todo(store, cfg.shard, complete, redo)
    i, n_shards = cfg.shard
    done, t0, stopped = 0, time.perf_counter(), ""
    with tqdm(total=sum(hi - lo for lo, hi in todo), desc=f"ingest {i}/{n_shards}", unit="net",
              disable=not cfg.progress) as bar:
        for lo, hi in todo:
            if cfg.max_seconds and time.perf_counter() - t0 >= cfg.max_seconds:
                stopped = f"--max-seconds {cfg.max_seconds:g} reached"
                break
            networks, proxy_values = [], []
            for n in range(lo, hi):
                networks.append(network_arrays(collect_network(store, n, data, device)))
                if plan.proxies:
                    proxy_values.append(network_proxies(plan, n, p_data, p_labels, device))
                bar.update(1)
            write_chunk(store, lo, networks, proxy_values or None)
            done += hi - lo
    return done, skipped, stopped


def _record_run(store: Store, cfg: IngestConfig, plan: StorePlan, device: torch.device) -> None:
    """Keep this run's configuration, versions and host in the store, under a fresh run id."""
    run_id = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    record_run(store, run_id, {
        "command": "ingest", "config": dataclasses.asdict(cfg), "plan": plan_to_json(plan) | {"archs": len(plan.archs)},
        "versions": package_versions(), "host": socket.gethostname(), "device": str(device),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    })
