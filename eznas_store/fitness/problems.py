"""Network x proxy tables as GP problems: load, split, score proxy programs, compare across problems.

A *problem* is one table of networks with the values of hand-crafted proxies (``synflow``,
``nwot``, ``jacov``, ..., ``flops``, ``params``) and an accuracy per network, read from an
eznas store ingested with proxies or from a NAS-Bench-Suite-Zero ``zc_*.json[.gz]`` file
(one problem per task, named ``nb201-cifar10``, ``nb201-ImageNet16-120``,
``tnb101_micro-class_scene``, ...). Proxy programs (:mod:`eznas_store.programs.proxy_ops`) are
formulas over those columns (Phan & Luong 2025); their fitness is the Kendall tau of their
scores against the accuracies, exactly as :mod:`eznas_store.fitness.correlations` defines it.

Example
-------
>>> from eznas_store.programs.tree import Program, parse_formula
>>> from eznas_store.programs.proxy_ops import PROXY_OPS
>>> problems = load_problems("../shared/data/suite-zero/zc_nasbench201.json.gz")  # doctest: +SKIP
>>> train, test = split_problem(problems[0], 100, seed=0)                         # doctest: +SKIP
>>> prog = Program(parse_formula("add(rank(jacov), rank(synflow))", ops=PROXY_OPS,
...                              terminals=None), terminal_set="proxies")
>>> ProxyScorer([train]).fitness([prog])[0].value                                  # doctest: +SKIP
>>> print(format_matrix(cross_problem_matrix({"sum": prog}, [test, problems[1]])))  # doctest: +SKIP

Networks kept: complete (stores), with a finite accuracy, and with a finite value of every
proxy column kept; a column that is missing on more than ``MAX_MISSING`` of the
networks is dropped instead (so one failing proxy does not cost most networks). What was
dropped is recorded on the problem (``dropped``, ``dropped_columns``).
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eznas_store.errors import (
    BenchmarkFormatError,
    ConfigError,
    DataNotFoundError,
    StoreError,
    UnknownNameError,
)
from eznas_store.evaluate.population import evaluate_columns
from eznas_store.fitness.correlations import COMBINES, Fitness, kendall_tau, population_fitness, spearman_rho
from eznas_store.programs.tree import Program
from eznas_store.programs.proxy_ops import PROXY_OPS

__all__ = [
    "MAX_MISSING",
    "CrossMatrix",
    "ProxyProblem",
    "ProxyScorer",
    "cross_problem_matrix",
    "format_matrix",
    "load_problems",
    "split_problem",
    "write_matrix",
]

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
    marked in :func:`format_matrix`); ``dropped``/``dropped_columns`` record what
    loading left out. Arrays are read-only copies; compared by identity.
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


def _load_zc(path: Path, accuracy: str | None) -> list[ProxyProblem]:
    from eznas_store.sources.suitezero import read_zc

    if accuracy not in (None, "val_accuracy"):
        raise UnknownNameError(
            f"{path}: Suite-Zero files hold one accuracy, 'val_accuracy'; got {accuracy!r}")
    tables = read_zc(path)
    space = _zc_space(path, list(tables))
    out = []
    for task, t in tables.items():
        if not t.proxies:
            raise BenchmarkFormatError(f"{path}: task {task!r} holds no proxy values")
        out.append(_clean(f"{space}-{task}", t.archs, t.proxies, t.val_accuracy,
                          np.ones(len(t), dtype=bool), f"{path}:{task}"))
    return out


def _load_store(url: str, accuracy: str | None) -> list[ProxyProblem]:
    from eznas_store.store.zarr_store import open_store

    store = open_store(url)
    table = store.proxy_table()
    if table is None:
        raise StoreError(f"store {url} was ingested without hand-crafted proxies (ingest again "
                         "without --no-proxies into a new store)")
    if accuracy is None:
        acc = store.accuracy()
    elif accuracy in store.plan.accuracies:
        acc = np.asarray(store.plan.accuracies[accuracy], dtype=np.float64)
    else:
        raise UnknownNameError(f"store {url} has no accuracy column {accuracy!r} (it has: "
                               f"{', '.join(sorted(store.plan.accuracies))})")
    names = [str(p) for p in table["proxy"].values]
    values = np.asarray(table.values, dtype=np.float64)
    columns = {n: values[:, j] for j, n in enumerate(names)}
    stem = re.sub(r"\.zarr$", "", os.path.basename(str(url).rstrip("/")))
    name = f"{store.plan.space}-{store.plan.dataset}:{stem}"
    return [_clean(name, store.plan.archs, columns, acc, store.complete(), str(url))]


def _is_zc(source: str) -> bool:
    return bool(re.search(r"\.json(\.gz)?$", source, flags=re.IGNORECASE))


def load_problems(source: str | os.PathLike[str], *, tasks: Collection[str] | None = None,
                  accuracy: str | None = None) -> list[ProxyProblem]:
    """Problems from an eznas store (URL/path) or a Suite-Zero ``zc_*.json[.gz]`` file.

    ``tasks``: keep only these, by problem name (``nb201-cifar10``) or file task name
    (``cifar10``); an unknown one is an error naming what exists. ``accuracy``: the
    label -- a store's benchmark column (default: the one the store was ingested with);
    Suite-Zero has only ``val_accuracy``. Stores contribute complete networks only.
    """
    src = os.fspath(source)
    local = "://" not in src or src.startswith("file://")
    path = Path(src.removeprefix("file://")).expanduser()
    if local and not path.exists():
        raise DataNotFoundError(f"{src} not found: give an eznas store or a Suite-Zero zc_*.json[.gz] file")
    if _is_zc(src):
        if not local:
            raise ConfigError(f"{src}: Suite-Zero files are read from a local path")
        problems = _load_zc(path, accuracy)
    else:
        problems = _load_store(str(path) if local else src, accuracy)
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


# ----------------------------------------------------------------------------- scoring


def _tensors(problem: ProxyProblem) -> dict[str, torch.Tensor]:
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in problem.columns.items()}


class ProxyScorer:
    """Fitness of proxy programs on fixed problems (the training tasks of a GP run).

    Holds the problems' columns as tensors once; scores each distinct program (by
    ``Program.key()``) once per call. Fitness is :func:`population_fitness`: Kendall tau
    per problem, combined by ``combine`` ("min"/"mean") of tau or ``abs_tau`` |tau|;
    a program that is NaN on any network of a problem is invalid there.
    """

    def __init__(self, problems: Sequence[ProxyProblem], *, combine: str = "min",
                 abs_tau: bool = False) -> None:
        if combine not in COMBINES:
            raise ConfigError(f"combine must be one of {COMBINES}, got {combine!r}")
        self.problems = tuple(problems)
        if not self.problems:
            raise ConfigError("ProxyScorer needs at least one problem")
        self.combine, self.abs_tau = combine, bool(abs_tau)
        shared = set.intersection(*(set(p.columns) for p in self.problems))
        self.terminals: list[str] = sorted(shared)
        self._columns = [_tensors(p) for p in self.problems]

    def _evaluate(self, programs: Sequence[Program]) -> tuple[list[np.ndarray], list[list[str | None]]]:
        """(P, n) scores and P reasons per problem."""
        keys = [p.key() for p in programs]
        unique = dict(zip(keys, programs))
        scores, reasons = [], []
        for cols, prob in zip(self._columns, self.problems):
            done = {k: evaluate_columns(p, cols, ops=PROXY_OPS) for k, p in unique.items()}
            scores.append(np.stack([done[k][0] for k in keys]) if keys else np.empty((0, len(prob))))
            reasons.append([done[k][1] for k in keys])
        return scores, reasons

    def scores(self, programs: Sequence[Program]) -> list[list[np.ndarray]]:
        """Per problem, per program: the (n,) network scores (NaN where invalid)."""
        s, _ = self._evaluate(programs)
        return [list(rows) for rows in s]

    def fitness(self, programs: Sequence[Program], desc: str = "") -> list[Fitness]:
        """Fitness of every program (``desc`` is accepted for the scorer interface; no bar: it is fast).

        Kendall tau and Spearman rho depend only on the order of the scores, so programs
        whose finite, non-constant scores order every problem's networks the same way
        (``x``, ``rank(x)``, ``sqrt_abs(x)`` for positive ``x``, ...) are given one
        :func:`population_fitness` computation -- a functional-equivalence cache in the
        spirit of AutoML-Zero; the scipy tau is most of the cost.
        """
        if not programs:
            return []
        s, r = self._evaluate(programs)
        slot: dict[Any, int] = {}
        which = [slot.setdefault(_order_key(s, r, i), len(slot)) for i in range(len(programs))]
        reps: list[int] = []  # the first program of each slot; slots are numbered in order
        for i, k in enumerate(which):
            if k == len(reps):
                reps.append(i)
        fits = population_fitness([x[reps] for x in s], [p.accuracy for p in self.problems],
                                  combine=self.combine, abs_tau=self.abs_tau,
                                  reasons=[[rr[i] for i in reps] for rr in r])
        return [fits[k] for k in which]


def _order_key(scores: list[np.ndarray], reasons: list[list[str | None]], i: int) -> Any:
    """What tau/rho of program ``i`` depend on: its dense ranks on every problem.

    Programs with a NaN or constant scores are keyed by position (their reasons differ).
    """
    parts = []
    for t, x in enumerate(scores):
        row = x[i]
        if reasons[t][i] is not None or not np.isfinite(row).all():
            return ("own", i)
        order = np.argsort(row, kind="stable")
        steps = np.diff(row[order]) != 0
        if not steps.any():
            return ("own", i)
        dense = np.empty(len(row), dtype=np.int32)
        dense[order] = np.concatenate(([0], np.cumsum(steps)))
        parts.append(dense.tobytes())
    return tuple(parts)


# ----------------------------------------------------------------------------- cross-problem


@dataclass(frozen=True)
class CrossMatrix:
    """Kendall tau / Spearman rho of programs on problems, beside each problem's best proxy.

    ``tau[i, j]``/``rho[i, j]``: program ``j`` on problem ``i`` (NaN where invalid;
    ``reasons[i][j]`` says why). ``best_proxy[i]``: the single hand-crafted proxy with
    the highest tau on problem ``i``. ``train[i]``: problem ``i``'s other networks were
    used to evolve the programs (held-out networks of a training task).
    """

    problems: tuple[str, ...]
    programs: tuple[str, ...]
    formulas: tuple[str, ...]
    n_networks: tuple[int, ...]
    train: tuple[bool, ...]
    tau: np.ndarray
    rho: np.ndarray
    reasons: tuple[tuple[str | None, ...], ...]
    best_proxy: tuple[str, ...]
    best_tau: np.ndarray
    best_rho: np.ndarray


def _best_proxy(problem: ProxyProblem) -> tuple[str, float, float]:
    best = ("", math.nan, math.nan)
    for name, col in sorted(problem.columns.items()):
        t = kendall_tau(col, problem.accuracy)
        if not math.isnan(t) and (math.isnan(best[1]) or t > best[1]):
            best = (name, t, spearman_rho(col, problem.accuracy))
    return best


def cross_problem_matrix(programs: Mapping[str, Program], problems: Sequence[ProxyProblem], *,
                         train: Collection[str] | None = None) -> CrossMatrix:
    """tau and rho of every program on every problem, and each problem's best single proxy.

    ``train``: names of problems to mark as (held-out parts of) training problems;
    default: those made by :func:`split_problem`. A program reading a proxy a problem
    lacks is NaN there, with that reason.
    """
    names = list(programs)
    progs = [programs[k] for k in names]
    n_prob = len(problems)
    tau = np.full((n_prob, len(progs)), np.nan)
    rho = np.full((n_prob, len(progs)), np.nan)
    reasons: list[tuple[str | None, ...]] = []
    best = []
    for i, prob in enumerate(problems):
        cols = _tensors(prob)
        rows, why = [], []
        for p in progs:
            try:
                s, r = evaluate_columns(p, cols, ops=PROXY_OPS)
            except UnknownNameError as exc:
                s, r = np.full(len(prob), np.nan), str(exc)
            rows.append(s)
            why.append(r)
        if progs:
            fits = population_fitness(np.stack(rows), prob.accuracy, reasons=why)
            tau[i] = [f.taus[0] for f in fits]
            rho[i] = [f.rhos[0] for f in fits]
            why = [f.reason for f in fits]
        reasons.append(tuple(why))
        best.append(_best_proxy(prob))
    marked = (lambda p: p.name in train) if train is not None else (lambda p: p.split != "all")
    return CrossMatrix(
        problems=tuple(p.name for p in problems), programs=tuple(names),
        formulas=tuple(p.formula() for p in progs), n_networks=tuple(len(p) for p in problems),
        train=tuple(bool(marked(p)) for p in problems), tau=tau, rho=rho, reasons=tuple(reasons),
        best_proxy=tuple(b[0] for b in best), best_tau=np.array([b[1] for b in best]),
        best_rho=np.array([b[2] for b in best]))


def _pair(t: float, r: float) -> str:
    return "—" if math.isnan(t) else f"{t:.3f}/{r:.3f}"


def _rows(m: CrossMatrix) -> tuple[list[str], list[list[str]]]:
    header = ["problem", "networks", "best proxy", "tau/rho", *m.programs]
    body = []
    for i, name in enumerate(m.problems):
        body.append([("* " if m.train[i] else "") + name, str(m.n_networks[i]), m.best_proxy[i] or "—",
                     _pair(m.best_tau[i], m.best_rho[i]),
                     *(_pair(m.tau[i, j], m.rho[i, j]) for j in range(len(m.programs)))])
    return header, body


def _legend(m: CrossMatrix) -> list[str]:
    out = ["Cells: Kendall tau / Spearman rho against the accuracy; — = invalid."]
    if any(m.train):
        out.append("* = held-out networks of a problem the programs were evolved on.")
    out += [f"{name} = {formula}" for name, formula in zip(m.programs, m.formulas)]
    return out


def format_matrix(m: CrossMatrix) -> str:
    """A plain-text table: one row per problem, best single proxy then each program."""
    header, body = _rows(m)
    widths = [max(len(r[k]) for r in [header, *body]) for k in range(len(header))]
    line = lambda r: "  ".join(c.ljust(w) if k == 0 or k == 2 else c.rjust(w)
                               for k, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, body), "",
                      *_legend(m)])


def _markdown(m: CrossMatrix) -> str:
    header, body = _rows(m)
    esc = lambda s: s.replace("|", "\\|").replace("*", "\\*")
    out = ["| " + " | ".join(map(esc, header)) + " |",
           "|" + "|".join(["---", "---:", "---", "---:"] + ["---:"] * len(m.programs)) + "|"]
    out += ["| " + " | ".join(map(esc, r)) + " |" for r in body]
    return "\n".join(out + [""] + [f"- {esc(x)}" for x in _legend(m)]) + "\n"


def _heatmap(m: CrossMatrix, path: Path) -> None:
    from eznas_store.outputs import figure, png, write_atomic

    cols = ["best proxy"] + list(m.programs)
    vals = np.column_stack([m.best_tau, m.tau]) if len(m.problems) else np.zeros((0, len(cols)))
    fig = figure(2.0 + 1.1 * len(cols), 1.2 + 0.45 * max(len(m.problems), 1), dpi=110)
    ax = fig.add_subplot(111)
    im = ax.imshow(np.ma.masked_invalid(vals), cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
    ax.set_facecolor("0.85")
    ax.set_xticks(range(len(cols)))
    ax.set_xticklabels(cols, rotation=30, ha="right")
    ax.set_yticks(range(len(m.problems)))
    ax.set_yticklabels([("* " if t else "") + p for p, t in zip(m.problems, m.train)])
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            v = vals[i, j]
            label = "—" if math.isnan(v) else f"{v:.3f}"
            if j == 0 and m.best_proxy[i]:
                label += f"\n{m.best_proxy[i]}"
            ax.text(j, i, label, ha="center", va="center", fontsize=7,
                    color="white" if not math.isnan(v) and abs(v) > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="Kendall tau")
    ax.set_title("Kendall tau per problem (* = held-out part of a training problem)", fontsize=9)
    write_atomic(path, png(fig))


def write_matrix(m: CrossMatrix, out_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """``matrix.csv`` (long form), ``matrix.md``, ``matrix.txt`` (what ``format_matrix``
    prints) and a heat map ``matrix.png`` in ``out_dir``."""
    import io

    from eznas_store.outputs import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"matrix.{k}" for k in ("csv", "md", "txt", "png")}
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["problem", "train", "n_networks", "kind", "name", "formula", "kendall_tau",
                "spearman_rho", "reason"])
    for i, prob in enumerate(m.problems):
        w.writerow([prob, int(m.train[i]), m.n_networks[i], "best_proxy", m.best_proxy[i],
                    m.best_proxy[i], m.best_tau[i], m.best_rho[i], ""])
        for j, name in enumerate(m.programs):
            w.writerow([prob, int(m.train[i]), m.n_networks[i], "program", name, m.formulas[j],
                        m.tau[i, j], m.rho[i, j], m.reasons[i][j] or ""])
    write_atomic(paths["csv"], buf.getvalue())
    write_atomic(paths["md"], _markdown(m))
    write_atomic(paths["txt"], format_matrix(m) + "\n")
    _heatmap(m, paths["png"])
    return paths
