"""What an ingest job will collect: its networks, accuracies and data batch, as a ``StorePlan``.

Networks come from a benchmark table (a seeded sample, an explicit list or all of it,
with every accuracy column) or, without one, from the search space itself (accuracies
then unknown: NaN in a column named ``none``; a space that cannot be enumerated, such as
DARTS, then takes a list of cells or a seeded sample of its random cells).

A NAS-Bench-Suite-Zero file (``zc_*.json[.gz]``) is a benchmark table too: its cells (keys
converted by the space, e.g. NB301 keys to DARTS genotypes) with the task's
``val_accuracy``, so ``compare --suitezero`` can set our proxy values beside NASLib's on
the same cells. NB301's values come from its own skeleton (``C=32``, 8 layers:
``--channels 32 --cells 8``; ``docs/design.md`` §4).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eznas_store.errors import ConfigError
from eznas_store.ingest.config import IngestConfig
from eznas_store.ingest.suitezero_join import common_cells, join_values, read_join
from eznas_store.sources import get_spec, sample_batch
from eznas_store.sources import SearchSpace, get_space
from eznas_store.sources import read_zc
from eznas_store.sources import table_cells
from eznas_store.sources import BenchmarkTable, default_accuracy_column, read_benchmark, select_networks
from eznas_store.sources import LABEL_SETS
from eznas_store.store import StorePlan, suitezero_sha256
from eznas_store.terminals import CollectConfig

#: (archs, bench_index, accuracy column, accuracies per column, benchmark path or "")
Selection = tuple[tuple[str, ...], tuple[int, ...], str, dict[str, tuple[float, ...]], str]


@dataclass(frozen=True)
class IngestPlan:
    """A job's plan, its data batch (images, labels) and the joined Suite-Zero values (or None)."""

    plan: StorePlan
    images: np.ndarray
    labels: np.ndarray
    suitezero_values: np.ndarray | None = None


def plan_ingest(cfg: IngestConfig) -> tuple[StorePlan, np.ndarray, np.ndarray]:
    """Resolve the network list, accuracies and data batch into a ``StorePlan``."""
    planned = plan_store(cfg)
    return planned.plan, planned.images, planned.labels


def plan_store(cfg: IngestConfig) -> IngestPlan:
    """``plan_ingest`` and the values joined from Suite-Zero (``cfg.suitezero``), whose sha256
    the plan records. The data batch of a proxies-only store is the proxies' images
    (``proxy_images``); of a store with statistics, the statistics' batch."""
    space = get_space(cfg.space)
    spec = get_spec(cfg.dataset)
    image_size = cfg.image_size or spec.image_size
    join = read_join(cfg.suitezero, cfg.label_sets, space)
    select = _from_benchmark if cfg.benchmark else _from_space
    archs, bench_index, acc_col, accuracies, benchmark = select(cfg, space, join)
    wanted = cfg.wanted_proxies()
    heads = _label_sets(cfg, accuracies)
    size = cfg.batch_size if cfg.statistics else proxy_images(wanted, cfg.proxy_batch_size or cfg.batch_size)
    batch = sample_batch(cfg.dataset, cfg.data_root, batch_size=size, seed=cfg.seed, image_size=image_size)
    joined, values = (join_values(join, archs, cfg.label_sets, wanted) if join is not None else ((), None))
    plan = StorePlan(
        space=cfg.space, dataset=cfg.dataset, archs=archs, bench_index=bench_index,
        accuracy_column=acc_col, accuracies=accuracies,
        collect=CollectConfig(batch_size=cfg.batch_size, structure=cfg.structure,
                              perturb_scale=cfg.perturb_scale, seed=cfg.seed),
        image_size=image_size, num_classes=spec.num_classes,
        C=cfg.C or space.skeleton["C"], N=cfg.N or space.skeleton["N"],
        benchmark=benchmark, data_root=os.path.abspath(cfg.data_root) if cfg.data_root else "",
        batch_indices=tuple(int(i) for i in batch.indices), chunk_networks=cfg.chunk_networks,
        proxies=wanted, proxy_batch_size=cfg.proxy_batch_size if wanted and cfg.proxy_batch_size else 0,
        codec=cfg.codec, statistics=cfg.statistics, label_sets=heads,
        suitezero=os.path.abspath(cfg.suitezero) if joined else "", suitezero_proxies=joined,
        suitezero_sha256=suitezero_sha256(values) if joined else "",
    )
    return IngestPlan(plan, batch.images.numpy(), batch.labels.numpy(), values if joined else None)


def proxy_images(names: Sequence[str], batch: int) -> int:
    """Images the proxies ``names`` read with a proxy batch of ``batch``: ``batch`` times the
    most batches one of them reads (ZiCo: 2)."""
    from eznas_store.collect import PROXIES

    return batch * max((PROXIES[n].batches for n in names), default=1)


def _label_sets(cfg: IngestConfig, accuracies: dict[str, tuple[float, ...]]) -> tuple[tuple[str, int, str], ...]:
    """``cfg.label_sets`` as (name, classes, accuracy column), each column one the plan holds."""
    out = tuple((s, LABEL_SETS[s][0], LABEL_SETS[s][1]) for s in cfg.label_sets)
    missing = [col for _, _, col in out if col not in accuracies]
    if missing:
        where = f"the benchmark {cfg.benchmark}" if cfg.benchmark else "no benchmark (give --benchmark)"
        raise ConfigError(f"--label-set needs the accuracy column(s) {', '.join(missing)}; {where} has "
                          f"{', '.join(accuracies)}")
    return out


def _from_benchmark(cfg: IngestConfig, space: SearchSpace, join: dict | None = None) -> Selection:
    """The networks ``cfg`` selects from its benchmark table, with every accuracy column; a
    sample (or all) from the cells every joined Suite-Zero task holds where ``join`` is given."""
    table = read_table(cfg.benchmark, cfg.dataset, space)
    archs_arg = list(cfg.networks) if isinstance(cfg.networks, tuple) else None
    count = cfg.networks if isinstance(cfg.networks, int) else None
    if archs_arg is not None:
        archs_arg = [space.canonical(a) for a in archs_arg]
    cells = table_cells(table, space)  # every row a cell of the space, as search refuses them too
    if join is not None and archs_arg is None:
        common = common_cells(join)
        table, cells = _restrict(table, cells, [r for r, a in enumerate(cells) if a in common], cfg.suitezero)
    rows = select_networks(table, networks=count, archs=archs_arg, seed=cfg.seed)
    archs = tuple(cells[r] for r in rows)
    bench_index = tuple(int(table.index[r]) for r in rows)
    first_set = LABEL_SETS[cfg.label_sets[0]][1] if cfg.label_sets else None  # its head's accuracy
    acc_col = cfg.accuracy_column or first_set or (SUITEZERO_LABEL if list(table.columns) == [SUITEZERO_LABEL]
                                                   else default_accuracy_column(table, cfg.dataset))
    table.column(acc_col)  # clear error if unknown
    accuracies = {c: tuple(float(v) for v in np.asarray(table.columns[c])[rows]) for c in table.columns}
    return archs, bench_index, acc_col, accuracies, os.path.abspath(cfg.benchmark)


def _restrict(table: BenchmarkTable, cells: list[str], rows: list[int], joined: str | None
              ) -> tuple[BenchmarkTable, list[str]]:
    """The table's ``rows`` only (the cells a Suite-Zero file holds), and their cells."""
    if not rows:
        raise ConfigError(f"no cell of {table.path} is in every task of {joined} that the label sets join from")
    sub = BenchmarkTable(path=table.path, archs=tuple(table.archs[r] for r in rows),
                         index=np.asarray(table.index)[rows].copy(),
                         columns={c: np.asarray(v)[rows].copy() for c, v in table.columns.items()}, meta=table.meta)
    return sub, [cells[r] for r in rows]


def _from_space(cfg: IngestConfig, space: SearchSpace, join: dict | None = None) -> Selection:
    """The networks ``cfg`` selects from the whole space (a seeded sample, a list or all)."""
    if space.n_cells is None and cfg.networks is not None:  # not enumerable (DARTS)
        return _from_random_cells(cfg, space)
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
    return archs, bench_index, "none", {"none": tuple(float("nan") for _ in archs)}, ""


def _from_random_cells(cfg: IngestConfig, space: SearchSpace) -> Selection:
    """The cells listed, or ``networks`` distinct seeded random cells, of a space that cannot be
    enumerated (no benchmark index: -1; no accuracies)."""
    if isinstance(cfg.networks, tuple):
        archs = tuple(space.canonical(a) for a in cfg.networks)
    elif space.random_cell is None:
        raise ConfigError(f"space {space.name!r} cannot be enumerated or sampled: give --benchmark or a list of cells")
    else:
        rng, found = np.random.default_rng(cfg.seed), {}  # a dict keeps the first-drawn order
        while len(found) < cfg.networks:
            found[space.canonical(space.random_cell(rng))] = None
        archs = tuple(found)
    return archs, tuple(-1 for _ in archs), "none", {"none": tuple(float("nan") for _ in archs)}, ""


#: the label column of a Suite-Zero file read as a benchmark table
SUITEZERO_LABEL = "val_accuracy"
#: dataset → Suite-Zero task name (a file with one task uses it whatever the dataset)
SUITEZERO_TASKS = {"cifar10": "cifar10", "cifar100": "cifar100", "imagenet16-120": "ImageNet16-120"}


def read_table(path: str, dataset: str, space: SearchSpace) -> BenchmarkTable:
    """A benchmark CSV, or the ``dataset`` task of a Suite-Zero ``zc_*.json[.gz]`` as a table
    (its cells in file order, index = the records' ``idx``, one column ``val_accuracy``)."""
    if not str(path).lower().endswith((".json", ".json.gz")):
        return read_benchmark(path)
    tables = read_zc(path)
    task = SUITEZERO_TASKS.get(str(dataset).lower(), str(dataset))
    if task not in tables and len(tables) == 1:
        task = next(iter(tables))
    if task not in tables:
        raise ConfigError(f"{path} has no task for --dataset {dataset} (it has: {', '.join(tables)})")
    zc = tables[task]
    if zc.space != space.name:
        raise ConfigError(f"{path} holds {zc.space} keys, not cells of --space {space.name}")
    index = [int(i) if i.isdigit() else r for r, i in enumerate(zc.idx)]
    if len(set(index)) != len(index):
        index = list(range(len(zc.archs)))
    return BenchmarkTable(path=str(path), archs=zc.archs, index=np.asarray(index, dtype=np.int64),
                          columns={SUITEZERO_LABEL: np.array(zc.val_accuracy, dtype=np.float64)},
                          meta={"source": "NAS-Bench-Suite-Zero", "task": task})


def proxy_batch(cfg: IngestConfig, plan: StorePlan):
    """The proxies' own seeded batch (``own_proxy_batch``): ``proxy_images`` of the plan's proxy
    batch (``proxy_batch_size``, else the statistics batch), seeded by ``cfg.seed``."""
    size = proxy_images(plan.proxies, plan.proxy_batch_size or plan.collect.batch_size)
    return sample_batch(cfg.dataset, cfg.data_root, batch_size=size, seed=cfg.seed, image_size=plan.image_size)


def own_proxy_batch(plan: StorePlan) -> bool:
    """Whether the proxies of a store with statistics read their own seeded batch: where
    ``proxy_batch_size`` is set or they read more images than the statistics batch holds
    (ZiCo's two batches). A proxies-only store's data batch is the proxies' images."""
    B = plan.collect.batch_size
    return plan.statistics and bool(plan.proxies) and (plan.proxy_batch_size > 0 or proxy_images(plan.proxies, B) > B)
