"""``proxy-table``: the proxies-only collection of NB201 cells (per label set) or DARTS genotypes into a store,
and its CSV export.

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

DARTS (``space="darts"``)
-------------------------
A DARTS table (``genotype,accuracy``, e.g. the 1,000-genotype CSV) has one label set, the
dataset's own head (``cifar10``). NASLib's 13 are computed (no Suite-Zero values exist for the
1,000 set) beside the modern ones (:func:`darts_proxies`). Each proxy's network is recorded
in its card (``ingest.networks.proxy_network_card``: space, skeleton, C, N):

- ``swap`` runs on SWAP's own DARTS network, its paper's protocol (the DARTS space's
  ``proxy_networks``): no stem, one reduction cell at 6 channels (space ``darts-swap``,
  C=3, L=1), the first 16 images of the proxy batch, 32 N(0, 1) re-inits, train mode.
- every other proxy runs on DARTS's eval NetworkCIFAR at **C=4, L=3** (stem; cells N R R)
  with a proxy batch of **16** (ZiCo: two). Why: seconds per genotype of all of them together
  (grouped in passes as a store runs them; this 2-core VM shared with other jobs, one torch
  thread, 3 genotypes each; docs/results.md): SWAP's network 2.4 s at batch 64 and 1.5 s at
  16, but with one cell AZ-NAS's progressivity is one difference and its expressivity was −∞
  (an all-zero feature map) on every genotype tried; C=4, L=3 2.6 s at batch 16 (the main
  NASLib pass, GraSP's Hessian product included, is half of it); C=8, L=5 6.2 s at batch
  16; C=8, L=5 at NASLib's batch 64 over 17 s. C=4, L=3 at 16 is the cheapest skeleton with a
  stem and several cells, the only one that fits the 1,000 genotypes in about 40 min of one
  core; batch 16 is SWAP's own batch, a quarter of NASLib's 64 (a deviation, stated).
  ``channels``/``cells_per_stage``/``batch_size`` override it; ``skeleton="swap"`` puts every
  proxy on SWAP's network (space ``darts-swap``).

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


#: the spaces ``proxy-table`` takes
SPACES = ("nb201", "darts")
#: DARTS's one label set: its tables (the 1,000-genotype CSV, NB301's) have one CIFAR-10 column
DARTS_LABEL_SETS: tuple[str, ...] = ("cifar10",)
#: the DARTS network of every proxy but SWAP (which runs on its own; ``SearchSpace.proxy_networks``):
#: DARTS's eval NetworkCIFAR at C=4, L=3, and the proxy batch (see the module docstring for why)
DARTS_PROXY_C, DARTS_PROXY_N, DARTS_PROXY_BATCH = 4, 3, 16
#: NB201's proxy batch, the papers' 64
NB201_PROXY_BATCH = 64


def darts_proxies() -> tuple[str, ...]:
    """The default proxies of a DARTS table: NASLib's 13 (computed: no Suite-Zero values exist for
    the 1,000 set), then every opt-in proxy of the registry but ``swap_reg`` (its μ/σ are NB201
    placeholders)."""
    from eznas_store.collect import MODERN_PROXY_NAMES, PROXY_NAMES

    return tuple(PROXY_NAMES) + tuple(n for n in MODERN_PROXY_NAMES if n != "swap_reg")


@dataclass(frozen=True)
class ProxyTableConfig:
    """What ``eznas-store proxy-table`` collects; validated once here, then an ``IngestConfig``."""

    store: str
    #: the accuracy table (NB201: one accuracy column per label set; DARTS: genotype, accuracy); no default
    benchmark: str | None
    #: the dataset's images (not needed for digits); no default
    data_root: str | None
    suitezero: str | None = None
    dataset: str = "cifar10"
    networks: int | tuple[str, ...] | None = 1100
    seed: int = 0
    #: None: NB201's 64 (the papers'), DARTS's 16 (``DARTS_PROXY_BATCH``)
    batch_size: int | None = None
    #: None: NB201's three, DARTS's one (cifar10)
    label_sets: tuple[str, ...] | None = None
    #: None: NB201's modern eight (``HEAD_FREE + PER_HEAD``); DARTS's :func:`darts_proxies`
    proxies: tuple[str, ...] | None = None
    #: nb201 or darts
    space: str = "nb201"
    #: a named skeleton of the space (DARTS: ``swap`` puts every proxy on SWAP's network); None:
    #: the space's own (DARTS: SWAP on SWAP's network, the others on NetworkCIFAR at C, N)
    skeleton: str | None = None
    #: the benchmark column the store's accuracy is (None: the dataset's default); DARTS's one label set
    accuracy_column: str | None = None
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
        self._space_defaults()
        if not (isinstance(self.batch_size, int) and 2 <= self.batch_size <= 500):
            raise ConfigError(f"--batch-size must be from 2 to 500 (ZiCo uses two batches of it), "
                              f"got {self.batch_size!r}")
        if not self.proxies or not self.label_sets:
            raise ConfigError("proxy-table needs at least one --proxy and one --label-set")
        if "swap_reg" in self.proxies and "swap" not in self.proxies:
            raise ConfigError("--proxy swap_reg is derived from swap: name swap too")
        if self.export is not None and not str(self.export).endswith(".csv"):
            raise ConfigError(f"--export must name a .csv file, got {self.export!r}")
        darts = self.space == "darts"
        object.__setattr__(self, "ingest", IngestConfig(
            store=self.store, dataset=self.dataset, space=self.space, skeleton=self.skeleton, benchmark=self.benchmark,
            data_root=self.data_root, networks=self.networks, seed=self.seed, batch_size=self.batch_size,
            shard=self.shard, device=self.device, chunk_networks=self.chunk_networks, image_size=self.image_size,
            C=self.channels, N=self.cells_per_stage, accuracy_column=self.accuracy_column, proxies=False,
            proxy_names=tuple(self.proxies), statistics=False, label_sets=() if darts else tuple(self.label_sets), suitezero=self.suitezero,
            max_seconds=self.max_seconds, progress=self.progress, redo_broken=self.redo_broken))
        missing = [flag for flag, given in (("--benchmark", self.benchmark),
                                            ("--data-root", self.data_root or self.dataset == "digits")) if not given]
        if missing:
            table = ("the DARTS table (genotype, accuracy)" if darts
                     else "the NB201 accuracy table with one column per label set")
            raise ConfigError(f"proxy-table needs {', '.join(missing)}: {table} (--benchmark) and the dataset's "
                              "images (--data-root)")

    def _space_defaults(self) -> None:
        """The space checked, and its defaults where None: label sets, proxies, DARTS's skeleton."""
        if self.space not in SPACES:
            raise ConfigError(f"proxy-table --space must be one of {', '.join(SPACES)}, got {self.space!r}")
        darts = self.space == "darts"
        if self.skeleton is not None and not darts:
            raise ConfigError("--skeleton picks a DARTS network: give --space darts")
        if self.label_sets is None:
            object.__setattr__(self, "label_sets", DARTS_LABEL_SETS if darts else tuple(LABEL_SETS))
        if darts and tuple(self.label_sets) != DARTS_LABEL_SETS:
            raise ConfigError(f"a DARTS table has one label set, cifar10 (its one accuracy column); got "
                              f"--label-set {', '.join(self.label_sets)}")
        if darts and self.suitezero is not None:
            raise ConfigError("--suitezero joins NASLib's values per NB201 label set; for DARTS give the NB301 "
                              "file as --benchmark (its cells and val_accuracy) and compute the proxies")
        if self.proxies is None:
            object.__setattr__(self, "proxies", darts_proxies() if darts else HEAD_FREE + PER_HEAD)
        if self.batch_size is None:
            object.__setattr__(self, "batch_size", DARTS_PROXY_BATCH if darts else NB201_PROXY_BATCH)
        if darts and self.skeleton in (None, "eval"):
            object.__setattr__(self, "channels", DARTS_PROXY_C if self.channels is None else self.channels)
            object.__setattr__(self, "cells_per_stage", DARTS_PROXY_N if self.cells_per_stage is None
                               else self.cells_per_stage)


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
              "space": plan.space, "channels": plan.C, "cells_per_stage": plan.N, "dataset": plan.dataset}
    return {"recipe": recipe, "networks": n, "naslib_proxies": list(plan.suitezero_proxies),
            "head_free": [p for p in plan.proxies if "free" in str(info.get(p, {}).get("head", ""))],
            "per_head": [p for p in plan.proxies if "free" not in str(info.get(p, {}).get("head", ""))],
            "label_sets": {name: {"classes": classes, "accuracy": col,
                                  "naslib_task": LABEL_SETS[name][2] if name in LABEL_SETS else ""}
                           for name, classes, col in store.label_sets()},
            "protocol": {p: info.get(p, {}).get("protocol", "") for p in plan.proxies},
            "network": {p: info.get(p, {}).get("network", {}) for p in plan.proxies}}
