"""Evolved proxy formulas vs every hand-crafted proxy on the same held-out NB201 cells.

Usage (from the repository root, after ``eznas-store proxy-table --out T.csv``)::

    OMP_NUM_THREADS=1 python benchmarks/bench_proxy_quality.py --table T.csv --out DIR \\
        --train 100 --validation 100 --test 1000 --seeds 5

One run over one fixed held-out part of the table's cells (``--test``, drawn with
``--test-seed``; the same for every row of the table): Kendall τ and Spearman ρ on the
CIFAR-10 / CIFAR-100 / ImageNet16-120 test accuracies of

- every proxy column of the table (NASLib's 13 joined from Suite-Zero, and the modern
  ones: AZ-NAS components, MeCo, ZiCo, SWAP, swap_reg),
- the AZ-NAS aggregate (Σ_m ln(rank_m / N) over the held-out cells),
- EZNAS-A and any ``--statistics-program`` (the best program of a shipped statistics
  evolve), scored on the fly at batch 16 (CIFAR-10 images, seed 0; ``--no-eznas-a`` to
  skip EZNAS-A),
- the formulas evolved with ``evolve --over proxies`` for each of ``--seeds`` training
  splits: per seed, ``--train`` cells to evolve on (fitness: min τ over the three label
  sets of the same cells) and ``--validation`` cells to choose, among the run's saved
  programs and its ``--candidates`` best-trained ones (from the checkpoint's fitness cache),
  the one with the best validation min τ; mean and worst over the seeds.

``--oracle K`` adds a ceiling row: the best sum of ranks of at most K columns chosen on the
test cells themselves (by min τ), which no training split can pick, to tell whether the
terminals or the search limit the evolved formulas.

Writes ``DIR/quality.md``, ``DIR/quality.json``, ``DIR/quality.png`` and ships the
formula with the best *validation* min τ as ``--ship`` (a program JSON). A table too small
for the parts is refused unless ``--allow-small`` shrinks the test part to what is left.
"""

from __future__ import annotations

import argparse
import csv
import io
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
from eznas_store.fitness.problems import load_problems, split_problem
from eznas_store.fitness.proxy_table_scorer import ProxyTableScorer
from eznas_store.outputs import ensure_dir, figure, png, write_atomic
from eznas_store.programs.codec import load_program, save_program
from eznas_store.evolution.evolve import EvolveConfig, run_evolve

DATA = ROOT.parent / "shared" / "data"
LABELS = ("cifar10", "cifar100", "imagenet16")


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", required=True, help="a proxy table (eznas-store proxy-table)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--train", type=int, default=100)
    ap.add_argument("--validation", type=int, default=100)
    ap.add_argument("--test", type=int, default=1000)
    ap.add_argument("--test-seed", type=int, default=1000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--population", type=int, default=200)
    ap.add_argument("--generations", type=int, default=30)
    ap.add_argument("--max-depth", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=50,
                    help="programs with the best training fitness that the validation part chooses among")
    ap.add_argument("--oracle", type=int, default=0,
                    help="also the best rank sum of up to K columns chosen on the test cells (a ceiling, not a proxy)")
    ap.add_argument("--allow-small", action="store_true")
    ap.add_argument("--no-eznas-a", action="store_true")
    ap.add_argument("--statistics-program", action="append", default=[],
                    help="a statistics program JSON (e.g. a shipped evolve's best), scored on the fly beside EZNAS-A")
    ap.add_argument("--ship", default=None, help="program JSON for the best formula (by validation)")
    return ap.parse_args()


def _parts(n: int, a: argparse.Namespace) -> tuple[int, int, int]:
    rest = n - a.train - a.validation
    if rest >= a.test:
        return a.train, a.validation, a.test
    if not a.allow_small or rest < 2:
        sys.exit(f"bench_proxy_quality: error: the table has {n} usable cells, fewer than --train {a.train} "
                 f"+ --validation {a.validation} + --test {a.test} (--allow-small shrinks the test part)")
    return a.train, a.validation, rest


def _subset_table(src: Path, archs: set[str], dst: Path) -> Path:
    """The rows of ``archs`` (and the recipe) as a table of its own, for an evolve run."""
    raw = src.read_bytes()
    rows = list(csv.reader(io.StringIO(raw[: raw.rfind(b"\n") + 1].decode("utf-8"))))  # complete rows only
    body = [r for r in rows[1:] if len(r) == len(rows[0]) and r[1] in archs]
    ensure_dir(dst.parent)
    with open(dst, "w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows([rows[0], *body])
    shutil.copyfile(src.with_name(src.name[:-4] + ".meta.json"), dst.with_name(dst.name[:-4] + ".meta.json"))
    return dst


def _corr(scores: np.ndarray, problems) -> dict[str, tuple[float, float]]:
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


def _evolve_seed(table: Path, rest_archs: list[str], seed: int, a, sizes, out: Path) -> dict:
    """One training split: evolve on ``train`` cells, choose by validation min τ."""
    n_train, n_val, _ = sizes
    order = np.random.default_rng(seed).permutation(len(rest_archs))[: n_train + n_val]
    sub = _subset_table(table, {rest_archs[i] for i in order}, out / f"seed{seed}" / "trainval.csv")
    run = out / f"seed{seed}" / "run"
    if run.exists():
        shutil.rmtree(run)
    t0 = time.perf_counter()
    run_evolve(EvolveConfig(stores=(str(sub),), out=str(run), over="proxies", train_networks=n_train, seed=seed,
                            population=a.population, generations=a.generations, max_depth=a.max_depth,
                            combine="min", progress=False))
    secs = time.perf_counter() - t0
    val = [split_problem(p, n_train, seed)[1] for p in load_problems(sub)]
    cands = {f.stem: load_program(f) for f in sorted((run / "programs").glob("*.json"))} | _top_trained(run, a.candidates)
    names = list(cands)
    fits = ProxyTableScorer(val, combine="min").fitness([cands[k] for k in names])
    vals = [f.value if math.isfinite(f.value) else -math.inf for f in fits]
    best = names[int(np.argmax(vals))]
    return {"seed": seed, "program": cands[best], "role": best, "validation_min_tau": float(max(vals)),
            "seconds": secs}


def _top_trained(run: Path, k: int) -> dict[str, object]:
    """The ``k`` programs of the run with the best *training* fitness, from its checkpoint's
    fitness cache (every distinct program it evaluated): the validation part then chooses
    among them, not only among the three saved programs (best_final, best_ever_1/2)."""
    from eznas_store.programs.formula import parse_formula
    from eznas_store.programs.proxy_ops import PROXY_OPS
    from eznas_store.programs.tree import Program

    cache = json.loads((run / "checkpoint.json").read_text()).get("cache", {})
    scored = [(v["value"], key) for key, v in cache.items()
              if key.startswith("proxies/mean:") and v and v.get("value") is not None and math.isfinite(v["value"])]
    out = {}
    for rank, (_, key) in enumerate(sorted(scored, reverse=True)[:k]):
        formula = key.split(":", 1)[1]
        out[f"train_top_{rank + 1}"] = Program(parse_formula(formula, ops=PROXY_OPS, terminals=None),
                                               terminal_set="proxies")
    return out


def _evolved(table: Path, test, problems, a, sizes, out: Path) -> list[dict]:
    held = set(test[0].archs)
    rest = [x for x in problems[0].archs if x not in held]
    runs = []
    for seed in range(a.seeds):
        r = _evolve_seed(table, rest, seed, a, sizes, out)
        scores = ProxyTableScorer(test).scores([r["program"]])
        r["test"] = _corr([s[0] for s in scores], test)
        runs.append(r)
        print(f"seed {seed}: {r['program'].formula()}  validation min tau {r['validation_min_tau']:.3f}  "
              f"test tau " + " ".join(f"{lab} {r['test'][lab][0]:.3f}" for lab in LABELS), flush=True)
    return runs


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


def _shipped(run: dict, table: Path):
    """The chosen formula with what a search needs to compute its terminals on the same scale:
    NASLib's 13 come from Suite-Zero, i.e. PyTorch's default init (``search`` reads
    ``meta["proxy_init"]``)."""
    import dataclasses

    meta = {"proxy_init": "default", "evolved_on": str(table), "training_split_seed": run["seed"],
            "validation_min_tau": run["validation_min_tau"], "chosen_as": run["role"]}
    return dataclasses.replace(run["program"], name=f"proxies-nb201-evolved-seed{run['seed']}", meta=meta)


def _fmt(x: float) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _markdown(rows: dict, runs: list[dict], n: dict, a) -> str:
    head = ("| proxy | " + " | ".join(f"{lab} τ | {lab} ρ" for lab in LABELS) + " |\n|---|"
            + "---|" * (2 * len(LABELS)) + "\n")
    body = "".join(f"| {name} | " + " | ".join(f"{_fmt(v[lab][0])} | {_fmt(v[lab][1])}" for lab in LABELS)
                   + " |\n" for name, v in sorted(rows.items(), key=lambda kv: -np.nanmin(
                       [kv[1][lab][0] for lab in LABELS])))
    seeds = "".join(f"| {r['seed']} | `{r['program'].formula()}` | {_fmt(r['validation_min_tau'])} | "
                    + " | ".join(_fmt(r["test"][lab][0]) for lab in LABELS) + " |\n" for r in runs)
    return (f"# Proxy quality on {n['test']} held-out NB201 cells\n\n"
            f"Table `{a.table}`: {n['usable']} usable cells ({n['dropped']} dropped: a non-finite value); "
            f"per seed {n['train']} train + {n['validation']} validation cells, test seed {a.test_seed}. "
            "Rows sorted by the worst τ over the three label sets.\n\n" + head + body
            + "\n## Evolved formulas per training-split seed (test τ)\n\n| seed | formula | validation min τ | "
            + " | ".join(LABELS) + " |\n|---|---|---|" + "---|" * len(LABELS) + "\n" + seeds)


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
    out, table = ensure_dir(a.out), Path(a.table)
    problems = load_problems(table)
    sizes = _parts(len(problems[0]), a)
    perm = np.random.default_rng(a.test_seed).permutation(len(problems[0]))
    test_rows = np.sort(perm[: sizes[2]])
    test = [p.subset(test_rows, name=f"{p.name}[test]", split="test") for p in problems]
    rows = _hand_crafted(test)
    if a.oracle:
        formula, corr = _oracle(test, a.oracle)
        rows[f"ceiling: {formula} (chosen on the test cells)"] = corr
    runs = _evolved(table, test, problems, a, sizes, out) if a.seeds else []
    if runs and a.ship:  # shipped before the slow on-the-fly scoring, so a search can start with it
        best = max(runs, key=lambda r: r["validation_min_tau"])
        save_program(_shipped(best, table), a.ship)
        print(f"shipped seed {best['seed']}'s formula to {a.ship}", flush=True)
    for stat, f in (("mean", np.mean), ("worst", np.min)):
        if runs:
            rows[f"evolved ({stat} of {len(runs)} seeds)"] = {
                lab: (float(f([r["test"][lab][0] for r in runs])), float(f([r["test"][lab][1] for r in runs])))
                for lab in LABELS}
    stats = {} if a.no_eznas_a else {"EZNAS-A (batch 16, on the fly)": load_program("eznas-a")}
    for path in a.statistics_program:
        prog = load_program(path)
        stats[f"{Path(path).stem}: {prog.formula()} (batch 16, on the fly)"] = prog
    if stats:
        rows |= _statistics_programs(test, json.loads(table.with_name(table.name[:-4] + ".meta.json").read_text()),
                                     stats)
    n = {"usable": len(problems[0]), "dropped": problems[0].dropped, "train": sizes[0],
         "validation": sizes[1], "test": sizes[2]}
    write_atomic(out / "quality.md", _markdown(rows, runs, n, a) + _az_all(problems))
    _plot(rows, out / "quality.png")
    doc = {"cells": n, "rows": rows, "runs": [{k: (v.formula() if k == "program" else v) for k, v in r.items()}
                                              for r in runs]}
    write_atomic(out / "quality.json", json.dumps(doc, indent=1, default=float) + "\n")
    print((out / "quality.md").read_text())


if __name__ == "__main__":
    main()
