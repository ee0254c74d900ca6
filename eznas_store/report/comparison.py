"""One report over several evolve runs: statistic variants, tree vs sequential, budgets.

:func:`write_comparison` reads each run directory (:func:`~eznas_store.report.runs.read_run`)
and writes ``comparison.md``, ``comparison.html``, ``comparison.csv`` and a fitness plot
with one line per run; :func:`variant_label` names a run's variant as the paper does.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import eznas_store.outputs as outputs
from eznas_store.errors import DataNotFoundError
from eznas_store.report.document import (
    MISSING,
    Block,
    Heading,
    Image,
    as_float,
    format_duration,
    format_number,
    paragraph,
    table,
)
from eznas_store.report.html import to_html
from eznas_store.report.markdown import to_markdown
from eznas_store.report.plots import DPI
from eznas_store.report.runs import RunRecord, read_run, score_correlations

__all__ = ["variant_label", "write_comparison"]


def variant_label(run: RunRecord) -> str:
    """The paper's name for a run's statistic variant (Fig. 3), e.g. ``EZNAS-(C-B-R)-(L2)``,
    from the collection structure its stores recorded and the run's to_scalar; proxy runs
    are ``proxies``, and a sequential run says so."""
    cfg = run.info.get("config") or {}
    if cfg.get("over") == "proxies":
        label = "proxies"
    else:
        structures = {t.get("structure") for t in run.info.get("tasks") or [] if isinstance(t, Mapping)}
        structures.discard(None)
        struct = "/".join(sorted("-".join(s.upper()) for s in structures)) or "?"
        label = f"EZNAS-({struct})-({'Mean' if cfg.get('to_scalar', 'mean') == 'mean' else 'L2'})"
    if cfg.get("representation") == "sequential":
        label += " sequential"
    return label


def _comparison_rows(runs: Sequence[RunRecord]) -> tuple[list[str], list[list[Any]]]:
    """Header and one row per run (raw values: floats, ``MISSING``); the table and CSV format them."""
    tasks: list[str] = []
    for run in runs:
        tasks += [t for t in run.task_names() if t not in tasks]
    header = ["run", "variant", "generations", "evaluated", "wall time", "best fitness", "final best fitness"]
    header += [f"tau {t}" for t in tasks] + [f"rho {t}" for t in tasks] + ["dead code", "formula"]
    rows = []
    for run in runs:
        gens = [g for g in run.generations if isinstance(g.get("gen"), (int, float))]
        best_ever = max((as_float(g.get("best")) for g in gens if math.isfinite(as_float(g.get("best")))),
                        default=math.nan)
        final = as_float(gens[-1].get("best")) if gens else math.nan
        corr = (score_correlations(run.scores["best_final"], tasks) if "best_final" in run.scores
                else pd.DataFrame(index=tasks, columns=["tau", "rho"], dtype=float))
        dead = gens[-1].get("dead_code_fraction", MISSING) if gens else MISSING
        prog = run.programs.get("best_final")
        formula = prog.formula() if prog is not None else (gens[-1].get("best_formula") if gens else None)
        rows.append([run.path.name, variant_label(run), len(gens) - 1 if gens else 0,
                     int(sum(as_float(g.get("evaluated")) for g in gens if math.isfinite(as_float(g.get("evaluated"))))),
                     format_duration(run.info.get("seconds")), best_ever, final,
                     *[corr["tau"].get(t, math.nan) for t in tasks], *[corr["rho"].get(t, math.nan) for t in tasks],
                     dead, formula or "-"])
    return header, rows


def _comparison_plot(runs: Sequence[RunRecord], labels: Sequence[str]) -> bytes | None:
    """Best (solid) and median (dashed) fitness per generation, one colour per run."""
    fig = outputs.figure(7.0, 3.8, dpi=DPI)
    ax = fig.add_subplot()
    drawn = False
    for k, (run, label) in enumerate(zip(runs, labels)):
        gens = [g for g in run.generations if isinstance(g.get("gen"), (int, float))]
        if not gens:
            continue
        x = np.array([g["gen"] for g in gens], dtype=np.float64)
        color = f"C{k % 10}"
        ax.plot(x, [as_float(g.get("best")) for g in gens], color=color, marker="o", ms=3, label=f"{label} best")
        ax.plot(x, [as_float(g.get("median")) for g in gens], color=color, ls="--", alpha=0.7)
        drawn = True
    if not drawn:
        return None
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (Kendall tau); dashed: median")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    return outputs.png(fig)


def write_comparison(run_dirs: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], *,
                     title: str | None = None) -> tuple[Path, Path, Path]:
    """One report over several evolve runs (statistic variants, tree vs sequential, ...).

    Writes ``comparison.md``, ``comparison.html``, ``comparison.csv`` and
    ``plots/comparison_fitness.png`` into ``out``: per run its variant label, budget,
    best fitness, the final best program's tau/rho on every task and, for sequential runs,
    the dead-code fraction of the last population. Returns (markdown, HTML, CSV) paths.
    """
    if not run_dirs:
        raise DataNotFoundError("compare needs at least one run directory")
    runs = [read_run(d) for d in run_dirs]
    out_dir = Path(out)
    outputs.ensure_dir(out_dir / "plots")
    labels = [f"{r.path.name}: {variant_label(r)}" for r in runs]
    header, rows = _comparison_rows(runs)
    title = title or "EZNAS runs compared"
    blocks: list[Block] = [Heading(1, title),
                            paragraph(f"{len(runs)} runs; tau/rho are those of each run's final best program "
                                  "(scores/best_final.csv) on every task; 'best fitness' is the best over all "
                                  "generations, 'final best fitness' the best of the last population.")]
    numeric = [False, False, True, True, False, True, True] + [True] * (len(header) - 9) + [True, False]
    blocks.append(table(header, [[format_number(v) if isinstance(v, float) else ("-" if v is MISSING else str(v))
                                   for v in row] for row in rows], numeric))
    png = _comparison_plot(runs, labels)
    if png is not None:
        blocks += [Heading(2, "Fitness per generation"), Image("plots/comparison_fitness.png", "fitness per run", png)]
        outputs.write_atomic(out_dir / "plots" / "comparison_fitness.png", png)
    for run, label in zip(runs, labels):
        for note in run.notes:
            blocks.append(paragraph(f"{label}: {note}"))
    csv = pd.DataFrame([[None if v is MISSING else v for v in row] for row in rows], columns=header)
    md, html, csv_path = out_dir / "comparison.md", out_dir / "comparison.html", out_dir / "comparison.csv"
    outputs.write_atomic(csv_path, csv.to_csv(index=False))
    outputs.write_atomic(md, to_markdown(blocks))
    outputs.write_atomic(html, to_html(blocks, title))
    return md, html, csv_path
