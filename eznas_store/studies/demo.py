"""``eznas-store demo``: the whole pipeline on a fresh machine, with ground truth it makes itself.

A fresh machine has no benchmark table and no CIFAR files, so the demo first *trains*
a seeded sample of NB201 cells (reduced skeleton) on scikit-learn's bundled digits
(``label``), then ingests the same cells' statistics, evolves a proxy on them, scores
EZNAS-A and the evolved programs, and writes the report. Every step is the real command
with smaller numbers; each step's output is kept, and rerunning resumes where it stopped.
"""

from __future__ import annotations

import csv
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eznas_store.collect.label import DEMO_LABEL, LabelConfig, run_label
from eznas_store.fitness.correlations import kendall_tau, spearman_rho
from eznas_store.ingest.config import IngestConfig
from eznas_store.ingest.driver import run_ingest
from eznas_store.report.run_report import write_report
from eznas_store.search.evolve import CHECKPOINT, EvolveConfig, run_evolve
from eznas_store.outputs import ensure_dir

#: evolution settings of the demo (the paper's defaults, shrunk to a few minutes on 2 cores)
DEMO_EVOLVE = dict(population=20, mu=10, lambda_=20, generations=4, max_depth=6)
#: statistics batch of the demo (digits images, reduced skeleton)
DEMO_BATCH = 8


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    out: str = "demo-out"
    networks: int = 40
    seed: int = 0
    workers: int = 0
    fresh: bool = False
    progress: bool = True


def run_demo(cfg: DemoConfig, *, echo=print) -> Path:
    """label → ingest → evolve → report; returns the report's HTML path."""
    out = Path(cfg.out)
    if cfg.fresh and out.exists():
        shutil.rmtree(out)
    ensure_dir(out)
    t0 = time.perf_counter()
    recipe = dict(DEMO_LABEL) | {"networks": cfg.networks, "seed": cfg.seed}
    bench = out / "digits_labels.csv"
    echo(f"[1/4] label: training {cfg.networks} NB201 cells (C={recipe['C']}, N={recipe['N']}) on "
         f"digits for {recipe['epochs']} epochs → {bench}")
    lab = run_label(LabelConfig(out=str(bench), progress=cfg.progress, **recipe))
    echo(f"      {lab.line() if hasattr(lab, 'line') else lab}")

    store = out / "store.zarr"
    echo(f"[2/4] ingest: statistics of the same cells at batch {DEMO_BATCH} → {store}")
    ing = run_ingest(IngestConfig(
        store=str(store), dataset="digits", benchmark=str(bench), networks=None, seed=cfg.seed,
        batch_size=DEMO_BATCH, image_size=recipe["image_size"], C=recipe["C"], N=recipe["N"],
        device="cpu", progress=cfg.progress))
    echo(f"      {ing.line()}")

    run = out / "run"
    echo(f"[3/4] evolve: {DEMO_EVOLVE['generations']} generations, population {DEMO_EVOLVE['population']}, "
         f"{f'{cfg.workers} Dask workers' if cfg.workers else 'in-process'} → {run}")
    ecfg = EvolveConfig(stores=(str(store),), out=str(run), seed=cfg.seed, workers=cfg.workers,
                        progress=cfg.progress, **DEMO_EVOLVE)
    res = run_evolve(ecfg, resume=(run / CHECKPOINT).exists())
    fit = res.best_final.meta.get("fitness")
    fit = f"{fit:.4f}" if isinstance(fit, (int, float)) else "n/a"
    echo(f"      best evolved program: tau {fit}: {res.best_final.formula()}")

    echo("[4/4] report")
    md, html = write_report(run, title="eznas-store demo: NB201 cells trained on digits")
    summary = _score_lines(run)
    for line in summary:
        echo(f"      {line}")
    echo(f"done in {time.perf_counter() - t0:.0f} s: open {html}")
    return Path(html)


def _score_lines(run: Path) -> list[str]:
    """τ/ρ of each scored program from the run's scores/*.csv (what the report shows)."""
    lines = []
    for f in sorted((run / "scores").glob("*.csv")):
        rows = list(csv.DictReader(open(f)))
        s = np.array([float(r["score"]) if r["score"] else np.nan for r in rows])
        a = np.array([float(r["accuracy"]) for r in rows])
        ok = np.isfinite(s)
        if ok.sum() >= 2:
            lines.append(f"{f.stem:12s} Kendall tau {kendall_tau(s[ok], a[ok]):+.3f}  Spearman rho "
                         f"{spearman_rho(s[ok], a[ok]):+.3f}  ({ok.sum()}/{len(s)} networks valid)")
        else:
            lines.append(f"{f.stem:12s} invalid on the networks")
    return lines


__all__ = ["DemoConfig", "run_demo", "DEMO_EVOLVE", "DEMO_BATCH"]
