"""Evolve a proxy formula for search on Suite-Zero values, choose it on validation cells, judge it on the rest.

Issue 13, item 5. The 9,445 Suite-Zero NB201 CIFAR-10 cells are permuted by ``--split-seed``
(not by accuracy): the first ``--train`` are written to a zc file holding only ``--proxies``
(cheap ones by default) and evolved on (``evolve --over proxies --train-networks train-2``,
the label Suite-Zero's ``val_accuracy``), the next ``--validation`` choose among the saved
programs of every seed, and the rest judge. A search keeps the best cell it meets, so the
choice is a simulated search: per formula, the CIFAR-10 *test* accuracy (``--benchmark``) of
its top-scored cell among ``--subset`` random validation cells, averaged over ``--repeats``
subsets. On the test cells the same is reported with subsets of 1,000, and the accuracy of
the formula's top cell and the mean of its top 5 over all of them.

    python benchmarks/bench_search_formula.py --out Q --fitness weighted_tau --seeds 0-9 \
        --ship jobs/programs/proxies-nb201-search-evolved.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from eznas_store.evaluate.columns import evaluate_columns
from eznas_store.fitness.correlations import kendall_tau, weighted_tau
from eznas_store.programs.codec import load_program
from eznas_store.programs.proxy_ops import PROXY_OPS
from eznas_store.sources.suitezero import read_zc
from eznas_store.sources.tables import read_benchmark

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CHEAP = ("synflow", "params", "flops", "zen", "jacov", "nwot", "snip", "grad_norm")
ROLES = ("best_final", "best_ever_1", "best_ever_2")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suitezero", default=str(DATA / "suite-zero" / "zc_nasbench201.json.gz"))
    ap.add_argument("--benchmark", default=str(DATA / "nb201_accuracies.csv"))
    ap.add_argument("--out", required=True)
    ap.add_argument("--fitness", default="weighted_tau", choices=("tau", "weighted_tau"))
    ap.add_argument("--seeds", default="0-9", help="evolve seeds, e.g. 0-9 or 0,3")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--train", type=int, default=1000)
    ap.add_argument("--validation", type=int, default=1000)
    ap.add_argument("--proxies", default=",".join(CHEAP))
    ap.add_argument("--subset", type=int, default=300, help="cells per simulated search on validation")
    ap.add_argument("--repeats", type=int, default=300)
    ap.add_argument("--ship", help="copy the chosen program here, with how it was made in its meta")
    return ap.parse_args(argv)


def seeds_of(text: str) -> list[int]:
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def split_cells(args, out: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray, Path]:
    """Columns, labels and the three parts; the training part written as a zc file."""
    raw = json.load(gzip.open(args.suitezero))["cifar10"]
    keys = list(raw)
    perm = np.random.default_rng(args.split_seed).permutation(len(keys))
    tr, va, te = perm[:args.train], perm[args.train:args.train + args.validation], perm[args.train + args.validation:]
    keep = set(args.proxies.split(",")) | {"idx", "arch", "val_accuracy"}
    zc = out / "zc_train.json.gz"
    with gzip.open(zc, "wt") as f:
        json.dump({"cifar10": {keys[i]: {k: v for k, v in raw[keys[i]].items() if k in keep} for i in tr}}, f)
    table = read_zc(args.suitezero)["cifar10"]
    bench = read_benchmark(args.benchmark)
    test_acc = dict(zip(bench.archs, bench.columns["cifar10_test"]))
    data = {"cols": {k: np.asarray(v, dtype=np.float64) for k, v in table.proxies.items() if k in keep},
            "val": np.asarray(table.val_accuracy, dtype=np.float64),
            "test": np.array([test_acc[a] for a in table.archs])}
    finite = np.all([np.isfinite(c) for c in data["cols"].values()], axis=0)
    return data, tr, va[finite[va]], te[finite[te]], zc


def simulate(scores: np.ndarray, acc: np.ndarray, subset: int, repeats: int) -> dict:
    """Top cell, top-5 mean, and the mean top cell of random subsets (a search that met ``subset``
    cells); the same subsets (seed 1) for every formula, so formulas are compared on the same draws."""
    s = np.where(np.isfinite(scores), scores, -np.inf)
    order = np.argsort(-s, kind="stable")
    rng = np.random.default_rng(1)
    picks = [acc[sub[np.argmax(s[sub])]] for sub in
             (rng.choice(len(s), subset, replace=False) for _ in range(repeats))]
    return {"top1": float(acc[order[0]]), "top5": float(acc[order[:5]].mean()), f"sim{subset}": float(np.mean(picks))}


def evaluate(program, data: dict, rows: np.ndarray, subset: int, repeats: int) -> dict:
    cols = {k: torch.as_tensor(v[rows]) for k, v in data["cols"].items()}
    s = np.asarray(evaluate_columns(program, cols, ops=PROXY_OPS)[0], dtype=np.float64)
    return {"wtau": weighted_tau(s, data["val"][rows]), "tau": kendall_tau(s, data["val"][rows]),
            **simulate(s, data["test"][rows], subset, repeats)}


def evolve(zc: Path, run: Path, fitness: str, seed: int, n_train: int) -> list[str]:
    cmd = ["evolve", str(zc), "--over", "proxies", "--fitness", fitness, "--train-networks", str(n_train - 2),
           "--population", "200", "--mu", "100", "--lambda", "200", "--generations", "30", "--max-depth", "4",
           "--seed", str(seed), "--workers", "0", "--no-progress", "--out", str(run)]
    if not (run / "programs" / "best_final.json").exists():
        subprocess.run([sys.executable, "-m", "eznas_store.cli", *cmd], check=True, stdout=subprocess.DEVNULL)
    return ["eznas-store", *cmd]


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, tr, va, te, zc = split_cells(args, out)
    rows = []
    for seed in seeds_of(args.seeds):
        run = out / f"{args.fitness}-seed{seed}"
        cmd = evolve(zc, run, args.fitness, seed, args.train)
        for role in ROLES:
            p = load_program(run / "programs" / f"{role}.json", ops=PROXY_OPS)
            v = evaluate(p, data, va, args.subset, args.repeats)
            t = evaluate(p, data, te, 1000, args.repeats)
            rows.append({"seed": seed, "role": role, **{f"val_{k}": x for k, x in v.items()},
                         **{f"test_{k}": x for k, x in t.items()}, "formula": p.formula(),
                         "file": str(run / "programs" / f"{role}.json"), "command": " ".join(cmd)})
    df = pd.DataFrame(rows)
    df.to_csv(out / "candidates.csv", index=False)
    best = df.loc[df[f"val_sim{args.subset}"].idxmax()]
    shown = df.drop(columns=["file", "command"]).round(3)
    (out / "candidates.txt").write_text(shown.to_string(index=False) + "\n")
    print(shown.to_string(index=False))
    print(f"train {len(tr)}, validation {len(va)}, test {len(te)} cells; chosen by val_sim{args.subset}: "
          f"seed {best['seed']} {best['role']}: {best['formula']}")
    if args.ship:
        ship(args, best, len(tr), len(va), len(te))


def ship(args, best: pd.Series, n_tr: int, n_va: int, n_te: int) -> None:
    doc = json.loads(Path(best["file"]).read_text())
    doc["name"] = Path(args.ship).stem
    doc["meta"] = {**doc["meta"], "proxy_init": "default", "command": best["command"],
                   "made_by": "python benchmarks/bench_search_formula.py " + " ".join(sys.argv[1:]),
                   "cells": (f"Suite-Zero NB201 cifar10, permutation seed {args.split_seed}: train the first "
                             f"{n_tr} (proxies {args.proxies}; label val_accuracy), validation the next "
                             f"{n_va}, test the other {n_te} with all those proxies finite"),
                   "chosen_as": (f"highest val_sim{args.subset} (CIFAR-10 test accuracy of the top-scored cell of "
                                 f"{args.subset} random validation cells, mean of {args.repeats}) among the saved "
                                 f"programs of seeds {args.seeds}"),
                   **{k: float(best[k]) for k in best.index if k.startswith(("val_", "test_"))}}
    Path(args.ship).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"shipped → {args.ship}")


if __name__ == "__main__":
    main()
