"""Evolved statistics programs vs EZNAS-A, #params, nwot and jacov on held-out NB201 cells.

Usage (from the repository root, after a batch-1 ``eznas-store ingest`` of >= 200 cells)::

    OMP_NUM_THREADS=1 python benchmarks/bench_statistics_quality.py --store S.zarr --out DIR \\
        --benchmark nb201_accuracies.csv --suitezero zc_nasbench201.json.gz --data-root cifar10-images \\
        --seeds 5 --test 500 --batches 16 1 --jobs 2 [--evolve-option ...]

Per seed ``k`` (0..``--seeds``-1) one ``evolve`` over the store (``--split``, default
100/100/rest: fitness on 100 train cells, the hall of fame chosen by validation τ on 100
others; fitness the min τ over the three label sets of the same cells), unless
``DIR/seed<k>/run`` already holds a finished run (it is then reused, so a killed benchmark
is rerun with the same command). The program scored is the run's ``best_ever_1``: the best
by *validation* τ, chosen without looking at the test cells.

Test cells: ``--test`` NB201 cells drawn with ``--test-seed`` from the cells both NB201 tasks of
Suite-Zero hold, minus every cell of the store. Each is collected on the fly, once per
``--batches`` entry (CIFAR-10 images, ingest's seeds), and every program (the seeds' and
EZNAS-A) is evaluated on that one collection. #params, nwot, jacov (and the other NASLib
proxies) are Suite-Zero's values of the same cells: task ``cifar10`` against the CIFAR-10 and
CIFAR-100 labels, ``ImageNet16-120`` against ImageNet16-120, as in ``bench_proxy_quality``.

Learned predictors at equal labels (``--learned``; ``--learned-seeds`` seeds, mean and worst):
a random forest and gradient boosting (:mod:`eznas_store.fitness.learned`) per label, trained
on exactly the cells ``evolve --split`` gives that label's task for that seed (train part;
hyper-parameters and target chosen on its validation part only, then refit on both), plus the
CIFAR-10 model applied to all three labels. Their features are per-network scalars a user
computes from a statistics store: for each of the 22 statistics, the network-level **mean**
and **sum** over blocks of its per-block Frobenius norm (the statistics programs
``frobenius(<statistic>)`` with aggregate ``mean`` / ``sum``: 44 scalars, read from the store
for the training cells and scored on the fly with the other programs for the test cells), and
the 13 NASLib proxies of the cell from Suite-Zero (the label set's task, as the baselines;
a training cell Suite-Zero lacks gets each proxy's lowest value minus one). Features are
ranked within each part (``--learned-features rank``, the default: the store is batch 1, the
test cells are collected at ``--batches``, so raw values are on other scales).

Prints and writes ``DIR/statistics_quality.md`` (τ and ρ per label set and batch, per seed
whether it beats EZNAS-A, #params, nwot and jacov on all three labels), ``.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np

from eznas_store.fitness.correlations import kendall_tau, spearman_rho
from eznas_store.outputs import ensure_dir, figure, png, write_atomic
from eznas_store.fitness.learned import LearnedConfig, fit_learned, predict_learned, rank_columns
from eznas_store.programs.codec import load_program, save_program
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.tree import Program
from eznas_store.terminals import TERMINALS
from eznas_store.evolution.evolve import EvolveConfig, run_evolve
from eznas_store.sources.suitezero import read_zc
from eznas_store.sources.tables import read_benchmark
from eznas_store.store.store import open_store

LABELS = {"cifar10": "cifar10_test", "cifar100": "cifar100_test", "imagenet16": "imagenet16_test"}
BASELINES = ("params", "nwot", "jacov")
RIVALS = ("eznas-a", *BASELINES)
#: scored beside the seeds' programs in the same pass: the published proxies written as statistics
TWINS = ("meco-statistics", "az-expressivity-statistics")
SZ_TASK = {"cifar10": "cifar10", "cifar100": "cifar10", "imagenet16": "ImageNet16-120"}


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True, help="batch-1 statistics store (train + validation cells)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", type=int, default=5, help="evolve runs (0: only the learned and the baseline rows)")
    ap.add_argument("--split", default="100/100/rest")
    ap.add_argument("--population", type=int, default=50)
    ap.add_argument("--generations", type=int, default=15)
    ap.add_argument("--op-set", default="extended")
    ap.add_argument("--seed-programs", default="eznas-a,meco-statistics,az-expressivity-statistics",
                    help="programs put into every seed's first population")
    ap.add_argument("--extra", nargs="*", default=[], metavar="LABEL=PROGRAM",
                    help="more programs scored on the same cells in the same pass (e.g. another arm's)")
    ap.add_argument("--racing", type=float, default=0.3)
    ap.add_argument("--chunk-cache-mb", type=float, default=6000)
    ap.add_argument("--test", type=int, default=500)
    ap.add_argument("--test-seed", type=int, default=1000)
    ap.add_argument("--batches", type=int, nargs="+", default=[16])
    ap.add_argument("--jobs", type=int, default=1, help="processes collecting test cells (one torch thread each)")
    ap.add_argument("--benchmark", required=True, help="the NB201 accuracy table (nb201_accuracies.csv)")
    ap.add_argument("--suitezero", required=True, help="Suite-Zero's zc_nasbench201.json.gz")
    ap.add_argument("--data-root", required=True, help="the CIFAR-10 images (as ingest takes them)")
    ap.add_argument("--learned", nargs="*", default=["forest", "boosting"], choices=("forest", "boosting"),
                    help="learned predictors over store scalars at equal labels (none: no such rows)")
    ap.add_argument("--learned-seeds", type=int, default=5)
    ap.add_argument("--learned-trees", type=int, default=300, help="trees (boosting stages) of the learned models")
    ap.add_argument("--learned-features", choices=("rank", "raw"), default="rank")
    return ap.parse_args()


def _evolve(a, store: str, seed: int, out: Path) -> tuple[dict, float]:
    """The seed's run (reused when finished), and its wall seconds."""
    run = out / f"seed{seed}" / "run"
    done = run / "run.json"
    if done.exists():
        meta = json.loads(done.read_text())
        if meta.get("finished"):
            return meta, float(meta.get("seconds") or 0)
    t0 = time.perf_counter()
    cfg = EvolveConfig(stores=(store,), out=str(run), population=a.population, generations=a.generations,
                       seed=seed, split=a.split, accuracy_columns=tuple(LABELS.values()), op_set=a.op_set,
                       evolve_aggregate=True, equivalence_cache=True, racing=a.racing,
                       chunk_cache_mb=a.chunk_cache_mb, progress=False,
                       seed_programs=tuple(p for p in a.seed_programs.split(",") if p))
    run_evolve(cfg, resume=(run / "checkpoint.json").exists())
    return json.loads(done.read_text()), time.perf_counter() - t0


def _test_cells(a, zc: dict, store_archs: set[str]) -> list[str]:
    both = set(zc["cifar10"].archs) & set(zc["ImageNet16-120"].archs)
    pool = sorted(both - store_archs)
    order = np.random.default_rng(a.test_seed).permutation(len(pool))[: a.test]
    return [pool[i] for i in order]


def _collect_scores(job: tuple) -> dict[str, list[float]]:
    """One process: programs scored on the fly on ``cells`` at ``batch`` (scores by program)."""
    import torch

    from eznas_store.storeless.scoring import score_storeless
    from eznas_store.ingest.config import IngestConfig

    torch.set_num_threads(1)
    cells, batch, files, a = job
    programs = [load_program(f) for f in files]
    cfg = IngestConfig(store="", dataset="cifar10", benchmark=a.benchmark, data_root=a.data_root,
                       networks=tuple(cells), seed=0, batch_size=batch, device="cpu",
                       accuracy_column="cifar10_test", proxies=False, progress=False)
    out = {}
    for f, res in zip(files, score_storeless(cfg, programs, progress=False)):
        by_arch = dict(zip(res.archs, res.scores))
        out[f] = [float(by_arch[c]) for c in cells]
    return out


def _on_the_fly(a, cells: list[str], files: list[str], batch: int) -> dict[str, np.ndarray]:
    parts = [cells[i:: a.jobs] for i in range(a.jobs)]
    with ProcessPoolExecutor(a.jobs) as pool:
        got = list(pool.map(_collect_scores, [(p, batch, files, a) for p in parts]))
    scores = {}
    for f in files:
        by_cell = {c: s for p, g in zip(parts, got) for c, s in zip(p, g[f])}
        scores[f] = np.array([by_cell[c] for c in cells], dtype=np.float64)
    return scores


def _corr(scores_by_label: dict[str, np.ndarray], acc: dict[str, np.ndarray]) -> dict[str, list[float]]:
    out = {}
    for lab, s in scores_by_label.items():
        ok = np.isfinite(s) & np.isfinite(acc[lab])
        out[lab] = [kendall_tau(s[ok], acc[lab][ok]), spearman_rho(s[ok], acc[lab][ok]), int(ok.sum())]
    return out


def _baselines(zc: dict, cells: list[str], acc) -> dict[str, dict]:
    rows = {}
    for name in ("params", "nwot", "jacov", "synflow", "flops", "snip", "zen"):
        by_label = {}
        for lab in LABELS:
            t = zc[SZ_TASK[lab]]
            idx = t.index()
            by_label[lab] = np.array([t.proxies[name][idx[c]] for c in cells], dtype=np.float64)
        rows[name] = _corr(by_label, acc)
    return rows


def _feature_files(out: Path) -> dict[str, str]:
    """The statistics programs whose values are the learned models' store scalars: per statistic,
    the mean and the sum over blocks of its per-block Frobenius norm."""
    files, folder = {}, ensure_dir(out / "features")
    for t in sorted(TERMINALS):
        for agg in ("mean", "sum"):
            name = f"{agg}_frobenius_{t}"
            prog = Program(parse_formula(f"frobenius({t})"), aggregate=agg, name=name)
            files[name] = str(save_program(prog, folder / f"{name}.json"))
    return files


def _zc_features(zc: dict, cells: list[str], lab: str) -> np.ndarray:
    """(n, 13) NASLib proxies of the cells (the label's Suite-Zero task); a cell Suite-Zero lacks
    gets each proxy's lowest value minus one."""
    t = zc[SZ_TASK[lab]]
    idx = t.index()
    names = sorted(t.proxies)
    x = np.array([[t.proxies[n][idx[c]] if c in idx else np.nan for n in names] for c in cells], dtype=np.float64)
    for j in range(x.shape[1]):
        bad = ~np.isfinite(x[:, j])
        if bad.any():
            x[bad, j] = (np.nanmin(x[~bad, j]) if (~bad).any() else 0.0) - 1.0
    return x


def _train_features(a, files: dict[str, str], zc: dict) -> dict:
    """Per label: the train and validation parts ``evolve --split`` makes of the store's task for each
    learned seed (cells and accuracies), and every store cell's feature row."""
    from eznas_store.evolution.split import parse_split, split_task
    from eznas_store.fitness.engine import load_task, score_store

    progs = [load_program(f) for f in files.values()]
    res = score_store(a.store, progs)
    by_arch = {x: np.array([r.scores[i] for r in res]) for i, x in enumerate(res[0].archs)}
    out = {}
    for i, (lab, col) in enumerate(LABELS.items()):
        task = load_task(a.store, accuracy_column=col)
        zx = dict(zip(task.archs, _zc_features(zc, list(task.archs), lab)))
        feats = {x: np.concatenate([by_arch[x], zx[x]]) for x in task.archs}
        out[lab] = []
        for seed in range(a.learned_seeds):
            tr, va, _ = split_task(task, parse_split(a.split), seed, i)
            out[lab].append([(np.stack([feats[x] for x in part.archs]), np.asarray(part.accuracy, dtype=np.float64))
                             for part in (tr, va)])
    return out


def _learned_rows(a, train: dict, scores: dict, files: dict, zc: dict, cells: list[str], acc) -> dict:
    """Test τ/ρ of the learned models (per label, and CIFAR-10's on all three), mean and worst over seeds."""
    rank = a.learned_features == "rank"
    prep = (lambda x: rank_columns(x)) if rank else (lambda x: x)
    test_x = {lab: np.concatenate([np.stack([scores[f] for f in files.values()], axis=1),
                                   _zc_features(zc, cells, lab)], axis=1) for lab in LABELS}
    rows = {}
    for model in a.learned:
        per = {"per label": [], "CIFAR-10 only": []}
        for seed in range(a.learned_seeds):
            cfg = LearnedConfig(model=model, seed=seed, rank_features=rank, n_estimators=a.learned_trees)
            fitted = {lab: fit_learned(prep(train[lab][seed][0][0]), train[lab][seed][0][1],
                                       prep(train[lab][seed][1][0]), train[lab][seed][1][1], cfg) for lab in LABELS}
            pred = {lab: predict_learned(fitted[lab], prep(np.nan_to_num(test_x[lab]))) for lab in LABELS}
            c10 = {lab: predict_learned(fitted["cifar10"], prep(np.nan_to_num(test_x[lab]))) for lab in LABELS}
            per["per label"].append(_corr(pred, acc))
            per["CIFAR-10 only"].append(_corr(c10, acc))
        n = len(train["cifar10"][0][0][1]) + len(train["cifar10"][0][1][1])
        name = {"forest": "random forest", "boosting": "gradient boosting"}[model]
        for kind, runs in per.items():
            for stat, f in (("mean", np.mean), ("worst", np.min)):
                rows[f"{name}, {kind}, {n} labels ({stat} of {len(runs)} seeds)"] = {
                    lab: [float(f([r[lab][0] for r in runs])), float(f([r[lab][1] for r in runs])), runs[0][lab][2]]
                    for lab in LABELS}
    return rows


def _fmt(x: float) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{x:.3f}"


def _markdown(rows: dict, seeds: list[dict], batch: int, n: int) -> str:
    head = "| program | " + " | ".join(f"{lab} τ | {lab} ρ" for lab in LABELS) + " |"
    lines = [f"### Held-out cells: {n}, statistics at batch {batch}", "", head,
             "|---|" + "---|" * (2 * len(LABELS))]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{_fmt(r[lab][0])} | {_fmt(r[lab][1])}" for lab in LABELS) + " |")
    lines += ["", "| seed | program (best validation τ) | validation min τ | beats EZNAS-A, #params, nwot, jacov "
              "on all three labels |", "|---|---|---|---|"]
    for s in seeds:
        lines.append(f"| {s['seed']} | `{s['formula']}` ({s['aggregate']}) | {_fmt(s['validation'])} | "
                     f"{'yes' if s['wins'][str(batch)] else 'no: ' + s['misses'][str(batch)]} |")
    won = sum(s["wins"][str(batch)] for s in seeds)
    lines += ["", f"**{won} of {len(seeds)} seeds** beat all four on all three labels at batch {batch}.", ""]
    return "\n".join(lines)


def _judge(seed_row: dict, rows: dict) -> tuple[bool, str]:
    misses = [f"{r} on {lab}" for r in RIVALS for lab in LABELS
              if not seed_row[lab][0] > rows[r][lab][0]]
    return not misses, ", ".join(misses)


def _plot(rows: dict, batch: int, path: Path) -> None:
    fig = figure(9, 4)
    ax = fig.add_subplot(1, 1, 1)
    names = list(rows)
    x = np.arange(len(names))
    for k, lab in enumerate(LABELS):
        ax.bar(x + (k - 1) * 0.27, [rows[nm][lab][0] for nm in names], 0.27, label=lab)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("Kendall τ (held-out cells)")
    ax.set_title(f"statistics programs at batch {batch} vs hand-crafted proxies")
    ax.legend(fontsize=8)
    write_atomic(path, png(fig))


def main() -> None:
    a = _args()
    out = ensure_dir(Path(a.out), "--out")
    store = open_store(a.store)
    zc = read_zc(a.suitezero)  # read once: the test cells and the baselines' values
    cells = _test_cells(a, zc, set(store.plan.archs))
    table = read_benchmark(a.benchmark)
    row = {arch: i for i, arch in enumerate(table.archs)}
    acc = {lab: np.array([table.columns[col][row[c]] for c in cells], dtype=np.float64)
           for lab, col in LABELS.items()}
    print(f"{len(cells)} held-out cells (test seed {a.test_seed}), none in {a.store}")
    seeds, files = [], []
    for k in range(a.seeds):
        run, secs = _evolve(a, a.store, k, out)
        f = str(out / f"seed{k}" / "run" / "programs" / "best_ever_1.json")
        prog = load_program(f)
        seeds.append({"seed": k, "file": f, "formula": prog.formula(), "aggregate": prog.aggregate,
                      "validation": prog.meta.get("validation_tau"), "evolve_seconds": round(secs, 1),
                      "wins": {}, "misses": {}})
        files.append(f)
        print(f"seed {k}: {prog.formula()} ({prog.aggregate}), validation tau {prog.meta.get('validation_tau')}, "
              f"evolve {secs:.0f} s")
    report = {"cells": cells, "seeds": seeds, "extra": a.extra, "batches": {}}
    md = [f"# Statistics programs on held-out NB201 cells\n\nstore `{a.store}`, split {a.split}, "
          f"population {a.population}, generations {a.generations}, op set {a.op_set}\n"]
    extra = dict(e.split("=", 1) for e in a.extra)
    features = _feature_files(out) if a.learned else {}
    train = _train_features(a, features, zc) if a.learned else {}
    for batch in a.batches:
        t0 = time.perf_counter()
        scores = _on_the_fly(a, cells, [*files, *extra.values(), "eznas-a", *TWINS, *features.values()], batch)
        print(f"batch {batch}: collected and scored {len(cells)} cells in {time.perf_counter() - t0:.0f} s")
        rows = {f"seed {s['seed']}": _corr({lab: scores[s['file']] for lab in LABELS}, acc) for s in seeds}
        for label, f in {**extra, **{t: t for t in ("eznas-a", *TWINS)}}.items():
            rows[label] = _corr({lab: scores[f] for lab in LABELS}, acc)
        rows |= _baselines(zc, cells, acc)
        if a.learned:
            rows |= _learned_rows(a, train, scores, features, zc, cells, acc)
        for s in seeds:
            ok, miss = _judge(rows[f"seed {s['seed']}"], rows)
            s["wins"][str(batch)], s["misses"][str(batch)] = ok, miss
        report["batches"][str(batch)] = rows
        text = _markdown(rows, seeds, batch, len(cells))
        print(text)
        md.append(text)
        _plot(rows, batch, out / f"statistics_quality_b{batch}.png")
    write_atomic(out / "statistics_quality.md", "\n".join(md))
    write_atomic(out / "statistics_quality.json", json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
