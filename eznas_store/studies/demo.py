"""``eznas-store demo``: the whole pipeline on a fresh machine, with ground truth it makes itself.

A fresh machine has no benchmark table and no CIFAR files, so the demo first *trains*
a seeded sample of NB201 cells (reduced skeleton) on scikit-learn's bundled digits
(``label``), then ingests the same cells' statistics, evolves a proxy on them, scores
EZNAS-A and the evolved programs, and writes the report. Every step is the real command
with smaller numbers; each step's output is kept, and rerunning resumes where it stopped.

Every option is checked before anything is deleted or trained. The folder is marked as the
demo's (:func:`~eznas_store.outputs.mark_owned`, each entry before it is written), a name the
demo writes that exists but was not written by it is refused, ``--fresh`` deletes only what the
demo wrote (:func:`~eznas_store.outputs.remove_owned`: a folder the demo did not make is refused
in one line, nothing deleted), and the whole run holds the folder's one-writer lock.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eznas_store.collect import DEMO_LABEL, LabelConfig, run_label
from eznas_store.config import MAX_WORKERS, check_count, check_seed, is_int
from eznas_store.errors import ConfigError, OutputError
from eznas_store.fitness import kendall_tau, spearman_rho
from eznas_store.ingest import IngestConfig
from eznas_store.ingest import run_ingest
from eznas_store.outputs import MARKER, ensure_dir, exclusive, mark_owned, remove_owned, write_atomic
from eznas_store.report import write_report
from eznas_store.evolution import CHECKPOINT, EvolveConfig, run_evolve
from eznas_store.sources import get_space
from eznas_store.sources import meta_path

#: evolution settings of the demo (the paper's defaults, shrunk to a few minutes on 2 cores)
DEMO_EVOLVE = dict(population=20, mu=10, lambda_=20, generations=4, max_depth=6)
#: statistics batch of the demo (digits images, reduced skeleton)
DEMO_BATCH = 8
#: the fewest cells the pipeline works with: evolve's fitness is a Kendall tau, which needs two
MIN_DEMO_NETWORKS = 2
#: what the demo writes into ``--out``: the label table (and its sidecar), the store, the run, and the
#: options that decide them (a rerun with others is refused before any work: pass --fresh)
TABLE, STORE, RUN, OPTIONS = "digits_labels.csv", "store.zarr", "run", "demo.json"
#: the one-writer lock files its steps leave beside their outputs if killed (marked, so ``--fresh`` clears them)
_LOCKS = tuple(f"{name}.lock" for name in (TABLE, STORE, RUN))


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    out: str = "demo-out"
    networks: int = 40
    seed: int = 0
    workers: int = 0
    fresh: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.out, str) or not self.out.strip():
            raise ConfigError("demo needs --out (the folder for the table, store, run and report)")
        check_seed(self.seed, "--seed")
        check_count(self.workers, "--workers", 0, MAX_WORKERS)
        cells = get_space(DEMO_LABEL["space"]).n_cells
        if not is_int(self.networks) or not MIN_DEMO_NETWORKS <= self.networks <= cells:
            raise ConfigError(f"--networks must be an integer from {MIN_DEMO_NETWORKS} (Kendall tau needs two "
                              f"networks) to {cells} (the {DEMO_LABEL['space']} cells), got {self.networks!r}")


@dataclass(frozen=True)
class _Steps:
    """The configs of the three steps, built (and so checked) before anything is written."""

    label: LabelConfig
    ingest: IngestConfig
    evolve: EvolveConfig


def _steps(cfg: DemoConfig, out: Path) -> _Steps:
    recipe = dict(DEMO_LABEL) | {"networks": cfg.networks, "seed": cfg.seed}
    store = out / STORE
    return _Steps(
        label=LabelConfig(out=str(out / TABLE), progress=cfg.progress, **recipe),
        ingest=IngestConfig(store=str(store), dataset="digits", benchmark=str(out / TABLE), networks=None,
                            seed=cfg.seed, batch_size=DEMO_BATCH, image_size=recipe["image_size"], C=recipe["C"],
                            N=recipe["N"], device="cpu", progress=cfg.progress),
        evolve=EvolveConfig(stores=(str(store),), out=str(out / RUN), seed=cfg.seed, workers=cfg.workers,
                            progress=cfg.progress, **DEMO_EVOLVE))


def run_demo(cfg: DemoConfig, *, echo=print) -> Path:
    """label → ingest → evolve → report; returns the report's HTML path.

    Every check that needs no work comes first: the options (``DemoConfig``), the three steps'
    configs, ``--out`` itself; then, under the folder's lock, ``--fresh`` or the ownership check.
    """
    out = Path(cfg.out)
    steps = _steps(cfg, out)
    ensure_dir(out.parent, "folder of --out")
    with exclusive(out, "demo folder"):
        if out.exists() and not out.is_dir():
            raise OutputError(f"--out {out} is a file: demo writes a folder")
        if cfg.fresh:
            remove_owned(out, "demo")
        _check_owned(out)
        _check_options(out, cfg)
        ensure_dir(out)
        mark_owned(out, "demo", [OPTIONS])
        write_atomic(out / OPTIONS, json.dumps({"networks": cfg.networks, "seed": cfg.seed}) + "\n")
        return _pipeline(cfg, out, steps, echo)


def _check_owned(out: Path) -> None:
    """Refuse a folder marked by another command, or one of the demo's names that the demo did not write."""
    try:
        doc = json.loads((out / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        doc = {}
    doc = doc if isinstance(doc, dict) else {}
    command, entries = doc.get("command"), doc.get("entries")
    if command not in (None, "demo"):
        raise OutputError(f"--out {out} was made by eznas-store {command}, not demo: choose another --out")
    owned = set(entries) if command == "demo" and isinstance(entries, list) else set()
    for name in (TABLE, meta_path(TABLE).name, STORE, RUN, OPTIONS):
        p = out / name
        if (p.exists() or p.is_symlink()) and name not in owned:
            raise OutputError(f"demo refuses to use {p}: eznas-store demo did not write it (no {MARKER} of "
                              "demo lists it); move it or choose another --out")


def _check_options(out: Path, cfg: DemoConfig) -> None:
    """Refuse a rerun whose --networks or --seed differ from the demo already in ``out``."""
    try:
        old = json.loads((out / OPTIONS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    for key in ("networks", "seed"):
        if isinstance(old, dict) and old.get(key) != getattr(cfg, key):
            raise ConfigError(f"{out} holds a demo made with --{key} {old.get(key)!r}, not {getattr(cfg, key)!r}: "
                              "pass --fresh to start it over, use the same options or choose another --out")


def _pipeline(cfg: DemoConfig, out: Path, steps: _Steps, echo) -> Path:
    t0 = time.perf_counter()
    lcfg = steps.label
    echo(f"[1/4] label: training {cfg.networks} NB201 cells (C={lcfg.C}, N={lcfg.N}) on "
         f"digits for {lcfg.epochs} epochs → {lcfg.out}")
    mark_owned(out, "demo", [TABLE, meta_path(TABLE).name, _LOCKS[0]])
    lab = run_label(lcfg)
    echo(f"      {lab.line()}")

    echo(f"[2/4] ingest: statistics of the same cells at batch {DEMO_BATCH} → {steps.ingest.store}")
    mark_owned(out, "demo", [STORE, _LOCKS[1]])
    echo(f"      {run_ingest(steps.ingest).line()}")

    run = out / RUN
    echo(f"[3/4] evolve: {DEMO_EVOLVE['generations']} generations, population {DEMO_EVOLVE['population']}, "
         f"{f'{cfg.workers} Dask workers' if cfg.workers else 'in-process'} → {run}")
    mark_owned(out, "demo", [RUN, _LOCKS[2]])
    res = run_evolve(steps.evolve, resume=(run / CHECKPOINT).exists())
    fit = res.best_final.meta.get("fitness")
    fit = f"{fit:.4f}" if isinstance(fit, (int, float)) else "n/a"
    echo(f"      best evolved program: tau {fit}: {res.best_final.formula()}")

    echo("[4/4] report")
    md, html = write_report(run, title="eznas-store demo: NB201 cells trained on digits")
    for line in _score_lines(run):
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


__all__ = ["DemoConfig", "run_demo", "DEMO_EVOLVE", "DEMO_BATCH", "MIN_DEMO_NETWORKS"]
