"""Proxies that travel: formulas evolved on NB201 (plus k DARTS labels) ranked on held-out DARTS genotypes.

Usage (from the repository root; every data path is an argument)::

    OMP_NUM_THREADS=1 python benchmarks/bench_cross_space.py \\
        --nb201 zc_nasbench201.json.gz --nb201-accuracies nb201_accuracies.csv \\
        --darts DARTS_TABLE.csv --out DIR --ks 0,20,100 --seeds 5

Inputs. ``--nb201``: an NB201 proxy table / store with its three label sets (read by
``load_problems``), or Suite-Zero's ``zc_nasbench201.json.gz`` (its ``cifar10`` task's values
for every label) joined on the cell string with ``--nb201-accuracies`` (the NB201 accuracy CSV:
``cifar10_test``, ``cifar100_test``, ``imagenet16_test``); ``--nb201-extra`` CSVs (``arch`` +
value columns, e.g. SWAP on a cheap NB201 skeleton) add columns, keeping the cells they cover.
``--darts``: a DARTS proxy table (``eznas-proxy-table/1``, one label set). ``--extra-test
NAME=SOURCE``: more held-out sets (NB301's 725, ...) the chosen programs and baselines are
scored on, with no goal.

Terminals: the columns present in both spaces (by name; so space-specific columns never
enter), less ``--exclude``. With ``--terminals rank`` (default) each column is replaced by
its rank in [0, 1] within the cells being scored (train, validation or test part), so no
program can win by one space's scale; ``raw`` keeps the values.

For each k in ``--ks`` and each of ``--seeds`` seeds: ``--train`` NB201 cells (three label
sets = three tasks) and, for k > 0, k DARTS cells (one task) make the fitness (Kendall τ per
task, combined by min and, in a second run, by mean: ``--combine``); the program is chosen among
each run's saved programs and its ``--candidates`` best-trained ones by the worst τ over the
validation tasks: ``--validation`` NB201 cells (three labels), plus for k > 0 the same k DARTS
cells (no other DARTS label exists for the run). With k = 0 no DARTS label is read by any
step: not the fitness, not the choice, not the learned baselines. Held out, fixed by
``--test-seed`` for every row: ``--darts-test`` DARTS genotypes (≥ 700) and ``--nb201-test``
NB201 cells. Learned baselines (``eznas_store.fitness.learned``: random forest and gradient
boosting, hyper-parameters and target chosen on validation cells, rank-normalised features):
k = 0 trained on the same NB201 train + validation cells (CIFAR-10 label) and applied to DARTS;
k > 0 trained on the same k DARTS labels (half to fit, half to choose, refit on all k).

Writes ``DIR/cross_space.md``, ``DIR/cross_space.json`` and ``DIR/cross_space.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gzip
import json
import math
import shutil
import sys
import time
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
from tqdm import tqdm

from eznas_store.evolution import evolve as evolve_module
from eznas_store.evolution.evolve import EvolveConfig, run_evolve
from eznas_store.fitness.correlations import kendall_tau, spearman_rho
from eznas_store.fitness.learned import rank_columns
from eznas_store.fitness.problems import ProxyProblem, load_problems
from eznas_store.fitness.proxy_table_scorer import ProxyTableScorer
from eznas_store.outputs import ensure_dir, figure, png, write_atomic
from eznas_store.programs.codec import load_program
from eznas_store.programs.proxy_ops import PROXY_OPS
from eznas_store.sources import AZ_COMPONENTS, az_nas_aggregate, read_zc

NB201_LABELS = {"cifar10": "cifar10_test", "cifar100": "cifar100_test", "imagenet16": "imagenet16_test"}
#: the single-proxy rows asked for (those a table lacks are reported as absent)
BASELINES = ("swap", "AZ-NAS (aggregate)", "meco", "zico", "vkdnw", "vkdnw_agg", "params", "flops", "nwot",
             "synflow", "jacov", "eznas_a")
GOAL_K0_RHO, GOAL_K0_NB201_TAU, GOAL_K0_SEEDS, GOAL_K_RHO = 0.93, 0.76, 4, 0.95


# ----------------------------------------------------------------------------- options


def _args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nb201", required=True, help="NB201 proxy table/store, or Suite-Zero zc_nasbench201.json[.gz]")
    ap.add_argument("--nb201-accuracies", default=None, help="NB201 accuracy CSV (required with a Suite-Zero file)")
    ap.add_argument("--nb201-extra", action="append", default=[],
                    help="CSV of arch + extra NB201 columns (repeatable); cells it lacks are left out")
    ap.add_argument("--nb201-cells", type=int, default=0,
                    help="use a seeded sample of this many NB201 cells (0: all; bounds --nb201-swap's cost)")
    ap.add_argument("--nb201-swap", default=None, metavar="DATA_ROOT",
                    help="compute SWAP on NB201's stem-less one-cell network (C=3, stride 2) for the NB201 cells "
                         "used, from these CIFAR-10 images (cached in DIR/nb201_swap.csv)")
    ap.add_argument("--graph-features", action="store_true",
                    help="add the cells' graph features (those defined alike in both spaces) as columns")
    ap.add_argument("--darts", required=True, action="append",
                    help="DARTS proxy table (eznas-proxy-table/1) or proxies store; repeat to join several on the "
                         "genotype (the genotypes all hold; the first source's value of a column two hold)")
    ap.add_argument("--extra-test", action="append", default=[], help="NAME=SOURCE: another held-out set (no goal)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ks", default="0,20,100", help="DARTS labelled cells per run, comma-separated")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--train", type=int, default=100, help="NB201 train cells per seed")
    ap.add_argument("--validation", type=int, default=100, help="NB201 validation cells per seed")
    ap.add_argument("--nb201-test", type=int, default=1000)
    ap.add_argument("--darts-test", type=int, default=700)
    ap.add_argument("--test-seed", type=int, default=1000)
    ap.add_argument("--population", type=int, default=200)
    ap.add_argument("--generations", type=int, default=30)
    ap.add_argument("--max-depth", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--combine", default="min,mean", help="fitness combines to run (each a run; validation chooses)")
    ap.add_argument("--terminals", choices=("rank", "raw"), default="rank")
    ap.add_argument("--exclude", default="", help="comma-separated columns not to use as terminals")
    ap.add_argument("--no-learned", action="store_true", help="skip the forest / boosting baselines")
    ap.add_argument("--learned-trees", type=int, default=300, help="trees of the forest / boosting stages")
    ap.add_argument("--allow-small", action="store_true", help="shrink the held-out parts to what is left")
    a = ap.parse_args(argv)
    try:
        a.ks = sorted({int(k) for k in a.ks.split(",") if k.strip()})
    except ValueError:
        ap.error(f"--ks must be comma-separated integers, got {a.ks!r}")
    a.combine = [c for c in a.combine.split(",") if c]
    if not a.ks or min(a.ks) < 0 or any(k == 1 for k in a.ks):
        ap.error("--ks: integers >= 0, none equal to 1 (a task needs two cells)")
    if not a.combine or any(c not in ("min", "mean") for c in a.combine):
        ap.error("--combine: min, mean or min,mean")
    if a.train < 2 or a.validation < 2 or a.seeds < 0 or a.learned_trees < 1:
        ap.error("--train and --validation must be >= 2, --seeds >= 0, --learned-trees >= 1")
    return a


# ----------------------------------------------------------------------------- loading


def _read_csv(path: str) -> list[dict[str, str]]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(f))


def _floats(rows: list[dict[str, str]], col: str) -> np.ndarray:
    out = []
    for r in rows:
        try:
            out.append(float(r[col]))
        except (TypeError, ValueError):
            out.append(math.nan)
    return np.array(out, dtype=np.float64)


def load_nb201(source: str, accuracies: str | None, extra: list[str]) -> list[ProxyProblem]:
    """The NB201 side: three problems (CIFAR-10, CIFAR-100, ImageNet16-120 test accuracy) over
    the same cells, with any ``extra`` columns joined on the cell string."""
    if source.endswith((".json", ".json.gz")):
        if not accuracies:
            sys.exit("bench_cross_space: error: --nb201 is a Suite-Zero file: give --nb201-accuracies (the NB201 "
                     "accuracy CSV) for the three label sets")
        zc = read_zc(source)
        if "cifar10" not in zc:
            sys.exit(f"bench_cross_space: error: {source} has no cifar10 task (it has {', '.join(zc)})")
        t = zc["cifar10"]
        acc = {r["arch"]: r for r in _read_csv(accuracies)}
        archs = [a for a in t.archs if a in acc]
        pos = {a: i for i, a in enumerate(t.archs)}
        rows = [pos[a] for a in archs]
        cols = {k: v[rows] for k, v in t.proxies.items()}
        sub = [acc[a] for a in archs]
        problems = [ProxyProblem(name=f"nb201-{lab}", archs=archs, columns=cols, accuracy=_floats(sub, col),
                                 source=f"{source}+{accuracies}:{col}") for lab, col in NB201_LABELS.items()]
    else:
        problems = [ProxyProblem(name=p.name.split(":")[0], archs=p.archs, columns=p.columns, accuracy=p.accuracy,
                                 source=p.source) for p in load_problems(source)]
        if len(problems) != 3:
            sys.exit(f"bench_cross_space: error: {source} holds {len(problems)} label set(s); the NB201 side needs "
                     "three (cifar10, cifar100, imagenet16)")
    for path in extra:
        problems = _join_extra(problems, path)
    return [_finite(p) for p in problems]


def _join_extra(problems: list[ProxyProblem], path: str) -> list[ProxyProblem]:
    rows = _read_csv(path)
    if not rows or "arch" not in rows[0]:
        sys.exit(f"bench_cross_space: error: {path}: an --nb201-extra CSV needs an 'arch' column and rows")
    by_arch = {r["arch"]: r for r in rows}
    names = [c for c in rows[0] if c not in ("arch", "index", "seconds")]
    keep = np.array([a in by_arch for a in problems[0].archs])
    idx = np.flatnonzero(keep)
    sub = [by_arch[problems[0].archs[i]] for i in idx]
    new = {c: _floats(sub, c) for c in names}
    return [ProxyProblem(name=p.name, archs=[p.archs[i] for i in idx],
                         columns={**{k: v[idx] for k, v in p.columns.items()}, **new},
                         accuracy=p.accuracy[idx], source=p.source) for p in problems]


SWAP_NB201 = {"C": 3, "N": 1, "stride": 2, "images": 16, "image_seed": 0, "init_seed": 0}


def nb201_swap(archs, data_root: str, cache: Path) -> dict[str, float]:
    """SWAP of NB201 cells on the stem-less one-cell network (``nb201.build_swap``, :data:`SWAP_NB201`):
    SWAP's protocol (32 N(0, 1) re-inits, train mode, 16 CIFAR-10 training images drawn with seed 0),
    cached per cell in ``cache`` (a rerun continues it)."""
    import torch

    from eznas_store.collect.proxies.swap import SwapState
    from eznas_store.sources.datasets import sample_batch
    from eznas_store.sources.spaces.nb201 import build_swap

    done = {r["arch"]: float(r["swap"]) for r in _read_csv(str(cache))} if cache.exists() else {}
    todo = [a for a in archs if a not in done]
    if todo:
        x = sample_batch("cifar10", data_root, batch_size=SWAP_NB201["images"], seed=SWAP_NB201["image_seed"]).images
        new = not cache.exists()
        with open(cache, "a", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            if new:
                w.writerow(["arch", "swap", "seconds"])
            for a in tqdm(todo, desc="SWAP on NB201 (stem-less, C=3)", unit="cell"):
                t0 = time.perf_counter()
                with torch.no_grad():
                    net = build_swap(a, C=SWAP_NB201["C"], N=SWAP_NB201["N"], stride=SWAP_NB201["stride"])
                    v = SwapState(net, x, SWAP_NB201["init_seed"]).mean_patterns()
                w.writerow([a, repr(float(v)), f"{time.perf_counter() - t0:.4f}"])
                f.flush()
                done[a] = float(v)
    return {a: done[a] for a in archs}


def with_columns(p: ProxyProblem, new: dict[str, np.ndarray]) -> ProxyProblem:
    return ProxyProblem(name=p.name, archs=p.archs, columns={**p.columns, **new}, accuracy=p.accuracy,
                        source=p.source, split=p.split, dropped=p.dropped, dropped_columns=p.dropped_columns)


def graph_feature_columns(space: str, archs) -> dict[str, np.ndarray]:
    """The graph features (``sources.spaces.graph``) plus ``graph_op_conv``, the conv edges of
    any kind (the spaces' conv op names differ, so only the total is shared)."""
    try:
        from eznas_store.sources.spaces.graph import graph_columns
    except ImportError:
        sys.exit("bench_cross_space: error: --graph-features needs eznas_store.sources.spaces.graph")
    cols = graph_columns(space, list(archs))
    conv = [c for c in cols if c.startswith("graph_op_") and "conv" in c]
    cols["graph_op_conv"] = np.sum([cols[c] for c in conv], axis=0) if conv else np.zeros(len(archs))
    return cols


def _finite(p: ProxyProblem) -> ProxyProblem:
    """Cells with a finite accuracy and finite values in every column."""
    ok = np.isfinite(p.accuracy)
    for v in p.columns.values():
        ok &= np.isfinite(v)
    return p if ok.all() else p.subset(np.flatnonzero(ok), name=p.name, split="all")


def _same_cells(problems: list[ProxyProblem]) -> list[ProxyProblem]:
    """The cells finite in every problem (so the three label sets hold out the same cells)."""
    common = set.intersection(*(set(p.archs) for p in problems))
    return [p.subset(np.array([i for i, a in enumerate(p.archs) if a in common]), name=p.name, split="all")
            for p in problems]


def load_darts(sources) -> ProxyProblem:
    """The DARTS side: the first label set of each source, joined on the genotype."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    parts = [load_problems(src)[0] for src in sources]
    p = parts[0]
    archs = [x for x in p.archs if all(x in set(q.archs) for q in parts[1:])]
    cols: dict[str, np.ndarray] = {}
    for q in parts:
        pos = {x: i for i, x in enumerate(q.archs)}
        rows = [pos[x] for x in archs]
        cols |= {k: v[rows] for k, v in q.columns.items() if k not in cols}
    pos = {x: i for i, x in enumerate(p.archs)}
    return ProxyProblem(name="darts", archs=archs, columns=cols, accuracy=p.accuracy[[pos[x] for x in archs]],
                        source="+".join(sources), dropped_columns=p.dropped_columns)


def restrict(p: ProxyProblem, cols, *, name: str | None = None, rank: bool = False) -> ProxyProblem:
    """``p`` with only ``cols`` (ranked in [0, 1] within its own cells when ``rank``)."""
    return ProxyProblem(name=name or p.name, archs=p.archs,
                        columns={c: rank_columns(p.columns[c]) if rank else p.columns[c] for c in cols},
                        accuracy=p.accuracy, source=p.source, split=p.split)


# ----------------------------------------------------------------------------- splits


def split_indices(n: int, n_test: int, test_seed: int, *, allow_small: bool, need: int, what: str):
    """(test rows, the rest in a fixed order): the held-out part is the same for every row and seed."""
    if n - n_test < need:
        if not allow_small or n - need < 2:
            sys.exit(f"bench_cross_space: error: {what} has {n} usable cells, fewer than {n_test} held out + {need} "
                     "for training and validation (--allow-small shrinks the held-out part)")
        n_test = n - need
    perm = np.random.default_rng(test_seed).permutation(n)
    return np.sort(perm[:n_test]), perm[n_test:]


# ----------------------------------------------------------------------------- evolution


class CrossSpaceScorer:
    """The ``evolve --over proxies`` population scorer over problems given in memory, each with
    its own number of cells (NB201's train cells, k DARTS cells): ``ProxyTablePopulationScorer``
    splits every source into the same count, which one DARTS task of k cells does not fit."""

    terminal_set = "proxies"
    ops = PROXY_OPS

    def __init__(self, problems: list[ProxyProblem], combine: str) -> None:
        self.train, self.test = list(problems), []
        self.scorer = ProxyTableScorer(self.train, combine=combine)
        self.terminals = tuple(self.scorer.terminals)

    def describe(self) -> list[dict]:
        return [{"name": p.name, "n_networks": len(p), "role": "train", "source": p.source} for p in self.train]

    def fitness(self, programs, desc: str = ""):
        return self.scorer.fitness(list(programs), desc=desc)

    @staticmethod
    def peak_rss_mb() -> float:
        return 0.0

    def finish(self, out: Path, programs) -> None:
        pass

    def close(self) -> None:
        pass


def _top_trained(run: Path, k: int) -> dict:
    """The ``k`` best-trained programs of a run (its checkpoint's fitness cache)."""
    from eznas_store.programs.formula import parse_formula
    from eznas_store.programs.tree import Program

    cache = json.loads((run / "checkpoint.json").read_text()).get("cache", {})
    scored = [(v["value"], key) for key, v in cache.items()
              if key.startswith("proxies/mean:") and v and v.get("value") is not None and math.isfinite(v["value"])]
    return {f"train_top_{r + 1}": Program(parse_formula(key.split(":", 1)[1], ops=PROXY_OPS, terminals=None),
                                          terminal_set="proxies")
            for r, (_, key) in enumerate(sorted(scored, reverse=True)[:k])}


def evolve_candidates(train: list[ProxyProblem], combine: str, seed: int, a, run: Path, sources) -> tuple[dict, float]:
    """One ``evolve --over proxies`` run on ``train``: its saved and best-trained programs."""
    if run.exists():
        shutil.rmtree(run)
    ensure_dir(run.parent)
    scorer = CrossSpaceScorer(train, combine)
    cfg = EvolveConfig(stores=tuple(sources), out=str(run), over="proxies", seed=seed, population=a.population,
                       generations=a.generations, max_depth=a.max_depth, combine=combine, progress=False,
                       train_networks=len(train[0]))
    t0 = time.perf_counter()
    with mock.patch.object(evolve_module, "_population_scorer", lambda _cfg: scorer):
        run_evolve(cfg)
    secs = time.perf_counter() - t0
    cands = {f"{combine}:{f.stem}": load_program(f) for f in sorted((run / "programs").glob("*.json"))}
    cands |= {f"{combine}:{k}": v for k, v in _top_trained(run, a.candidates).items()}
    return cands, secs


def choose(cands: dict, validation: list[ProxyProblem]) -> tuple[str, float]:
    """The candidate with the best worst τ over the validation tasks."""
    names = list(cands)
    fits = ProxyTableScorer(validation, combine="min").fitness([cands[k] for k in names])
    vals = [f.value if math.isfinite(f.value) else -math.inf for f in fits]
    i = int(np.argmax(vals))
    return names[i], float(vals[i])


def program_scores(program, problems: list[ProxyProblem]) -> list[np.ndarray]:
    return [s[0] for s in ProxyTableScorer(problems).scores([program])]


# ----------------------------------------------------------------------------- learned baselines


def _learned(model: str, x_fit, y_fit, x_val, y_val, seed: int, trees: int = 300):
    """A fitted predictor (``fitness.learned`` when present, else a plain scikit-learn model)."""
    try:
        from eznas_store.fitness.learned import LearnedConfig, fit_learned, predict_learned
    except ImportError:  # pragma: no cover - the module arrived with issue 26
        from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor

        est = (RandomForestRegressor(n_estimators=trees, random_state=seed, n_jobs=1, min_samples_leaf=3)
               if model == "forest" else GradientBoostingRegressor(n_estimators=trees, random_state=seed, max_depth=2,
                                                                   learning_rate=0.05))
        est.fit(np.concatenate([x_fit, x_val]), np.concatenate([y_fit, y_val]))
        return est.predict
    m = fit_learned(x_fit, y_fit, x_val, y_val,
                    LearnedConfig(model=model, seed=seed, rank_features=True, n_estimators=trees), features=())
    return lambda x: predict_learned(m, x)


def _ranked_matrix(p: ProxyProblem, cols) -> np.ndarray:
    return rank_columns(np.stack([p.columns[c] for c in cols], axis=1))


# ----------------------------------------------------------------------------- correlations


def corr(scores: np.ndarray, p: ProxyProblem) -> tuple[float, float]:
    return float(kendall_tau(np.asarray(scores, dtype=np.float64), p.accuracy)), \
        float(spearman_rho(np.asarray(scores, dtype=np.float64), p.accuracy))


def baseline_rows(problem: ProxyProblem) -> dict[str, tuple[float, float]]:
    """τ, ρ of every column of a held-out problem and of the AZ-NAS aggregate."""
    rows = {c: corr(v, problem) for c, v in sorted(problem.columns.items())}
    if all(c in problem.columns for c in AZ_COMPONENTS):
        rows["AZ-NAS (aggregate)"] = corr(az_nas_aggregate(problem.columns), problem)
    return rows


def _fmt(x) -> str:
    return "—" if x is None or not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:.3f}"


# ----------------------------------------------------------------------------- the benchmark


def run(a) -> dict:
    out = ensure_dir(a.out)
    exclude = {c for c in a.exclude.split(",") if c}
    nb = _same_cells(load_nb201(a.nb201, a.nb201_accuracies, a.nb201_extra))
    if a.nb201_cells and a.nb201_cells < len(nb[0]):
        rows = np.sort(np.random.default_rng(a.test_seed + 2).permutation(len(nb[0]))[: a.nb201_cells])
        nb = [p.subset(rows, name=p.name, split="all") for p in nb]
    darts = _finite(load_darts(a.darts))
    if a.nb201_swap:
        t0 = time.perf_counter()
        sw = nb201_swap(nb[0].archs, a.nb201_swap, out / "nb201_swap.csv")
        swap_seconds = time.perf_counter() - t0
        col = np.array([sw[x] for x in nb[0].archs])
        nb = [with_columns(p, {"swap": col}) for p in nb]
    if a.graph_features:
        g = graph_feature_columns("nb201", nb[0].archs)
        nb = [with_columns(p, g) for p in nb]
        darts = with_columns(darts, graph_feature_columns("darts", darts.archs))
    extra = {}
    for spec in a.extra_test:
        name, _, src = spec.partition("=")
        if not src:
            sys.exit(f"bench_cross_space: error: --extra-test wants NAME=SOURCE, got {spec!r}")
        extra[name] = _finite(load_problems(src)[0])
        if a.graph_features:  # DARTS-space genotypes (NB301's Suite-Zero cells are); else none added
            with contextlib.suppress(Exception):
                extra[name] = with_columns(extra[name], graph_feature_columns("darts", extra[name].archs))
    common = sorted((set(nb[0].columns) & set(darts.columns)) - exclude)
    if not common:
        sys.exit(f"bench_cross_space: error: no column is in both spaces (NB201: {', '.join(sorted(nb[0].columns))}; "
                 f"DARTS: {', '.join(sorted(darts.columns))})")
    rank = a.terminals == "rank"
    max_k = max(a.ks)
    nb_test_rows, nb_pool = split_indices(len(nb[0]), a.nb201_test, a.test_seed, allow_small=a.allow_small,
                                          need=a.train + a.validation, what="the NB201 source")
    d_test_rows, d_pool = split_indices(len(darts), a.darts_test, a.test_seed + 1, allow_small=a.allow_small,
                                        need=max_k, what="the DARTS table")
    nb_test_full = [p.subset(nb_test_rows, name=f"{p.name}[test]", split="test") for p in nb]
    d_test_full = darts.subset(d_test_rows, name="darts[test]", split="test")
    nb_test = [restrict(p, common, rank=rank) for p in nb_test_full]
    d_test = restrict(d_test_full, common, rank=rank)
    extra_test = {n: restrict(p, [c for c in common if c in p.columns], rank=rank) for n, p in extra.items()}
    doc = {
        "inputs": {"nb201": a.nb201, "nb201_accuracies": a.nb201_accuracies, "nb201_extra": a.nb201_extra,
                   "darts": a.darts, "extra_test": a.extra_test},
        "settings": {k: getattr(a, k) for k in ("ks", "seeds", "train", "validation", "test_seed", "population",
                                                 "generations", "max_depth", "candidates", "combine", "terminals")},
        "cells": {"nb201_usable": len(nb[0]), "nb201_test": len(nb_test_rows), "darts_usable": len(darts),
                  "darts_test": len(d_test_rows), "darts_pool": len(d_pool)},
        "columns": {"common": common, "nb201_only": sorted(set(nb[0].columns) - set(common)),
                    "darts_only": sorted(set(darts.columns) - set(common)), "excluded": sorted(exclude)},
        "baselines": {"darts": baseline_rows(d_test_full),
                      "nb201": {p.name: baseline_rows(p) for p in nb_test_full},
                      **{n: baseline_rows(p) for n, p in extra.items()}},
        "runs": [], "learned": [],
    }
    if a.nb201_swap:
        secs = [float(r["seconds"]) for r in _read_csv(str(out / "nb201_swap.csv")) if r["arch"] in set(nb[0].archs)]
        doc["nb201_swap"] = {"network": SWAP_NB201, "cells": len(nb[0]), "seconds_per_cell": float(np.mean(secs)),
                             "wall_this_run": swap_seconds}
    sources = (a.nb201, *a.darts)
    jobs = [(k, s) for k in a.ks for s in range(a.seeds)]
    bar = tqdm(jobs, desc="cross-space runs", unit="run")
    for k, seed in bar:
        bar.set_postfix(k=k, seed=seed)
        perm = np.random.default_rng(seed).permutation(nb_pool)
        tr_rows, va_rows = np.sort(perm[: a.train]), np.sort(perm[a.train: a.train + a.validation])
        nb_tr = [restrict(p.subset(tr_rows, name=f"{p.name}[train]", split="train"), common, rank=rank) for p in nb]
        nb_va = [restrict(p.subset(va_rows, name=f"{p.name}[validation]", split="train"), common, rank=rank)
                 for p in nb]
        d_rows = np.sort(np.random.default_rng(10_000 + seed).permutation(d_pool)[:k]) if k else np.array([], int)
        d_tr = [restrict(darts.subset(d_rows, name=f"darts[k={k}]", split="train"), common, rank=rank)] if k else []
        train, validation = nb_tr + d_tr, nb_va + d_tr
        cands, secs = {}, {}
        for combine in a.combine:
            c, t = evolve_candidates(train, combine, seed, a, out / f"k{k}" / f"seed{seed}" / combine, sources)
            cands |= c
            secs[combine] = t
        role, val = choose(cands, validation)
        prog = cands[role]
        r = {"k": k, "seed": seed, "formula": prog.formula(), "chosen": role, "validation_min_tau": val,
             "seconds": secs, "darts": corr(program_scores(prog, [d_test])[0], d_test),
             "nb201": {p.name: corr(s, p) for p, s in zip(nb_test, program_scores(prog, nb_test))}}
        r["extra"] = {n: (corr(program_scores(prog, [p])[0], p) if prog.tree.terminal_names() <= set(p.columns)
                          else None) for n, p in extra_test.items()}
        doc["runs"].append(r)
        tqdm.write(f"k={k} seed={seed}: {r['formula']}  val {val:.3f}  DARTS tau {r['darts'][0]:.3f} rho "
                   f"{r['darts'][1]:.3f}  NB201 tau " + " ".join(f"{v[0]:.3f}" for v in r["nb201"].values()))
        if not a.no_learned:
            doc["learned"] += _learned_rows(k, seed, nb, tr_rows, va_rows, darts, d_rows, common, d_test, nb_test,
                                            extra_test, a.learned_trees)
    write_outputs(doc, out, a)
    return doc


def _learned_rows(k, seed, nb, tr_rows, va_rows, darts, d_rows, common, d_test, nb_test, extra_test,
                  trees: int) -> list[dict]:
    """Forest and boosting: k = 0 on the NB201 train + validation cells (CIFAR-10 label), else
    on the k DARTS labels (half fit, half choose); rank-normalised features everywhere."""
    rows = []
    for model in ("forest", "boosting"):
        if k == 0:
            c10 = nb[0]
            xf, yf = _ranked_matrix(c10.subset(tr_rows, name="f", split="train"), common), c10.accuracy[tr_rows]
            xv, yv = _ranked_matrix(c10.subset(va_rows, name="v", split="train"), common), c10.accuracy[va_rows]
            trained_on = "NB201 (CIFAR-10 label)"
        else:
            half = max(2, k // 2)
            fit, val = d_rows[:half], d_rows[half:]
            if len(val) < 2:
                continue
            xf, yf = _ranked_matrix(darts.subset(fit, name="f", split="train"), common), darts.accuracy[fit]
            xv, yv = _ranked_matrix(darts.subset(val, name="v", split="train"), common), darts.accuracy[val]
            trained_on = f"{k} DARTS labels"
        predict = _learned(model, xf, yf, xv, yv, seed, trees)
        row = {"k": k, "seed": seed, "model": model, "trained_on": trained_on,
               "darts": corr(predict(_ranked_matrix(d_test, common)), d_test),
               "nb201": {p.name: corr(predict(_ranked_matrix(p, common)), p) for p in nb_test}}
        row["extra"] = {n: (corr(predict(_ranked_matrix(p, common)), p) if set(common) <= set(p.columns) else None)
                        for n, p in extra_test.items()}
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- outputs


def summarise(doc: dict) -> dict:
    """Per k: mean and worst over seeds of the evolved programs and of each learned model."""
    out = {}
    for k in doc["settings"]["ks"]:
        runs = [r for r in doc["runs"] if r["k"] == k]
        groups = {"evolved": runs}
        for model in ("forest", "boosting"):
            groups[model] = [r for r in doc["learned"] if r["k"] == k and r["model"] == model]
        out[k] = {}
        for name, rs in groups.items():
            if not rs:
                continue
            labels = list(rs[0]["nb201"])
            out[k][name] = {
                "n": len(rs),
                "darts_tau": (float(np.mean([r["darts"][0] for r in rs])), float(np.min([r["darts"][0] for r in rs]))),
                "darts_rho": (float(np.mean([r["darts"][1] for r in rs])), float(np.min([r["darts"][1] for r in rs]))),
                "nb201_tau": {lab: (float(np.mean([r["nb201"][lab][0] for r in rs])),
                                    float(np.min([r["nb201"][lab][0] for r in rs]))) for lab in labels},
            }
    return out


def goals(doc: dict, summary: dict) -> list[str]:
    """One line per goal: met or missed, with the margin."""
    swap = doc["baselines"]["darts"].get("swap")
    swap_rho = swap[1] if swap else -math.inf
    lines = []
    runs0 = [r for r in doc["runs"] if r["k"] == 0]
    if runs0:
        forest0 = summary[0].get("forest", {}).get("darts_rho", (-math.inf,))[0]
        ok = [r for r in runs0 if r["darts"][1] >= GOAL_K0_RHO and r["darts"][1] > swap_rho
              and min(v[0] for v in r["nb201"].values()) >= GOAL_K0_NB201_TAU and r["darts"][1] > forest0]
        best = max(runs0, key=lambda r: r["darts"][1])
        lines.append(
            f"k = 0: {len(ok)}/{len(runs0)} seeds reach DARTS ρ ≥ {GOAL_K0_RHO} above SWAP ({_fmt(swap_rho)}) and the "
            f"NB201 forest ({_fmt(forest0)}) with NB201 τ ≥ {GOAL_K0_NB201_TAU} on all three labels (goal "
            f"≥ {GOAL_K0_SEEDS}/5: {'met' if len(ok) >= GOAL_K0_SEEDS else 'missed'}). Best seed: DARTS ρ "
            f"{_fmt(best['darts'][1])} ({best['darts'][1] - GOAL_K0_RHO:+.3f} to the goal, "
            + (f"{best['darts'][1] - swap_rho:+.3f} to SWAP" if swap else "no SWAP column") + "), NB201 worst τ "
            + f"{_fmt(min(v[0] for v in best['nb201'].values()))} "
            + f"({min(v[0] for v in best['nb201'].values()) - GOAL_K0_NB201_TAU:+.3f}).")
    for k in [k for k in doc["settings"]["ks"] if 0 < k <= 100]:
        s = summary[k]
        ev = s["evolved"]["darts_rho"]
        rivals = {m: s[m]["darts_rho"][0] for m in ("forest", "boosting") if m in s}
        above = all(ev[0] > v for v in rivals.values())
        met = ev[0] >= GOAL_K_RHO and above
        lines.append(f"k = {k}: evolved DARTS ρ mean {_fmt(ev[0])} (worst {_fmt(ev[1])}; {ev[0] - GOAL_K_RHO:+.3f} to "
                     f"{GOAL_K_RHO}); " + ", ".join(f"{m} {_fmt(v)}" for m, v in rivals.items())
                     + f" on the same labels: {'met' if met else 'missed'}.")
    return lines


def markdown(doc: dict, summary: dict, a) -> str:
    c, cols = doc["cells"], doc["columns"]
    nb_labels = list(doc["baselines"]["nb201"])
    extra_names = [n for n in doc["baselines"] if n not in ("darts", "nb201")]
    head = ("| method | k | DARTS τ | DARTS ρ | " + " | ".join(f"NB201 {lab.split('-', 1)[-1]} τ" for lab in nb_labels)
            + "".join(f" | {n} ρ" for n in extra_names) + " |\n|---|---|---|---|" + "---|" * len(nb_labels)
            + "---|" * len(extra_names) + "\n")
    body = []
    for k, groups in summary.items():
        for name, s in groups.items():
            for stat, j in (("mean", 0), ("worst", 1)):
                label = {"evolved": "evolved program", "forest": "random forest", "boosting": "gradient boosting"}[name]
                ex = [r for r in (doc["runs"] if name == "evolved" else
                                  [x for x in doc["learned"] if x["model"] == name]) if r["k"] == k]
                extra_cells = "".join(
                    f" | {_fmt(_agg([r['extra'][n][1] for r in ex if r['extra'].get(n)], j))}" for n in extra_names)
                body.append(f"| {label} ({stat} of {s['n']}) | {k} | {_fmt(s['darts_tau'][j])} | {_fmt(s['darts_rho'][j])} | "
                            + " | ".join(_fmt(s["nb201_tau"][lab][j]) for lab in nb_labels) + extra_cells + " |")
    for name in BASELINES:
        d = doc["baselines"]["darts"].get(name)
        n = [doc["baselines"]["nb201"][lab].get(name) for lab in nb_labels]
        if d is None and not any(n):
            continue
        note = "" if name in cols["common"] or name == "AZ-NAS (aggregate)" and d and all(n) else " (one space only)"
        body.append(f"| {name}{note} | — | {_fmt(d[0] if d else None)} | {_fmt(d[1] if d else None)} | "
                    + " | ".join(_fmt(x[0] if x else None) for x in n)
                    + "".join(f" | {_fmt((doc['baselines'][e].get(name) or (None, None))[1])}" for e in extra_names)
                    + " |")
    absent = [n for n in BASELINES if doc["baselines"]["darts"].get(n) is None
              and not any(doc["baselines"]["nb201"][lab].get(n) for lab in nb_labels)]
    runs = "".join(f"| {r['k']} | {r['seed']} | `{r['formula']}` | {r['chosen']} | {_fmt(r['validation_min_tau'])} | "
                   f"{_fmt(r['darts'][0])} | {_fmt(r['darts'][1])} | "
                   + " | ".join(_fmt(v[0]) for v in r["nb201"].values()) + " |\n" for r in doc["runs"])
    secs = [t for r in doc["runs"] for t in r["seconds"].values()]
    picks = {c: sum(r["chosen"].startswith(c + ":") for r in doc["runs"]) for c in a.combine}
    missing = [n for n in cols["darts_only"] if not n.startswith("graph_")]
    return (
        f"# Cross-space proxies: NB201 → DARTS\n\n"
        f"Held out (test seed {a.test_seed}, the same cells for every row): {c['darts_test']} of {c['darts_usable']} "
        f"DARTS genotypes (`{' + '.join(a.darts)}`), {c['nb201_test']} of {c['nb201_usable']} NB201 cells (`{a.nb201}`). Per seed "
        f"{a.train} NB201 train + {a.validation} validation cells; k DARTS labelled cells from the other "
        f"{c['darts_pool']} (nested: the k = 20 cells are among the k = 100 ones of the same seed).\n\n"
        f"Terminals ({a.terminals}{', within-part ranks in [0, 1]' if a.terminals == 'rank' else ''}): "
        f"{', '.join(cols['common'])}. Columns in one space only (not terminals): NB201 "
        f"{', '.join(cols['nb201_only']) or '—'}; DARTS {', '.join(cols['darts_only']) or '—'}.\n\n"
        f"Evolution: population {a.population}, {a.generations} generations, depth ≤ {a.max_depth}, fitness Kendall τ "
        f"per task combined by {' and by '.join(a.combine)} (one run each); the program is chosen among the runs' saved "
        f"and {a.candidates} best-trained programs by the worst validation τ (NB201 validation cells, three labels; for "
        f"k > 0 also the k DARTS cells). With k = 0 no DARTS label is read by any step. "
        f"{len(secs)} runs, {np.mean(secs) if secs else 0:.1f} s each on average. The validation choice took the "
        + ", ".join(f"{c}-fitness run's program in {n}/{len(doc['runs'])}" for c, n in picks.items()) + ".\n\n"
        + (f"Not on the NB201 side, so no evolved program can use them: {', '.join(missing)}.\n\n" if missing else "")
        + (f"NB201 `swap`: SWAP's protocol on a stem-less one-cell NB201 network ("
           f"{doc['nb201_swap']['network']}), {doc['nb201_swap']['seconds_per_cell']:.2f} s per cell on one thread.\n\n"
           if "nb201_swap" in doc else "")
        + head + "\n".join(body) + "\n\n"
        + (f"Not in either table (not computed here): {', '.join(absent)}.\n\n" if absent else "")
        + "## Goals\n\n" + "".join(f"- {line}\n" for line in goals(doc, summary))
        + "\n## Chosen programs\n\n| k | seed | formula | chosen as | validation min τ | DARTS τ | DARTS ρ | "
        + " | ".join(f"NB201 {lab.split('-', 1)[-1]} τ" for lab in nb_labels) + " |\n|---|---|---|---|---|---|---|"
        + "---|" * len(nb_labels) + "\n" + runs)


def _agg(values, j):
    if not values:
        return None
    return float(np.mean(values)) if j == 0 else float(np.min(values))


def plot(doc: dict, summary: dict, path: Path) -> None:
    """DARTS ρ per method and k: evolved and learned with error bars over seeds, single proxies as lines."""
    fig = figure(8, 4.5)
    ax = fig.add_subplot(111)
    ks = list(summary)
    methods = [m for m in ("evolved", "forest", "boosting") if any(m in summary[k] for k in ks)]
    width = 0.8 / max(len(methods), 1)
    for j, m in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        rs = doc["runs"] if m == "evolved" else [r for r in doc["learned"] if r["model"] == m]
        for i, k in enumerate(ks):
            vals = [r["darts"][1] for r in rs if r["k"] == k]
            if vals:
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                ys.append(np.mean(vals))
                lo.append(np.mean(vals) - np.min(vals))
                hi.append(np.max(vals) - np.mean(vals))
        ax.bar(xs, ys, width=width, yerr=[lo, hi], capsize=3, label=m)
    for name, style in (("swap", "--"), ("params", ":"), ("AZ-NAS (aggregate)", "-."), ("meco", (0, (1, 3)))):
        v = doc["baselines"]["darts"].get(name)
        if v:
            ax.axhline(v[1], ls=style, color="k", lw=0.8, label=f"{name} ({v[1]:.3f})")
    ax.axhline(GOAL_K0_RHO, color="r", lw=0.6, label=f"goal k=0 ({GOAL_K0_RHO})")
    ax.set_xticks(range(len(ks)), [f"k = {k}" for k in ks])
    ax.set_ylabel("Spearman ρ on held-out DARTS genotypes")
    lows = [r["darts"][1] for r in doc["runs"] + doc["learned"]] + [0.5]
    ax.set_ylim(max(-1.0, min(lows) - 0.05), 1.0)
    ax.legend(fontsize=7, loc="lower right")
    write_atomic(path, png(fig))


def write_outputs(doc: dict, out: Path, a) -> None:
    summary = summarise(doc)
    doc["summary"] = {str(k): v for k, v in summary.items()}
    doc["goals"] = goals(doc, summary)
    write_atomic(out / "cross_space.md", markdown(doc, summary, a))
    write_atomic(out / "cross_space.json", json.dumps(doc, indent=1, default=float) + "\n")
    plot(doc, summary, out / "cross_space.png")


def main(argv=None) -> None:
    a = _args(argv)
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)
    t0 = time.perf_counter()
    run(a)
    print((Path(a.out) / "cross_space.md").read_text())
    print(f"wall {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
