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
from dataclasses import dataclass

import numpy as np
import torch

from eznas_store.collect.statistics import DEFAULT_PERTURB_SCALE, CollectConfig, collect, network_seed, resolve_device
from eznas_store.errors import ConfigError
from eznas_store.sources.spaces import get_space
from eznas_store.store.zarr_store import Store, StorePlan, create_or_open, package_versions, plan_to_json


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    """One ingest job, validated at the edge (CLI or job file) and recorded in the store."""

    store: str
    dataset: str
    space: str = "nb201"
    benchmark: str | None = None
    data_root: str | None = None
    networks: int | None | tuple[str, ...] = None  # count, explicit cells, or None (all)
    seed: int = 0
    batch_size: int = 1
    structure: str = "rcb"
    perturb_scale: float = DEFAULT_PERTURB_SCALE
    shard: tuple[int, int] = (0, 1)
    device: str = "auto"
    chunk_networks: int = 0
    accuracy_column: str | None = None
    image_size: int | None = None  # only for datasets whose size is free (digits)
    C: int | None = None
    N: int | None = None
    proxies: bool = True  # also compute the 13 hand-crafted proxies (same networks, batch, init)
    #: batch of the proxies (0: the statistics batch); NASLib/Suite-Zero used 64 on CIFAR-10
    proxy_batch_size: int = 0
    #: recollect the networks ``verify`` finds broken (unreadable chunks), even if flagged
    redo_broken: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        i, n = self.shard
        if not (n >= 1 and 0 <= i < n):
            raise ConfigError(f"--shard must be I/N with 0 <= I < N, got {i}/{n}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"--device must be auto, cpu or cuda[:k], got {self.device!r}")
        if isinstance(self.networks, int) and self.networks < 1:
            raise ConfigError(f"--networks must be at least 1, got {self.networks}")
        if self.chunk_networks < 0:
            raise ConfigError("--chunk-networks must be >= 0 (0 chooses automatically)")


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` → ``(2, 8)``; shards count from 0 like Slurm array indices."""
    try:
        i, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard must be I/N with 0 <= I < N, got {text!r}")
    return i, n


def proxy_batch(cfg: IngestConfig, plan: StorePlan):
    """The proxies' own seeded batch when ``proxy_batch_size`` differs from the statistics'."""
    from eznas_store.sources import datasets

    return datasets.sample_batch(cfg.dataset, cfg.data_root, batch_size=cfg.proxy_batch_size, seed=cfg.seed,
                                 image_size=plan.image_size)


def plan_ingest(cfg: IngestConfig) -> tuple[StorePlan, np.ndarray, np.ndarray]:
    """Resolve the network list, accuracies and data batch into a ``StorePlan``."""
    from eznas_store.sources import datasets, tables as benchmarks

    space = get_space(cfg.space)
    spec = datasets.get_spec(cfg.dataset)
    image_size = cfg.image_size or spec.image_size
    if cfg.benchmark:
        table = benchmarks.read_benchmark(cfg.benchmark)
        archs_arg = list(cfg.networks) if isinstance(cfg.networks, tuple) else None
        count = cfg.networks if isinstance(cfg.networks, int) else None
        if archs_arg is not None:
            archs_arg = [space.canonical(a) for a in archs_arg]
        rows = benchmarks.select_networks(table, networks=count, archs=archs_arg, seed=cfg.seed)
        archs = tuple(space.canonical(table.archs[r]) for r in rows)
        bench_index = tuple(int(table.index[r]) for r in rows)
        acc_col = cfg.accuracy_column or benchmarks.default_accuracy_column(table, cfg.dataset)
        table.column(acc_col)  # clear error if unknown
        accuracies = {c: tuple(float(v) for v in np.asarray(table.columns[c])[rows]) for c in table.columns}
        benchmark = os.path.abspath(cfg.benchmark)
    else:
        everything = list(space.all_archs())
        if isinstance(cfg.networks, tuple):
            archs = tuple(space.canonical(a) for a in cfg.networks)
        elif isinstance(cfg.networks, int):
            pick = np.sort(np.random.default_rng(cfg.seed).choice(len(everything), cfg.networks, replace=False))
            archs = tuple(everything[i] for i in pick)
        else:
            archs = tuple(everything)
        lookup = {a: i for i, a in enumerate(everything)}
        bench_index = tuple(lookup.get(a, -1) for a in archs)
        acc_col = "none"
        accuracies = {"none": tuple(float("nan") for _ in archs)}
        benchmark = ""
    batch = datasets.sample_batch(cfg.dataset, cfg.data_root, batch_size=cfg.batch_size, seed=cfg.seed,
                                  image_size=image_size)
    plan = StorePlan(
        space=cfg.space, dataset=cfg.dataset, archs=archs, bench_index=bench_index,
        accuracy_column=acc_col, accuracies=accuracies,
        collect=CollectConfig(batch_size=cfg.batch_size, structure=cfg.structure,
                              perturb_scale=cfg.perturb_scale, seed=cfg.seed),
        image_size=image_size, num_classes=spec.num_classes,
        C=cfg.C or space.skeleton["C"], N=cfg.N or space.skeleton["N"],
        benchmark=benchmark, data_root=os.path.abspath(cfg.data_root) if cfg.data_root else "",
        batch_indices=tuple(int(i) for i in batch.indices), chunk_networks=cfg.chunk_networks,
        proxies=_proxy_names() if cfg.proxies else (),
        proxy_batch_size=cfg.proxy_batch_size if cfg.proxies and cfg.proxy_batch_size else 0,
    )
    return plan, batch.images.numpy(), batch.labels.numpy()


def _proxy_names() -> tuple[str, ...]:
    from eznas_store.collect.proxies import PROXY_NAMES

    return tuple(PROXY_NAMES)


def network_factory(plan: StorePlan, n: int):
    """``seed -> network n`` with EZNAS's init: what the collector and the proxies both use."""
    from eznas_store.collect.statistics import reinitialise

    space = get_space(plan.space)

    def factory(seed: int):
        model = space.build(plan.archs[n], num_classes=plan.num_classes, C=plan.C, N=plan.N,
                            structure=plan.collect.structure)
        reinitialise(model, torch.Generator().manual_seed(int(seed)))
        return model

    return factory


def proxies_for_network(plan: StorePlan, n: int, data: torch.Tensor, labels: torch.Tensor,
                        device: torch.device) -> dict[str, tuple[float, str | None]]:
    """The plan's hand-crafted proxies of network ``n`` on the run's batch and init seed."""
    from eznas_store.collect.statistics import deterministic
    from eznas_store.collect.proxies import compute_all

    # same pinned threads as the statistics: the values' last bits follow the reduction order
    with deterministic(plan.collect.threads):
        return compute_all(network_factory(plan, n), data, labels, seed=network_seed(plan.collect.seed, n),
                           names=plan.proxies, device=device)


def collect_network(store_or_plan: Store | StorePlan, n: int, data: torch.Tensor, device: torch.device):
    """Build and collect network ``n`` of a plan (the same function ingest and tests use)."""
    plan = store_or_plan.plan if isinstance(store_or_plan, Store) else store_or_plan
    space = get_space(plan.space)
    model = space.build(plan.archs[n], num_classes=plan.num_classes, C=plan.C, N=plan.N,
                        structure=plan.collect.structure)
    return collect(model, data, config=plan.collect, init_seed=network_seed(plan.collect.seed, n),
                   device=device)


@dataclass
class IngestReport:
    store: str
    shard: tuple[int, int]
    done: int
    skipped: int
    seconds: float

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 and self.done else 0.0
        return (f"ingest shard {self.shard[0]}/{self.shard[1]}: {self.done} networks collected, "
                f"{self.skipped} already complete, {self.seconds:.1f} s ({rate:.2f} networks/s) → {self.store}")


def run_ingest(cfg: IngestConfig, *, redo: set[int] | None = None) -> IngestReport:
    """Collect every network of this shard that the store does not hold yet."""
    t0 = time.perf_counter()
    device = resolve_device(cfg.device)
    plan, batch, labels = plan_ingest(cfg)
    store = create_or_open(cfg.store, plan, data_batch=batch, data_labels=labels)
    run_id = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    store.record_run(run_id, {
        "command": "ingest", "config": dataclasses.asdict(cfg), "plan": plan_to_json(plan) | {"archs": len(plan.archs)},
        "versions": package_versions(), "host": socket.gethostname(), "device": str(device),
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(),
    })
    data = torch.from_numpy(store.data_batch())
    stored_labels = store.data_labels()
    data_labels = torch.from_numpy(stored_labels) if stored_labels is not None else None
    p_data, p_labels = data, data_labels
    if plan.proxies and plan.proxy_batch_size:
        pb = proxy_batch(cfg, plan)
        p_data, p_labels = pb.images, pb.labels
    complete = store.complete()
    if cfg.redo_broken:
        from eznas_store.store.zarr_store import verify_store

        redo = set(redo or ()) | set(verify_store(store).broken)
    i, n_shards = cfg.shard
    mine = [r for c, r in enumerate(store.chunk_ranges()) if c % n_shards == i]
    todo = [r for r in mine if not complete[r[0]:r[1]].all() or (redo and any(k in redo for k in range(*r)))]
    skipped = sum(hi - lo for lo, hi in mine) - sum(hi - lo for lo, hi in todo)
    total = sum(hi - lo for lo, hi in todo)
    from tqdm.auto import tqdm

    done = 0
    with tqdm(total=total, desc=f"ingest {i}/{n_shards}", unit="net", disable=not cfg.progress) as bar:
        for lo, hi in todo:
            results, proxy_values = [], []
            for n in range(lo, hi):
                results.append(collect_network(store, n, data, device))
                if plan.proxies:
                    proxy_values.append(proxies_for_network(plan, n, p_data, p_labels, device))
                bar.update(1)
            store.write_chunk(lo, results, proxy_values or None)
            done += hi - lo
    return IngestReport(store=cfg.store, shard=cfg.shard, done=done, skipped=skipped,
                        seconds=time.perf_counter() - t0)
