"""Evolved proxy formulas vs every hand-crafted proxy and learned predictors on the same held-out NB201 cells.

Usage (from the repository root, after ``eznas-store proxy-table ... --export T.csv``)::

    OMP_NUM_THREADS=1 python benchmarks/bench_proxy_quality.py --table T.csv --out DIR \\
        --labels 50 100 200 --gp-labels 100 200 --test 1000 --seeds 5

or, without computing any proxy, over NASLib's 13 proxies of the 9,445 Suite-Zero NB201 cells
(task ``cifar10`` for the CIFAR-10 and CIFAR-100 labels, ``ImageNet16-120`` for ImageNet16-120,
as ``proxy-table`` joins them) and the NB201 test accuracies of the same cells::

    OMP_NUM_THREADS=1 python benchmarks/bench_proxy_quality.py --suitezero zc_nasbench201.json.gz \\
        --accuracies nb201_accuracies.csv --out DIR --no-eznas-a --test 1000 --seeds 5

One run over one fixed held-out part of the table's cells (``--test``, drawn with
``--test-seed``; the same for every row of the table, and no choice ever looks at it): Kendall
τ and Spearman ρ on the CIFAR-10 / CIFAR-100 / ImageNet16-120 test accuracies of

- every proxy column of the table (NASLib's 13, the modern ones of a ``proxy-table``, and with
  ``--graph-features`` the cell's graph features),
- the AZ-NAS aggregate (Σ_m ln(rank_m / N) over the held-out cells) where the table has it,
- EZNAS-A and any ``--statistics-program``, scored on the fly at batch 16 (``--table`` only),
- learned predictors (``--learned``: a random forest, gradient boosting) at each of
  ``--labels`` L labelled cells per seed: the seed's L cells (the same the evolve of that seed
  and L gets), half train, half validation; hyper-parameters and target chosen on the
  validation half only (:mod:`eznas_store.fitness.learned`), refit on all L; one model per
  label, and the CIFAR-10 model applied to all three labels (``CIFAR-10 only``); mean and
  worst over the seeds,
- the formulas evolved with ``evolve --over proxies`` at each of ``--gp-labels`` L: per seed,
  L/2 cells to evolve on (``--gp-combine``: min or mean τ over the three labels, or one run
  per label) and L/2 validation cells to choose, among the run's saved programs and its
  ``--candidates`` best-trained ones, the best by validation; with ``--ensemble K`` the
  validation cells then greedily add up to K-1 more candidates as a sum of ranks while the
  validation fitness improves; ``--rank-terminals`` evolves over within-table ranks of the
  columns; mean and worst over the seeds.

``--oracle K`` adds a ceiling row: the best sum of ranks of at most K columns chosen on the
test cells themselves (by min τ), which no training split can pick.

Writes ``DIR/quality.md``, ``DIR/quality.json``, ``DIR/quality.png`` and ships the formula
with the best *validation* fitness at the largest of ``--gp-labels`` as ``--ship`` (a program
JSON). A table too small for the parts is refused unless ``--allow-small`` shrinks the test part.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import inspect
import json
import math
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np
import torch

from eznas_store.collect.proxies.az_nas import AZ_COMPONENTS, az_nas_aggregate
from eznas_store.fitness.correlations import kendall_tau, spearman_rho
from eznas_store.fitness.learned import LearnedConfig, feature_matrix, fit_problems, predict_learned, rank_columns
from eznas_store.fitness.problems import load_problems, split_problem
from eznas_store.fitness.proxy_table_scorer import ProxyTableScorer
from eznas_store.outputs import ensure_dir, figure, png, write_atomic
from eznas_store.programs.codec import load_program, save_program
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.proxy_ops import PROXY_OPS
from eznas_store.programs.tree import Program
from eznas_store.sources import read_zc, write_proxy_table
from eznas_store.evolution.evolve import EvolveConfig, run_evolve

LABELS = ("cifar10", "cifar100", "imagenet16")
#: label set -> (NB201 accuracy column, Suite-Zero task whose proxy values it takes), as proxy-table joins them
SUITEZERO_SETS = {"cifar10": ("cifar10_test", "cifar10"), "cifar100": ("cifar100_test", "cifar10"),
                  "imagenet16": ("imagenet16_test", "ImageNet16-120")}
MODEL_NAMES = {"forest": "random forest", "boosting": "gradient boosting"}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--table", help="a proxy table (eznas-store proxy-table --export)")
    src.add_argument("--suitezero", help="a Suite-Zero zc_nasbench201.json[.gz] (NASLib's 13 proxies); needs --accuracies")
    ap.add_argument("--accuracies", help="the NB201 accuracy CSV (arch, cifar10_test, cifar100_test, imagenet16_test) "
                    "the --suitezero cells are labelled from")
    ap.add_argument("--out", required=True)
    ap.add_argument("--labels", type=int, nargs="*", default=[50, 100, 200],
                    help="labelled cells per seed of the learned rows (half train, half validation)")
    ap.add_argument("--gp-labels", type=int, nargs="*", default=[100, 200],
                    help="labelled cells per seed of the evolved rows (half train, half validation)")
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--test-seed", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--population", type=int, default=200)
    ap.add_argument("--generations", type=int, default=30)
    ap.add_argument("--max-depth", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=50,
                    help="programs with the best training fitness that the validation part chooses among")
    ap.add_argument("--gp-combine", choices=("min", "mean", "per-label"), default="min",
                    help="evolve on min or mean τ over the three labels, or one run per label")
    ap.add_argument("--rank-terminals", action="store_true",
                    help="evolve over each column's within-table rank in [0, 1] (test cells ranked among themselves)")
    ap.add_argument("--restarts", type=int, default=1,
                    help="evolve runs per labelled split (GP seeds S, S+1000, ...; the same train cells)")
    ap.add_argument("--cross-fit", action="store_true",
                    help="also evolve on the validation half and choose on the train half; ship the sum of ranks of both")
    ap.add_argument("--ensemble", type=int, default=1,
                    help="at most K candidates (the runs' programs and the terminals, each +/-; one may count "
                    "twice) summed as ranks, added greedily while the validation fitness improves")
    ap.add_argument("--learned", nargs="*", default=["forest", "boosting"], choices=("forest", "boosting"))
    ap.add_argument("--learned-trees", type=int, default=300, help="trees (boosting stages) of the learned models")
    ap.add_argument("--learned-features", choices=("raw", "rank"), default="raw",
                    help="the learned models' features: the columns' values or their within-part ranks")
    ap.add_argument("--graph-features", action="store_true",
                    help="the cells' graph features as extra columns (load_problems(graph_features=True))")
    ap.add_argument("--oracle", type=int, default=0,
                    help="also the best rank sum of up to K columns chosen on the test cells (a ceiling, not a proxy)")
    ap.add_argument("--allow-small", action="store_true")
    ap.add_argument("--no-eznas-a", action="store_true")
    ap.add_argument("--statistics-program", action="append", default=[],
                    help="a statistics program JSON (e.g. a shipped evolve's best), scored on the fly beside EZNAS-A")
    ap.add_argument("--ship", default=None, help="program JSON for the best formula (by validation)")
    a = ap.parse_args()
    if a.suitezero and not a.accuracies:
        ap.error("--suitezero needs --accuracies (the NB201 accuracy CSV)")
    if a.suitezero and (a.statistics_program or not a.no_eznas_a):
        ap.error("EZNAS-A and --statistics-program are scored on the fly from a proxy table's recipe: "
                 "with --suitezero give --no-eznas-a")
    if any(n < 4 or n % 2 for n in a.labels + a.gp_labels):
        ap.error("--labels and --gp-labels take even numbers >= 4 (half train, half validation)")
    if a.ensemble < 1 or a.restarts < 1:
        ap.error("--ensemble and --restarts take K >= 1")
    return a


def _suitezero_table(zc: Path, accuracies: Path, dst: Path) -> Path:
    """NASLib's 13 proxies of the Suite-Zero NB201 cells, labelled with the NB201 test
    accuracies, as a proxy table (label sets and tasks as ``proxy-table`` joins them)."""
    tables = read_zc(zc)
    with open(accuracies, newline="") as f:
        acc = {r["arch"]: r for r in csv.DictReader(f)}
    archs = [x for x in tables["cifar10"].archs if x in acc]
    cols: dict[str, np.ndarray] = {c: np.array([float(acc[x][c]) for x in archs]) for c, _ in SUITEZERO_SETS.values()}
    for label, (_, task) in SUITEZERO_SETS.items():
        t = tables[task]
        where = {x: i for i, x in enumerate(t.archs)}
        rows = np.array([where.get(x, -1) for x in archs])
        for name, v in sorted(t.proxies.items()):
            cols[f"{name}@{label}"] = np.where(rows >= 0, np.asarray(v, dtype=np.float64)[rows], np.nan)
    meta = {"recipe": {"suitezero": str(zc), "accuracies": str(accuracies)},
            "label_sets": {label: {"accuracy": c, "suitezero_task": t} for label, (c, t) in SUITEZERO_SETS.items()}}
    ensure_dir(dst.parent)
    return write_proxy_table(dst, archs, [int(acc[x].get("index", i)) for i, x in enumerate(archs)], cols, meta)


def _load(table: Path, graph: bool):
    if graph:
        return load_problems(table, graph_features=True)
    return load_problems(table)


def _label(problem) -> str:
    """``nb201-cifar100:T`` -> ``cifar100``."""
    return problem.name.split(":")[0].split("-", 1)[-1]


def _write_subset(problems, rows: np.ndarray, dst: Path, rank: bool) -> Path:
    """The problems' ``rows`` (their columns, graph features included; with ``rank`` each
    column as its rank among these rows) as a proxy table of its own, for an evolve run."""
    cols: dict[str, np.ndarray] = {f"{_label(p)}_acc": p.accuracy[rows] for p in problems}
    for p in problems:
        for name in sorted(p.columns):
            v = p.columns[name][rows]
            cols[f"{name}@{_label(p)}"] = rank_columns(v[:, None])[:, 0] if rank else v
    meta = {"recipe": {"subset_of": problems[0].source}, "label_sets": {_label(p): {"accuracy": f"{_label(p)}_acc"}
                                                                         for p in problems}}
    if dst.exists():
        dst.unlink()
    ensure_dir(dst.parent)
    archs = [problems[0].archs[i] for i in rows]
    return write_proxy_table(dst, archs, [int(i) for i in rows], cols, meta)


def _parts(n: int, a: argparse.Namespace) -> int:
    """The held-out part's size: ``--test``, or with ``--allow-small`` what the largest labelled set leaves."""
    most = max(a.labels + a.gp_labels + [2])
    rest = n - most
    if rest >= a.test:
        return a.test
    if not a.allow_small or rest < 2:
        sys.exit(f"bench_proxy_quality: error: the table has {n} usable cells, fewer than {most} labelled "
                 f"+ --test {a.test} (--allow-small shrinks the test part)")
    return rest


def _labelled(problems, rest_rows: np.ndarray, seed: int, n_labels: int, out: Path, rank: bool):
    """The seed's ``n_labels`` cells (nested: a larger L extends a smaller one) as a subset table, and
    its train / validation halves (the split ``evolve --train-networks L/2 --seed S`` makes)."""
    order = np.random.default_rng(seed).permutation(len(rest_rows))[:n_labels]
    rows = np.sort(rest_rows[order])
    sub = _write_subset(problems, rows, out / f"L{n_labels}" / f"seed{seed}" / ("trainval-rank.csv" if rank else
                                                                               "trainval.csv"), rank)
    loaded = load_problems(sub)
    halves = [split_problem(p, n_labels // 2, seed) for p in loaded]
    return sub, [h[0] for h in halves], [h[1] for h in halves]


def _corr(scores, problems) -> dict[str, tuple[float, float]]:
    return {lab: (kendall_tau(s, p.accuracy), spearman_rho(s, p.accuracy))
            for lab, s, p in zip(LABELS, scores, problems)}


def _hand_crafted(test) -> dict[str, dict[str, tuple[float, float]]]:
    rows = {name: _corr([p.columns[name] for p in test], test) for name in sorted(test[0].columns)}
    if all(c in test[0].columns for c in AZ_COMPONENTS):
        rows["AZ-NAS (aggregate)"] = _corr([az_nas_aggregate(p.columns) for p in test], test)
    return rows


def _az_all(problems) -> str:
    """The AZ-NAS aggregate over every usable cell of the table (not only the test part); the
    loader's floors for failed components are the reference's lowest rank, so this is the
    reference's rule."""
    if not all(c in problems[0].columns for c in AZ_COMPONENTS):
        return ""
    parts = [f"{lab} τ {_fmt(tau)} ρ {_fmt(rho)}" for lab, (tau, rho) in
             _corr([az_nas_aggregate(p.columns) for p in problems], problems).items()]
    return (f"\nAZ-NAS aggregate over all {len(problems[0])} usable cells of the table (a failed "
            "component ranks lowest, as the reference's NaN rule): " + "; ".join(parts) + ".\n")


def _statistics_programs(test, table_meta: dict, programs: dict[str, object]) -> dict[str, dict]:
    """Statistics programs scored on the fly at batch 16 (CIFAR-10 images, seed 0), one collection
    pass per held-out cell for all of them (``score --no-store``)."""
    from eznas_store.storeless.scoring import score_storeless
    from eznas_store.ingest.config import IngestConfig

    rec = table_meta["recipe"]
    cfg = IngestConfig(store="", dataset="cifar10", benchmark=rec["benchmark"], data_root=rec["data_root"],
                       networks=tuple(test[0].archs), seed=0, batch_size=16, device="cpu",
                       accuracy_column="cifar10_test", proxies=False, progress=True)
    rows = {}
    for label, res in zip(programs, score_storeless(cfg, list(programs.values()))):
        by_arch = dict(zip(res.archs, res.scores))
        s = np.array([by_arch[a] for a in test[0].archs], dtype=np.float64)
        rows[label] = _corr([s, s, s], test)
    return rows


# ----------------------------------------------------------------------------- learned predictors


def _learned_seed(train, val, test, model: str, seed: int, rank: bool, trees: int) -> dict:
    """Test τ/ρ of one model per label, and of the CIFAR-10 model on all three labels."""
    cfg = LearnedConfig(model=model, seed=seed, rank_features=rank, n_estimators=trees)
    fitted = [fit_problems(tr, va, cfg) for tr, va in zip(train, val)]

    def scores(m, p):
        return predict_learned(m, feature_matrix(p, m.features, rank=rank)[0])

    return {"per label": _corr([scores(m, p) for m, p in zip(fitted, test)], test),
            "CIFAR-10 only": _corr([scores(fitted[0], p) for p in test], test),
            "chosen": [{"target": m.target, **m.params, "validation_tau": m.validation_tau} for m in fitted]}


def _learned(problems, rest_rows, test, a, out: Path) -> tuple[dict, list[dict]]:
    rows, log = {}, []
    rank = a.learned_features == "rank"
    for n_labels in a.labels:
        for model in a.learned:
            t0 = time.perf_counter()
            per_seed = []
            for seed in range(a.seeds):
                _, train, val = _labelled(problems, rest_rows, seed, n_labels, out, False)
                per_seed.append(_learned_seed(train, val, test, model, seed, rank, a.learned_trees))
            secs = time.perf_counter() - t0
            for kind in ("per label", "CIFAR-10 only"):
                name = f"{MODEL_NAMES[model]}{' (rank features)' if rank else ''}, {kind}, {n_labels} labels"
                rows |= _seed_stats(name, [r[kind] for r in per_seed])
            log.append({"model": model, "labels": n_labels, "seconds": secs,
                        "chosen": [r["chosen"] for r in per_seed],
                        "test_tau": [{k: {lab: r[k][lab][0] for lab in LABELS} for k in ("per label", "CIFAR-10 only")}
                                     for r in per_seed]})
            print(f"{model} {n_labels} labels ({secs:.0f} s), per label: " + " ".join(
                f"{lab} {np.mean([t['per label'][lab] for t in log[-1]['test_tau']]):.3f}" for lab in LABELS), flush=True)
    return rows, log


def _seed_stats(name: str, per_seed: list[dict]) -> dict:
    out = {}
    for stat, f in (("mean", np.mean), ("worst", np.min)):
        out[f"{name} ({stat} of {len(per_seed)} seeds)"] = {
            lab: (float(f([r[lab][0] for r in per_seed])), float(f([r[lab][1] for r in per_seed]))) for lab in LABELS}
    return out


# ----------------------------------------------------------------------------- evolved formulas


def _evolve_seed(problems, rest_rows, seed: int, n_labels: int, a, out: Path) -> dict:
    """One labelled split: evolve on L/2 cells (``--restarts`` runs with other GP seeds on the same
    cells), choose (and with ``--ensemble`` combine) among all runs' candidates by validation; with
    ``--cross-fit`` also the other way round (train on the validation half, choose on the train
    half), the two chosen programs then summed as ranks (a fixed rule: no choice looks at more)."""
    sub, train, val = _labelled(problems, rest_rows, seed, n_labels, out, a.rank_terminals)
    tags = list(LABELS) if a.gp_combine == "per-label" else ["all"]
    t0 = time.perf_counter()
    folds = [(train, val)] + ([(val, train)] if a.cross_fit else [])
    chosen = {tag: [_fold(problems, sub, tr, va, seed, k, n_labels, tag, a, out) for k, (tr, va) in enumerate(folds)]
              for tag in tags}
    secs = time.perf_counter() - t0

    def final(tag):
        got = [c["program"] for c in chosen[tag]]
        return got[0] if len(got) == 1 else _rank_sum(got)

    progs = [final(lab) for lab in LABELS] if a.gp_combine == "per-label" else [final("all")] * 3
    taus = np.mean([[kendall_tau(ProxyTableScorer([p], rank_terminals=a.rank_terminals).scores([c["program"]])[0][0],
                                 p.accuracy) for p in va]
                    for tag in tags for c, (_, va) in zip(chosen[tag], folds)], axis=0)
    return {"seed": seed, "labels": n_labels, "programs": progs, "seconds": secs, "validation_taus": taus.tolist(),
            "validation": float(np.mean([c["validation"] for cs in chosen.values() for c in cs])),
            "members": {k: [c["members"] for c in cs] for k, cs in chosen.items()}}


def _fold(problems, sub: Path, train, val, seed: int, fold: int, n_labels: int, tag: str, a, out: Path) -> dict:
    """The ``--restarts`` evolve runs on ``train`` (one label's task, or all three) and the choice on ``val``."""
    cands = {}
    here = out / f"L{n_labels}" / f"seed{seed}"
    for r in range(a.restarts):
        gp_seed = seed + 1000 * r + 500 * fold
        table = sub if r == fold == 0 else _reordered(problems, train, val, gp_seed, here / f"trainval-f{fold}r{r}.csv",
                                                      a.rank_terminals)
        run = here / f"run-{tag}-f{fold}r{r}"
        if run.exists():
            shutil.rmtree(run)
        run_evolve(EvolveConfig(stores=(str(table),), out=str(run), over="proxies", train_networks=n_labels // 2,
                                seed=gp_seed, population=a.population, generations=a.generations,
                                max_depth=a.max_depth, progress=False,
                                problems=(f"nb201-{tag}:{table.name[:-4]}",) if tag != "all" else (),
                                combine="min" if tag != "all" else a.gp_combine))
        cands |= {f"f{fold}r{r}/{f.stem}": load_program(f) for f in sorted((run / "programs").glob("*.json"))}
        cands |= {f"f{fold}r{r}/{k}": v for k, v in _top_trained(run, a.candidates).items()}
    judge = val if tag == "all" else [val[LABELS.index(tag)]]
    if a.ensemble > 1:  # the terminals themselves (and their negations) may join a rank sum
        cands |= {f"terminal/{w}{t}": Program(parse_formula(f"neg({t})" if w else t, ops=PROXY_OPS, terminals=None),
                                              terminal_set="proxies")
                  for t in sorted(val[0].columns) for w in ("", "-")}
    return _choose(cands, judge, a)


def _reordered(problems, train, val, gp_seed: int, dst: Path, rank: bool) -> Path:
    """The same labelled cells in an order where ``evolve --seed gp_seed`` trains on exactly the
    ``train`` cells (its split takes the rows its seeded permutation puts first)."""
    where = {x: i for i, x in enumerate(problems[0].archs)}
    n, k = len(train[0]) + len(val[0]), len(train[0])
    first = np.zeros(n, dtype=bool)
    first[np.random.default_rng(gp_seed).permutation(n)[:k]] = True
    order = np.empty(n, dtype=np.int64)
    order[first] = [where[x] for x in train[0].archs]
    order[~first] = [where[x] for x in val[0].archs]
    path = _write_subset(problems, order, dst, rank)
    got = split_problem(load_problems(path)[0], k, gp_seed)[0]
    assert set(got.archs) == set(train[0].archs), "the reordered table's split is not the labelled train part"
    return path


def _choose(cands: dict, val, a) -> dict:
    """The candidate with the best validation fitness (min, or mean, τ over ``val``); then, with
    ``--ensemble K``, greedily the candidates whose rank added to the sum improves it, up to K."""
    names = list(cands)
    scorer = ProxyTableScorer(val, combine="mean" if a.gp_combine == "mean" else "min", rank_terminals=a.rank_terminals)
    scores = scorer.scores([cands[k] for k in names])  # per problem, per candidate
    ok = [i for i in range(len(names)) if all(np.isfinite(s[i]).all() and np.ptp(s[i]) > 0 for s in scores)]
    ranks = {i: [rank_columns(s[i][:, None])[:, 0] for s in scores] for i in ok}
    agg = np.mean if a.gp_combine == "mean" else np.min

    def fit(members: list[int]) -> float:
        return float(agg([kendall_tau(sum(ranks[i][t] for i in members), p.accuracy) for t, p in enumerate(val)]))

    members, best = [], -math.inf
    for _ in range(a.ensemble):  # a member may be taken again: an integer weight
        trial = [(fit(members + [i]), i) for i in ok]
        if not trial:
            break
        value, i = max(trial)
        if value <= best:
            break
        members, best = members + [i], value
    progs = [cands[names[i]] for i in members]
    prog = progs[0] if len(progs) == 1 else _rank_sum(progs)
    return {"program": prog, "validation": best, "members": [names[i] for i in members]}


def _rank_sum(progs: list[Program]) -> Program:
    """``add(rank(f1), add(rank(f2), ...))``: the ensemble as one proxy program."""
    text = f"rank({progs[-1].formula()})"
    for p in reversed(progs[:-1]):
        text = f"add(rank({p.formula()}), {text})"
    return Program(parse_formula(text, ops=PROXY_OPS, terminals=None), terminal_set="proxies")


def _top_trained(run: Path, k: int) -> dict[str, object]:
    """The ``k`` programs of the run with the best *training* fitness, from its checkpoint's
    fitness cache (every distinct program it evaluated): the validation part then chooses
    among them, not only among the three saved programs (best_final, best_ever_1/2)."""
    cache = json.loads((run / "checkpoint.json").read_text()).get("cache", {})
    scored = [(v["value"], key) for key, v in cache.items()
              if key.startswith("proxies/mean:") and v and v.get("value") is not None and math.isfinite(v["value"])]
    out = {}
    for rank, (_, key) in enumerate(sorted(scored, reverse=True)[:k]):
        formula = key.split(":", 1)[1]
        out[f"train_top_{rank + 1}"] = Program(parse_formula(formula, ops=PROXY_OPS, terminals=None),
                                               terminal_set="proxies")
    return out


def _evolved(problems, rest_rows, test, a, out: Path) -> tuple[dict, list[dict]]:
    rows, runs = {}, []
    for n_labels in a.gp_labels:
        these = []
        for seed in range(a.seeds):
            r = _evolve_seed(problems, rest_rows, seed, n_labels, a, out)
            r["test"] = {}
            for lab, prog, p in zip(LABELS, r["programs"], test):
                (s,), = ProxyTableScorer([p], rank_terminals=a.rank_terminals).scores([prog])
                r["test"][lab] = (kendall_tau(s, p.accuracy), spearman_rho(s, p.accuracy))
            these.append(r)
            print(f"L {n_labels} seed {seed} ({r['seconds']:.0f} s): {r['programs'][0].formula()}  validation "
                  f"{r['validation']:.3f}  test tau " + " ".join(f"{lab} {r['test'][lab][0]:.3f}" for lab in LABELS),
                  flush=True)
        rows |= _seed_stats(f"evolved{_gp_tag(a)}, {n_labels} labels", [r["test"] for r in these])
        runs += these
    return rows, runs


def _gp_tag(a) -> str:
    bits = [f"{a.gp_combine} τ" if a.gp_combine != "min" else "", "rank terminals" if a.rank_terminals else "",
            f"ensemble ≤ {a.ensemble}" if a.ensemble > 1 else "",
            f"{a.restarts} runs per split" if a.restarts > 1 else "", "cross-fitted" if a.cross_fit else "", "graph features" if a.graph_features else ""]
    bits = [b for b in bits if b]
    return f" ({', '.join(bits)})" if bits else ""


def _oracle(test, k: int) -> tuple[str, dict[str, tuple[float, float]]]:
    """The best sum of ranks of at most ``k`` columns, chosen *on the test cells* by min τ over
    the label sets: not a proxy anyone could pick, a ceiling for simple combinations of what
    the table holds (it says whether the terminals or the search limit the evolved formulas)."""
    import itertools

    from scipy.stats import rankdata

    names = sorted(test[0].columns)
    ranks = [{n: rankdata(p.columns[n]) for n in names} for p in test]
    best, best_min = (), -math.inf
    for size in range(1, k + 1):
        for combo in itertools.combinations(names, size):
            low = min(kendall_tau(sum(r[c] for c in combo), p.accuracy) for r, p in zip(ranks, test))
            if low > best_min:
                best, best_min = combo, low
    scores = [sum(r[c] for c in best) for r in ranks]
    return " + ".join(f"rank({c})" for c in best), _corr(scores, test)


def _shipped(run: dict, source: str, a, terminals):
    """The chosen formula with what a search needs to compute its terminals on the same scale:
    NASLib's 13 come from Suite-Zero, i.e. PyTorch's default init (``search`` reads
    ``meta["proxy_init"]``)."""
    meta = {"proxy_init": "default", "evolved_on": source, "training_split_seed": run["seed"],
            "labels": run["labels"], "validation_fitness": run["validation"], "chosen_as": run["members"],
            "how_chosen": (f"{run['labels'] // 2} train + {run['labels'] // 2} validation cells; evolve --over proxies "
                           f"(population {a.population}, {a.generations} generations, max depth {a.max_depth}, "
                           f"fitness {a.gp_combine} τ over the three labels); the run's saved programs and its "
                           f"{a.candidates} best-trained ones judged on the validation cells only"
                           + (f" of each of {a.restarts} runs (GP seeds S + 1000 r) on the same cells"
                              if a.restarts > 1 else "")
                           + (f", summed as ranks greedily up to {a.ensemble} (the terminals may join)"
                              if a.ensemble > 1 else "")
                           + ("; cross-fitted: the same again with the halves swapped, the two summed as ranks"
                              if a.cross_fit else "")
                           + ("; terminals are within-table ranks" if a.rank_terminals else "")
                           + f"; the seed with the best validation fitness of {a.seeds}")}
    prog = run["programs"][0]
    if a.rank_terminals:  # rank(t) is t's within-problem rank in [0, 1]: the same program on raw columns
        prog = _ranked_program(prog, terminals)
        meta["how_chosen"] += "; shipped with each terminal t written rank(t), so it reads raw columns"
    return dataclasses.replace(prog, name=f"proxies-nb201-evolved-L{run['labels']}-seed{run['seed']}", meta=meta)


def _ranked_program(prog: Program, terminals) -> Program:
    """``prog`` with every terminal ``t`` replaced by ``rank(t)``: on raw columns it scores what
    ``prog`` scores on rank-normalised ones (``ProxyTableScorer(rank_terminals=True)``)."""
    import re

    names = sorted(terminals, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b(?!\()")
    text = pattern.sub(lambda m: f"rank({m.group(1)})", prog.formula())
    return Program(parse_formula(text, ops=PROXY_OPS, terminals=None), terminal_set="proxies")


def _fmt(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _markdown(rows: dict, runs: list[dict], n: dict, a, source: str) -> str:
    head = ("| row | " + " | ".join(f"{lab} τ | {lab} ρ" for lab in LABELS) + " |\n|---|"
            + "---|" * (2 * len(LABELS)) + "\n")
    body = "".join(f"| {name} | " + " | ".join(f"{_fmt(v[lab][0])} | {_fmt(v[lab][1])}" for lab in LABELS)
                   + " |\n" for name, v in sorted(rows.items(), key=lambda kv: -np.nanmin(
                       [kv[1][lab][0] for lab in LABELS])))
    seeds = "".join(f"| {r['labels']} | {r['seed']} | " + "<br>".join(f"`{f}`" for f in dict.fromkeys(
        p.formula() for p in r["programs"])) + f" | {_fmt(r['validation'])} | "
                    + " | ".join(_fmt(r["test"][lab][0]) for lab in LABELS) + f" | {r['seconds']:.0f} |\n" for r in runs)
    return (f"# Proxy quality on {n['test']} held-out NB201 cells\n\n"
            f"Source `{source}`: {n['usable']} usable cells ({n['dropped']} dropped: a non-finite value); "
            f"labelled cells per seed: half train, half validation; test seed {a.test_seed}. "
            "Rows sorted by the worst τ over the three label sets.\n\n" + head + body
            + f"\n## Evolved formulas per labelled split{_gp_tag(a)} (test τ)\n\n| labels | seed | formula | "
            "validation | " + " | ".join(LABELS) + " | seconds |\n|---|---|---|---|" + "---|" * len(LABELS)
            + "---|\n" + seeds)


def _plot(rows: dict, path: Path) -> None:
    names = sorted(rows, key=lambda k: np.nanmin([rows[k][lab][0] for lab in LABELS]))
    fig = figure(8, 0.28 * len(names) + 1.2)
    ax = fig.add_subplot(111)
    y = np.arange(len(names))
    for j, lab in enumerate(LABELS):
        ax.barh(y + (j - 1) * 0.27, [rows[k][lab][0] for k in names], height=0.27, label=lab)
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlabel("Kendall τ on the held-out cells")
    ax.axvline(0, color="k", lw=0.5)
    ax.legend(fontsize=7)
    write_atomic(path, png(fig))


def main() -> None:
    a = _args()
    torch.set_num_threads(1)
    out = ensure_dir(a.out)
    if a.graph_features and "graph_features" not in inspect.signature(load_problems).parameters:
        sys.exit("bench_proxy_quality: error: this load_problems has no graph_features")
    table = Path(a.table) if a.table else _suitezero_table(Path(a.suitezero), Path(a.accuracies),
                                                           out / "suitezero-table.csv")
    problems = _load(table, a.graph_features)
    n_test = _parts(len(problems[0]), a)
    perm = np.random.default_rng(a.test_seed).permutation(len(problems[0]))
    test_rows = np.sort(perm[:n_test])
    rest_rows = np.setdiff1d(np.arange(len(problems[0])), test_rows)
    test = [p.subset(test_rows, name=f"{p.name}[test]", split="test") for p in problems]
    rows = _hand_crafted(test)
    if a.oracle:
        formula, corr = _oracle(test, a.oracle)
        rows[f"ceiling: {formula} (chosen on the test cells)"] = corr
    learned, learned_log = _learned(problems, rest_rows, test, a, out) if a.learned and a.labels else ({}, [])
    rows |= learned
    evolved, runs = _evolved(problems, rest_rows, test, a, out) if a.seeds and a.gp_labels else ({}, [])
    rows |= evolved
    source = a.table or f"{a.suitezero} + {a.accuracies}"
    if runs and a.ship:  # shipped before the slow on-the-fly scoring, so a search can start with it
        top = [r for r in runs if r["labels"] == max(a.gp_labels)]
        best = max(top, key=lambda r: r["validation"])
        shipped = _shipped(best, source, a, sorted(test[0].columns))
        got = ProxyTableScorer(test).scores([shipped])
        want = ProxyTableScorer(test, rank_terminals=a.rank_terminals).scores([best["programs"][0]])
        assert all(np.allclose(g[0], w[0], equal_nan=True) for g, w in zip(got, want)), "shipped program differs"
        save_program(shipped, a.ship)
        print(f"shipped seed {best['seed']}'s formula to {a.ship}", flush=True)
    stats = {} if a.no_eznas_a else {"EZNAS-A (batch 16, on the fly)": load_program("eznas-a")}
    for path in a.statistics_program:
        prog = load_program(path)
        stats[f"{Path(path).stem}: {prog.formula()} (batch 16, on the fly)"] = prog
    if stats:
        rows |= _statistics_programs(test, json.loads(table.with_name(table.name[:-4] + ".meta.json").read_text()),
                                     stats)
    n = {"usable": len(problems[0]), "dropped": problems[0].dropped, "test": n_test}
    write_atomic(out / "quality.md", _markdown(rows, runs, n, a, source) + _az_all(problems))
    _plot(rows, out / "quality.png")
    doc = {"cells": n, "args": vars(a), "rows": rows, "learned": learned_log,
           "runs": [{k: ([p.formula() for p in v] if k == "programs" else v) for k, v in r.items()} for r in runs]}
    write_atomic(out / "quality.json", json.dumps(doc, indent=1, default=float) + "\n")
    print((out / "quality.md").read_text())


if __name__ == "__main__":
    main()
