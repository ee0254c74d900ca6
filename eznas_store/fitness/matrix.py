"""How programs transfer: Kendall tau / Spearman rho of each program on each problem.

The cross-problem matrix puts evolved proxy programs beside each problem's best single
hand-crafted proxy, on held-out networks of the problems evolved on and on whole other
problems; :func:`write_matrix` writes it as CSV, Markdown, text and a heat map.

Example
-------
>>> train, test = split_problem(problems[0], 100, seed=0)                           # doctest: +SKIP
>>> print(format_matrix(cross_problem_matrix({"sum": prog}, [test, problems[1]])))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eznas_store.errors import UnknownNameError
from eznas_store.evaluate import evaluate_columns
from eznas_store.fitness.correlations import kendall_tau, population_fitness, spearman_rho
from eznas_store.fitness.problems import ProxyProblem
from eznas_store.outputs import ensure_dir, figure, png, write_atomic
from eznas_store.programs import PROXY_OPS
from eznas_store.programs import Program

__all__ = ["CrossMatrix", "cross_problem_matrix", "format_matrix", "write_matrix"]


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
        cols = prob.column_tensors()
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
    out = Path(out_dir)
    ensure_dir(out)
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
