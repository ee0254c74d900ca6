"""Network x proxy tables as GP problems: load them and split them into train/test parts.

A *problem* is one table of networks with the values of hand-crafted proxies (``synflow``,
``nwot``, ``jacov``, ..., ``meco``, ``zico``, ...) and an accuracy per network, read from an
eznas store with proxies (one with statistics, or a proxies-only one: ``ingest
--no-statistics``, ``proxy-table``) or from a NAS-Bench-Suite-Zero ``zc_*.json[.gz]`` file
(one problem per task, named ``nb201-cifar10``, ``nb201-ImageNet16-120``,
``tnb101_micro-class_scene``, ...). A store of one label set is one problem
(``<space>-<dataset>:<stem>``); a store with label sets (``proxy-table``) is one problem per
label set (``nb201-cifar10:<stem>``: its head's values, and the values it joined from
Suite-Zero, against its accuracy column), all over the same networks in the same order, so
``split_problem`` holds out the same cells in each. A proxy table CSV (``eznas-proxy-table/1``,
what ``proxy-table`` wrote before stores and ``proxy-table --export`` writes) reads the same
way: the import path. Proxy programs (:mod:`eznas_store.programs.proxy_ops`) are
formulas over those columns (Phan & Luong 2025), scored on problems by
:mod:`eznas_store.fitness.proxy_table_scorer` and compared across problems by
:mod:`eznas_store.fitness.matrix`.

Example
-------
>>> problems = load_problems("zc_nasbench201.json.gz")  # doctest: +SKIP
>>> train, test = split_problem(problems[0], 100, seed=0)                         # doctest: +SKIP

Networks kept: complete (stores), with a finite accuracy, and with a finite value of every
proxy column kept; a column that is missing on more than ``MAX_MISSING`` of the
networks is dropped instead (so one failing proxy does not cost most networks). What was
dropped is recorded on the problem (``dropped``, ``dropped_columns``). A failed AZ-NAS
component is not missing: it takes its floor
(:data:`~eznas_store.sources.proxy_values.AZ_FLOORS`, below every finite value; the
reference ranks it lowest), so the cell stays.

``graph_features=True`` appends to every problem the label-free graph features of each
network's cell (:func:`~eznas_store.sources.spaces.graph.graph_features`: ``graph_op_*``,
``graph_paths``, ``graph_depth``, ...), computed from its architecture string (NB201 cells,
DARTS genotypes; Suite-Zero's NB201 keys are converted to cells when read), as more
terminals; off by default, so existing problems and results do not change.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from eznas_store.sources import floor_failed, graph_columns
from eznas_store.errors import (
    BenchmarkFormatError,
    ConfigError,
    DataNotFoundError,
    StoreError,
    UnknownNameError,
)
from eznas_store.sources import read_proxy_table
from eznas_store.sources import read_zc
from eznas_store.store import open_store

__all__ = ["MAX_MISSING", "ProxyProblem", "load_problems", "split_problem"]

#: a proxy column non-finite on more than this fraction of a problem's networks is dropped
MAX_MISSING = 0.25
SPLITS: tuple[str, ...] = ("all", "train", "test")


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)  # a copy, so the problem owns its data
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class ProxyProblem:
    """One task: networks, their proxy values (proxy -> float64 column) and accuracies.

    ``source`` says where it was read; ``split`` is "all", or "train"/"test" for the
    parts made by :func:`split_problem` (the test part of a problem evolved on is
    marked in :func:`~eznas_store.fitness.matrix.format_matrix`); ``dropped`` and
    ``dropped_columns`` record what loading left out. Arrays are read-only copies;
    compared by identity.
    """

    name: str
    archs: tuple[str, ...]
    columns: dict[str, np.ndarray]
    accuracy: np.ndarray
    source: str
    split: str = "all"
    dropped: int = 0
    dropped_columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.archs)
        acc = _readonly(self.accuracy)
        if acc.shape != (n,):
            raise BenchmarkFormatError(f"problem {self.name}: {acc.shape} accuracies for {n} networks")
        cols = {}
        for k in sorted(self.columns):
            c = _readonly(self.columns[k])
            if c.shape != (n,):
                raise BenchmarkFormatError(
                    f"problem {self.name}: proxy column {k!r} has shape {c.shape}, expected ({n},)")
            cols[str(k)] = c
        if self.split not in SPLITS:
            raise ConfigError(f"problem {self.name}: split must be one of {SPLITS}, got {self.split!r}")
        object.__setattr__(self, "archs", tuple(self.archs))
        object.__setattr__(self, "accuracy", acc)
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "dropped_columns", tuple(self.dropped_columns))

    def __len__(self) -> int:
        return len(self.archs)

    def column_tensors(self) -> dict[str, torch.Tensor]:
        """The proxy columns as float64 tensors, as the proxy-program evaluator takes them."""
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in self.columns.items()}

    def subset(self, rows: np.ndarray, *, name: str, split: str) -> ProxyProblem:
        rows = np.asarray(rows, dtype=np.int64)
        return ProxyProblem(
            name=name, archs=tuple(self.archs[i] for i in rows),
            columns={k: v[rows] for k, v in self.columns.items()}, accuracy=self.accuracy[rows],
            source=self.source, split=split, dropped=self.dropped,
            dropped_columns=self.dropped_columns)


# ----------------------------------------------------------------------------- loading


def _clean(name: str, archs: Sequence[str], columns: Mapping[str, np.ndarray], accuracy: np.ndarray,
           keep: np.ndarray, source: str) -> ProxyProblem:
    """Drop mostly-missing columns, then networks with any non-finite value left."""
    keep = keep & np.isfinite(accuracy)
    n_ok = int(keep.sum())
    cols: dict[str, np.ndarray] = {}
    dropped_cols = []
    for k, v in columns.items():
        missing = int((~np.isfinite(v[keep])).sum())
        if n_ok and missing > MAX_MISSING * n_ok:
            dropped_cols.append(k)
        else:
            cols[k] = v
    for v in cols.values():
        keep &= np.isfinite(v)
    rows = np.flatnonzero(keep)
    if len(rows) < 2:
        raise BenchmarkFormatError(
            f"{source}: problem {name} has {len(rows)} network(s) with a finite accuracy and "
            "finite proxy values; a rank correlation needs at least 2")
    if not cols:
        raise BenchmarkFormatError(f"{source}: problem {name} has no usable proxy column")
    return ProxyProblem(
        name=name, archs=tuple(archs[i] for i in rows), columns={k: v[rows] for k, v in cols.items()},
        accuracy=accuracy[rows], source=source, dropped=len(archs) - len(rows),
        dropped_columns=tuple(sorted(dropped_cols)))


def _zc_space(path: Path, tasks: Collection[str]) -> str:
    """``zc_nasbench201.json.gz`` -> ``nb201``; ``zc_transbench101_micro_class_scene`` -> ``tnb101_micro``."""
    stem = re.sub(r"\.json(\.gz)?$", "", path.name, flags=re.IGNORECASE)
    stem = stem[3:] if stem.lower().startswith("zc_") else stem
    stem = stem.replace("transbench", "tnb").replace("nasbench", "nb")
    if len(tasks) == 1:  # a one-task file named after its task
        (task,) = tasks
        if stem.endswith("_" + task):
            stem = stem[: -len(task) - 1]
    return stem


def _with_graph(problem: ProxyProblem, space: str) -> ProxyProblem:
    """``problem`` with its networks' graph features appended as columns (same rows)."""
    if space not in ("nb201", "darts"):
        raise ConfigError(f"{problem.source}: graph features need NB201 cells or DARTS genotypes; problem "
                          f"{problem.name} holds {space!r} architectures")
    graph = graph_columns(space, problem.archs)
    clash = sorted(set(graph) & set(problem.columns))
    if clash:
        raise BenchmarkFormatError(f"{problem.source}: problem {problem.name} already has column(s) "
                                   f"{', '.join(clash)}; graph features would replace them")
    return ProxyProblem(name=problem.name, archs=problem.archs, columns={**problem.columns, **graph},
                        accuracy=problem.accuracy, source=problem.source, split=problem.split,
                        dropped=problem.dropped, dropped_columns=problem.dropped_columns)


def _load_zc(path: Path, accuracy: str | None, graph: bool = False) -> list[ProxyProblem]:
    if accuracy not in (None, "val_accuracy"):
        raise UnknownNameError(
            f"{path}: Suite-Zero files hold one accuracy, 'val_accuracy'; got {accuracy!r}")
    tables = read_zc(path)
    space = _zc_space(path, list(tables))
    out = []
    for task, t in tables.items():
        if not t.proxies:
            raise BenchmarkFormatError(f"{path}: task {task!r} holds no proxy values")
        problem = _clean(f"{space}-{task}", t.archs, t.proxies, t.val_accuracy,
                         np.ones(len(t), dtype=bool), f"{path}:{task}")
        out.append(_with_graph(problem, t.space) if graph else problem)
    return out


def _load_store(url: str, accuracy: str | None, graph: bool = False) -> list[ProxyProblem]:
    """A store's proxies (and the values it joined from Suite-Zero) as problems: one, against
    ``accuracy`` (default: the store's), for a store of one label set; one per label set, each
    against its own accuracy column and all over the same networks, for a store with label sets.
    A proxies-only store reads the same way."""
    store = open_store(url)
    values, joined = store.proxy_values(), store.suitezero_values()
    if values is None and joined is None:
        raise StoreError(f"store {url} was ingested without hand-crafted proxies (ingest again "
                         "without --no-proxies, or with --proxy NAME, into a new store)")
    plan = store.plan
    stem = re.sub(r"\.zarr$", "", os.path.basename(str(url).rstrip("/")))
    sets = {}
    for k, (label, _, column) in enumerate(store.label_sets()):
        columns = {str(p): values.values[:, j, k] for j, p in enumerate(values["proxy"].values)} if values is not None else {}
        if joined is not None:
            columns.update({str(p): joined.values[:, j, k] for j, p in enumerate(joined["suitezero_proxy"].values)})
        sets[label] = {"accuracy": np.asarray(plan.accuracies[column], dtype=np.float64),
                       "columns": floor_failed(columns)}
    if not plan.label_sets:  # one label set: the store's (or the asked) accuracy column
        (only,) = sets.values()
        acc = _store_accuracy(store, url, accuracy)
        problems = [_clean(f"{plan.space}-{plan.dataset}:{stem}", plan.archs, only["columns"], acc, store.complete(),
                           str(url))]
    else:
        if accuracy is not None:
            raise UnknownNameError(f"store {url} has label sets ({', '.join(sets)}), each with its accuracy column; "
                                   f"got {accuracy!r}")
        problems = _same_networks(plan.archs, sets, store.complete(), str(url),
                                  lambda label: f"{plan.space}-{label}:{stem}")
    return [_with_graph(p, plan.space) for p in problems] if graph else problems


def _store_accuracy(store, url: str, accuracy: str | None) -> np.ndarray:
    """The store's accuracy column ``accuracy`` (None: the one chosen at ingest)."""
    if accuracy is None:
        return store.accuracy()
    if accuracy in store.plan.accuracies:
        return np.asarray(store.plan.accuracies[accuracy], dtype=np.float64)
    raise UnknownNameError(f"store {url} has no accuracy column {accuracy!r} (it has: "
                           f"{', '.join(sorted(store.plan.accuracies))})")


def _load_proxy_table(path: Path, accuracy: str | None, graph: bool = False) -> list[ProxyProblem]:
    """One problem per label set of a proxy table (the CSV that ``proxy-table`` wrote before
    stores, or ``proxy-table --export``), all over the same networks."""
    if accuracy is not None:
        raise UnknownNameError(f"{path}: a proxy table carries one label per label set; got {accuracy!r}")
    table = read_proxy_table(path)
    n = len(table["archs"])
    if n < 2:
        raise BenchmarkFormatError(f"{path}: {n} complete row(s); a rank correlation needs at least 2")
    # a failed AZ-NAS component is the reference's lowest rank, not a missing value
    sets = {label: {**s, "columns": floor_failed(s["columns"])} for label, s in table["label_sets"].items()}
    stem = path.name[:-4]
    problems = _same_networks(table["archs"], sets, np.ones(n, dtype=bool), str(path),
                              lambda label: f"nb201-{label}:{stem}")
    # a table's recipe may be of either space (``proxy-table --space``): the strings tell
    space = "darts" if str(table["archs"][0]).lstrip().startswith("Genotype") else "nb201"
    return [_with_graph(p, space) for p in problems] if graph else problems


def _same_networks(archs: Sequence[str], sets: dict, keep: np.ndarray, source: str, name) -> list[ProxyProblem]:
    """One problem per label set (``sets``: label -> accuracy, columns), all over the same networks
    (those ``keep`` holds with finite labels and proxies in every label set), so a seeded split
    holds out the same cells in each problem. Columns every label set has, less those missing on
    more than ``MAX_MISSING`` of the networks in one."""
    n = len(archs)
    names = sorted(set.intersection(*(set(s["columns"]) for s in sets.values())))
    keep = np.asarray(keep, dtype=bool).copy()
    for s in sets.values():
        keep &= np.isfinite(s["accuracy"])
    n_ok = int(keep.sum())
    dropped_cols = sorted(k for k in names for s in sets.values()
                          if n_ok and (~np.isfinite(s["columns"][k][keep])).sum() > MAX_MISSING * n_ok)
    names = [k for k in names if k not in dropped_cols]
    for s in sets.values():
        for k in names:
            keep &= np.isfinite(s["columns"][k])
    rows = np.flatnonzero(keep)
    if len(rows) < 2 or not names:
        raise BenchmarkFormatError(f"{source}: {len(rows)} network(s) with finite labels and proxies in every "
                                   "label set; a rank correlation needs at least 2")
    return [ProxyProblem(name=name(label), archs=tuple(archs[i] for i in rows),
                         columns={k: s["columns"][k][rows] for k in names}, accuracy=s["accuracy"][rows],
                         source=f"{source}:{label}", dropped=n - len(rows),
                         dropped_columns=tuple(sorted(set(dropped_cols))))
            for label, s in sets.items()]


def _is_zc(source: str) -> bool:
    return bool(re.search(r"\.json(\.gz)?$", source, flags=re.IGNORECASE))


def load_problems(source: str | os.PathLike[str], *, tasks: Collection[str] | None = None,
                  accuracy: str | None = None, graph_features: bool = False) -> list[ProxyProblem]:
    """Problems from an eznas store (URL/path), a Suite-Zero ``zc_*.json[.gz]`` file or a proxy table.

    ``tasks``: keep only these, by problem name (``nb201-cifar10``) or file task name
    (``cifar10``); an unknown one is an error naming what exists. ``accuracy``: the
    label -- a store's benchmark column (default: the one the store was ingested with);
    Suite-Zero has only ``val_accuracy``. Stores contribute complete networks only.
    ``graph_features``: append each network's graph features as columns (module docstring).
    """
    src = os.fspath(source)
    local = "://" not in src or src.startswith("file://")
    path = Path(src.removeprefix("file://")).expanduser()
    if local and not path.exists():
        raise DataNotFoundError(f"{src} not found: give an eznas store, a Suite-Zero zc_*.json[.gz] file or a "
                                "proxy table (.csv)")
    if _is_zc(src):
        if not local:
            raise ConfigError(f"{src}: Suite-Zero files are read from a local path")
        problems = _load_zc(path, accuracy, graph_features)
    elif local and path.suffix.lower() == ".csv":
        problems = _load_proxy_table(path, accuracy, graph_features)  # a damaged table says what is wrong with it
    else:
        problems = _load_store(str(path) if local else src, accuracy, graph_features)
    if tasks is None:
        return problems
    wanted = list(tasks)
    kept = [p for p in problems if p.name in wanted or p.name.split("-", 1)[-1] in wanted]
    known = {p.name for p in problems} | {p.name.split("-", 1)[-1] for p in problems}
    unknown = [t for t in wanted if t not in known]
    if unknown:
        raise UnknownNameError(f"{src}: no task {', '.join(map(repr, unknown))} (it has: "
                               f"{', '.join(p.name for p in problems)})")
    return kept


def split_problem(problem: ProxyProblem, n_train: int, seed: int) -> tuple[ProxyProblem, ProxyProblem]:
    """A seeded random ``n_train`` networks to evolve on and the disjoint rest to test on.

    The permutation depends on the seed and the number of networks only, so two tasks
    over the same networks in the same order (Suite-Zero's NB201 CIFAR-10 and
    ImageNet16-120) hold out the same architectures. Rows keep their original order.
    """
    n = len(problem)
    if not isinstance(n_train, (int, np.integer)) or not 2 <= n_train <= n - 2:
        raise ConfigError(f"problem {problem.name} has {n} networks: n_train must be between 2 "
                          f"and {n - 2} so both parts can be ranked, got {n_train!r}")
    perm = np.random.default_rng(seed).permutation(n)
    train, test = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    return (problem.subset(train, name=f"{problem.name}[train]", split="train"),
            problem.subset(test, name=f"{problem.name}[test]", split="test"))
