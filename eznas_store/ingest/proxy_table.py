"""``proxy-table``: the proxies-only collection of NB201 cells into a store, per label set, and its CSV export.

A thin front of ingest's proxies-only path (``IngestConfig(statistics=False)``,
:mod:`~eznas_store.ingest.proxies_only`): per cell the modern proxies
(:data:`~eznas_store.collect.proxies.registry.MODERN_PROXY_NAMES` by default; any proxy of
the registry may be named) computed once per label set's classifier head where the head
matters, and, with ``suitezero``, NASLib's 13 proxies for the same cells *joined* from
Suite-Zero's ``zc_nasbench201.json[.gz]`` (not recomputed;
:mod:`~eznas_store.ingest.suitezero_join`). The store is resumable network by network,
checksummed, read by ``verify``, ``info``, ``compare``, ``score --proxy``, ``evolve --over
proxies`` (one problem per label set, the same cells in each) and plain ``xarray.open_zarr``.
:func:`export_proxy_csv` writes a store's proxies as the ``eznas-proxy-table/1`` CSV that
``proxy-table`` wrote before stores (``--export``), which ``evolve --over proxies`` still reads.

Label sets (:data:`LABEL_SETS`): the head has 10 / 100 / 120 classes for CIFAR-10 /
CIFAR-100 / ImageNet16-120 test accuracy; NASLib's values come from Suite-Zero's task
``cifar10`` / ``cifar10`` (the final release has no CIFAR-100 task) / ``ImageNet16-120``.

Head dependence (``ProxySpec.head_free``; checked in ``tests/test_proxy_table.py``):

- computed once per cell with the first label set's head, used for every label set: ``meco``
  (exact: the classifier is the last module reset, and its 2-D outputs add exactly 0), and
  ``az_expressivity`` / ``az_progressivity`` / ``az_trainability`` / ``swap``, which never
  read the classifier but are **not** bit-identical under another head: the head's init
  draws from the same generator before AZ-NAS's Gaussian input and before SWAP's next
  re-init, so a 100-class network gives another draw of the same distribution;
- per head: ``zico`` (cross-entropy through the head, the dataset's labels), ``az_complexity``
  (FLOPs include the classifier), ``swap_reg`` (= ``swap`` · exp(−(P − μ)²/σ) with P the
  head's parameter count: derived from ``swap``, exact) and NASLib's 13 when computed.

Protocol: a seeded sample of the dataset's training images, ``batch_size`` of them per proxy
batch (2 · ``batch_size`` for ZiCo's two batches), stored as the store's ``data_batch``;
each network initialised from its own seed (``network_seed(seed, n)``, as ingest); each
proxy's pass its paper's protocol (``collect.proxy_card``: kept per proxy in the store).
Cells: ``networks`` takes ingest's forms (a number: a seeded sample; ``all``; a cell; a file
of cells) from the benchmark table, a sample or ``all`` restricted to the cells every joined
Suite-Zero task holds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eznas_store.errors import ConfigError
from eznas_store.ingest.config import IngestConfig
from eznas_store.sources import FORMAT, LABEL_SETS, is_proxy_table, read_proxy_table, write_proxy_table

__all__ = ["FORMAT", "HEAD_FREE", "LABEL_SETS", "MAX_THREADS", "PER_HEAD", "ProxyTableConfig", "ProxyTableResult",
           "collect_proxy_table", "export_proxy_csv", "is_proxy_table", "read_proxy_table"]

#: the modern proxies computed once per cell, with the first label set's head
HEAD_FREE: tuple[str, ...] = ("az_expressivity", "az_progressivity", "az_trainability", "meco", "swap")
#: the modern proxies computed (or derived) per label set's head
PER_HEAD: tuple[str, ...] = ("az_complexity", "zico", "swap_reg")
#: ``--threads`` of ``proxy-table``: 1 (bit-reproducible) up to this many torch threads
MAX_THREADS = 256


@dataclass(frozen=True)
class ProxyTableConfig:
    """What ``eznas-store proxy-table`` collects; validated once here, then an ``IngestConfig``."""

    store: str
    #: the NB201 accuracy table (one accuracy column per label set); no default
    benchmark: str | None
    #: the dataset's images (not needed for digits); no default
    data_root: str | None
    suitezero: str | None = None
    dataset: str = "cifar10"
    networks: int | tuple[str, ...] | None = 1100
    seed: int = 0
    batch_size: int = 64
    label_sets: tuple[str, ...] = tuple(LABEL_SETS)
    proxies: tuple[str, ...] = HEAD_FREE + PER_HEAD
    channels: int | None = None
    cells_per_stage: int | None = None
    image_size: int | None = None
    shard: tuple[int, int] = (0, 1)
    chunk_networks: int = 0
    progress: bool = True
    redo_broken: bool = False
    max_seconds: float = 0.0
    #: auto, cpu or cuda[:k] (not part of the plan: a store may be continued on a GPU)
    device: str = "auto"
    #: also write the store's proxies as an ``eznas-proxy-table/1`` CSV here
    export: str | None = None
    ingest: IngestConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (isinstance(self.batch_size, int) and 2 <= self.batch_size <= 500):
            raise ConfigError(f"--batch-size must be from 2 to 500 (ZiCo uses two batches of it), "
                              f"got {self.batch_size!r}")
        if not self.proxies or not self.label_sets:
            raise ConfigError("proxy-table needs at least one --proxy and one --label-set")
        if "swap_reg" in self.proxies and "swap" not in self.proxies:
            raise ConfigError("--proxy swap_reg is derived from swap: name swap too")
        if self.export is not None and not str(self.export).endswith(".csv"):
            raise ConfigError(f"--export must name a .csv file, got {self.export!r}")
        object.__setattr__(self, "ingest", IngestConfig(
            store=self.store, dataset=self.dataset, space="nb201", benchmark=self.benchmark, data_root=self.data_root,
            networks=self.networks, seed=self.seed, batch_size=self.batch_size, shard=self.shard, device=self.device,
            chunk_networks=self.chunk_networks, image_size=self.image_size, C=self.channels, N=self.cells_per_stage,
            proxies=False, proxy_names=tuple(self.proxies), statistics=False, label_sets=tuple(self.label_sets),
            suitezero=self.suitezero, max_seconds=self.max_seconds, progress=self.progress,
            redo_broken=self.redo_broken))
        missing = [flag for flag, given in (("--benchmark", self.benchmark),
                                            ("--data-root", self.data_root or self.dataset == "digits")) if not given]
        if missing:
            raise ConfigError(f"proxy-table needs {', '.join(missing)}: the NB201 accuracy table with one column per "
                              "label set (--benchmark) and the dataset's images (--data-root)")


@dataclass
class ProxyTableResult:
    """What one ``proxy-table`` run did: ingest's report line, and the CSV it exported (or None)."""

    line: str
    done: int
    stopped: str = ""
    export: Path | None = None


def collect_proxy_table(cfg: ProxyTableConfig, *, on_plan=None) -> ProxyTableResult:
    """Collect (or continue) the proxies-only store, then export its CSV if asked."""
    from eznas_store.ingest.driver import run_ingest

    report = run_ingest(cfg.ingest, on_plan=on_plan)
    out = export_proxy_csv(cfg.store, cfg.export) if cfg.export else None
    return ProxyTableResult(line=report.line(), done=report.done, stopped=report.stopped, export=out)


def export_proxy_csv(url: str, out: str | os.PathLike[str]) -> Path:
    """The complete networks of store ``url`` (any store with proxies) as an
    ``eznas-proxy-table/1`` CSV and its ``.meta.json``: ``index, arch``, each label set's
    accuracy column, ``<proxy>@<label set>`` for every computed and joined proxy, ``seconds``."""
    from eznas_store.store import open_store

    store = open_store(url)
    plan = store.plan
    values, joined = store.proxy_values(), store.suitezero_values()
    if values is None and joined is None:
        raise ConfigError(f"store {url} holds no proxies to export")
    done = np.flatnonzero(store.complete())
    heads = store.label_sets()
    columns: dict[str, np.ndarray] = {}
    for _, _, col in heads:
        columns[col] = np.asarray(plan.accuracies[col], dtype=np.float64)[done]
    for table, dim in ((values, "proxy"), (joined, "suitezero_proxy")):
        for k, (label, _, _) in enumerate(heads) if table is not None else ():
            for j, p in enumerate(str(x) for x in table[dim].values):
                columns[f"{p}@{label}"] = table.values[done, j, k]
    columns["seconds"] = np.asarray(store.column("seconds"), dtype=np.float64)[done]
    return write_proxy_table(out, [plan.archs[i] for i in done], [plan.bench_index[i] for i in done], columns,
                             _export_meta(store, len(done)))


def _export_meta(store: Any, n: int) -> dict[str, Any]:
    """The meta document of an export: where it came from and what its columns mean."""
    plan = store.plan
    info = store.group["proxy_value"].attrs.get("proxies", {}) if plan.proxies else {}
    recipe = {"store": os.path.abspath(store.url) if "://" not in store.url else store.url,
              "benchmark": plan.benchmark, "suitezero": plan.suitezero, "data_root": plan.data_root,
              "seed": plan.collect.seed, "batch_size": plan.proxy_batch_size or plan.collect.batch_size,
              "proxies": list(plan.proxies), "label_sets": [h[0] for h in store.label_sets()],
              "channels": plan.C, "cells_per_stage": plan.N, "dataset": plan.dataset}
    return {"recipe": recipe, "networks": n, "naslib_proxies": list(plan.suitezero_proxies),
            "head_free": [p for p in plan.proxies if "free" in str(info.get(p, {}).get("head", ""))],
            "per_head": [p for p in plan.proxies if "free" not in str(info.get(p, {}).get("head", ""))],
            "label_sets": {name: {"classes": classes, "accuracy": col,
                                  "naslib_task": LABEL_SETS[name][2] if name in LABEL_SETS else ""}
                           for name, classes, col in store.label_sets()},
            "protocol": {p: info.get(p, {}).get("protocol", "") for p in plan.proxies}}
