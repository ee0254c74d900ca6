"""The report's plots as PNG bytes: fitness per generation, score vs accuracy, the tree.

Drawn with matplotlib's object API on the Agg canvas (:func:`eznas_store.outputs.figure`,
no ``pyplot``), so a report neither needs a display nor changes the caller's backend.
A plot with nothing to show returns None and the report says why instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

import eznas_store.outputs as outputs
from eznas_store.programs import Apply, Node, Terminal
from eznas_store.report.document import as_float, format_number
from eznas_store.report.runs import RunRecord, score_correlations

__all__ = ["DPI", "LOG_DECADES", "RANK_DECADES", "fitness_plot", "scatter_plot", "score_axis", "tree_layout", "tree_plot"]

DPI = 110
#: the score axis of a scatter is symlog/log above this many decades, ranks above the second
LOG_DECADES, RANK_DECADES = 3.0, 30.0
#: a tree wider than this (inches, at the drawing's font size) is only given as text
_MAX_TREE_INCHES = 60.0
_CHAR_INCHES = 0.085  # width of one monospace character at 9 pt, plus slack


def fitness_plot(run: RunRecord) -> bytes | None:
    """Best and median fitness per generation, valid fraction on a twin axis; None before any."""
    gens = [g for g in run.generations if isinstance(g.get("gen"), (int, float))]
    if not gens:
        return None
    x = np.array([g["gen"] for g in gens], dtype=np.float64)
    best = np.array([as_float(g.get("best")) for g in gens])
    median = np.array([as_float(g.get("median")) for g in gens])
    valid = np.array([as_float(g.get("valid_fraction")) for g in gens])
    fig = outputs.figure(7.0, 3.8, dpi=DPI)
    ax = fig.add_subplot()
    marker = "o" if len(x) <= 40 else None
    h1 = ax.plot(x, best, marker=marker, ms=4, color="tab:blue", label="best")
    h2 = ax.plot(x, median, marker=marker, ms=4, color="tab:orange", label="median")
    ax.set_xlabel("generation")
    ax.set_ylabel("fitness (Kendall tau)")
    ax.grid(alpha=0.3)
    if len(x) <= 30:
        ax.set_xticks(x)
    if not np.isfinite(np.r_[best, median]).any():
        ax.text(0.5, 0.5, "no valid fitness yet", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax2 = ax.twinx()
    h3 = ax2.plot(x, valid, ls="--", color="tab:green", alpha=0.8, label="valid fraction")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("valid fraction", color="tab:green")
    handles = h1 + h2 + h3
    ax.legend(handles, [h.get_label() for h in handles], loc="lower center", bbox_to_anchor=(0.5, 1.0),
              ncols=3, fontsize=8, frameon=False)
    return outputs.png(fig)


def score_axis(values: np.ndarray) -> str:
    """"linear", "log", "symlog" or "rank" for a program's finite scores."""
    nz = np.abs(values[values != 0])
    if nz.size < 2:
        return "linear"
    decades = math.log10(float(nz.max())) - math.log10(float(nz.min()))
    if decades > RANK_DECADES:
        return "rank"
    if decades > LOG_DECADES:
        return "log" if bool(np.all(values > 0)) else "symlog"
    return "linear"


def _symlog_axis(ax: Any, values: np.ndarray) -> None:
    """A symlog y axis, linear below the 5th percentile of |score| (a power of ten), with
    ticks at 0 and at most about five powers of ten per sign, none crowding zero."""
    nz = np.abs(values[values != 0])
    lo = math.floor(math.log10(float(np.percentile(nz, 5))))
    hi = math.ceil(math.log10(float(nz.max())))
    ax.set_yscale("symlog", linthresh=10.0**lo, linscale=1.0)
    step = max(1, math.ceil((hi - lo) / 5))
    powers = [10.0**k for k in range(hi, lo, -step) if k - lo >= min(step, 2)]
    ticks = [0.0]
    if (values > 0).any():
        ticks += powers
    if (values < 0).any():
        ticks += [-p for p in powers]
    ax.set_yticks(sorted(ticks))


def scatter_plot(run: RunRecord, tasks: list[str],
                 panels: Sequence[tuple[str, str]] | None = None) -> bytes | None:
    """Score vs accuracy, one panel per program with scores, tasks in colours; None without scores.

    ``panels``: ``(title, program name)`` pairs to draw (default: every program with scores,
    titled by its name), so identical programs can share one panel."""
    if panels is None:
        panels = [(n, n) for n in run.program_names()]
    panels = [(title, n) for title, n in panels if n in run.scores]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = outputs.figure(4.3 * ncols, 3.7 * nrows, dpi=DPI)
    for k, (title, name) in enumerate(panels):
        _scatter_panel(fig.add_subplot(nrows, ncols, k + 1), title, run.scores[name], tasks)
    fig.tight_layout()
    return outputs.png(fig)


def _scatter_panel(ax: Any, name: str, frame: pd.DataFrame, tasks: list[str]) -> None:
    """One program's panel: its points per task and, in the title, tau/rho per task."""
    corr = score_correlations(frame, tasks)
    finite = frame["score"].to_numpy(np.float64)
    finite = finite[np.isfinite(finite)]
    mode = score_axis(finite)
    lines = [name]
    for t, color in zip(tasks, (f"C{i % 10}" for i in range(len(tasks)))):
        part = frame[frame["task"] == t]
        s = part["score"].to_numpy(np.float64)
        a = part["accuracy"].to_numpy(np.float64)
        ok = np.isfinite(s) & np.isfinite(a)
        if ok.any():
            y = stats.rankdata(s[ok]) / ok.sum() if mode == "rank" else s[ok]
            ax.scatter(a[ok], y, s=8, alpha=0.6, color=color, label=t, edgecolors="none")
        c = corr.loc[t]
        label = f"{t}: " if len(tasks) > 1 else ""
        lines.append(f"{label}τ={format_number(c['tau'], 3)} ρ={format_number(c['rho'], 3)} "
                     f"({int(c['n_valid'])}/{int(c['n'])} valid)")
    ax.set_title("\n".join(lines), fontsize=8)
    ax.set_xlabel("accuracy", fontsize=8)
    ax.tick_params(labelsize=7)
    if finite.size == 0:
        ax.text(0.5, 0.5, "no valid scores", transform=ax.transAxes, ha="center", va="center", color="grey")
        ax.set_ylabel("score", fontsize=8)
        return
    _set_score_axis(ax, mode, finite)
    ax.grid(alpha=0.3)
    if len(tasks) > 1:
        ax.legend(fontsize=7, markerscale=1.5)


def _set_score_axis(ax: Any, mode: str, finite: np.ndarray) -> None:
    """Scale and label the y axis as :func:`score_axis` chose."""
    if mode == "rank":
        ax.set_ylabel("score (rank / n within task)", fontsize=8)
    elif mode == "log":
        ax.set_yscale("log")
        ax.set_ylabel("score (log)", fontsize=8)
    elif mode == "symlog":
        _symlog_axis(ax, finite)
        ax.set_ylabel("score (symlog)", fontsize=8)
    else:
        ax.set_ylabel("score", fontsize=8)


def tree_layout(root: Node) -> tuple[dict[int, tuple[float, int]], float]:
    """Positions ``{id(node): (x, depth)}`` in character units and the total width.

    A subtree takes the width of its children side by side (with a gap) or of its own
    label, whichever is wider; leaves are placed left to right and a parent is centred
    above its first and last child, so nothing overlaps.
    """
    gap = 2.0

    def label_w(n: Node) -> float:
        return len(n.name if isinstance(n, Terminal) else n.op) + 2.0  # type: ignore[attr-defined]

    width: dict[int, float] = {}
    for n in reversed(list(root.iter_nodes())):  # children before parents
        kids = n.args if isinstance(n, Apply) else ()
        span = sum(width[id(c)] for c in kids) + gap * max(len(kids) - 1, 0)
        width[id(n)] = max(label_w(n), span)
    pos: dict[int, tuple[float, int]] = {}

    def place(n: Node, left: float, depth: int) -> float:
        if not isinstance(n, Apply):
            x = left + width[id(n)] / 2
        else:
            span = sum(width[id(c)] for c in n.args) + gap * (len(n.args) - 1)
            cursor = left + (width[id(n)] - span) / 2
            xs = []
            for c in n.args:
                xs.append(place(c, cursor, depth + 1))
                cursor += width[id(c)] + gap
            x = (xs[0] + xs[-1]) / 2
        pos[id(n)] = (x, depth)
        return x

    place(root, 0.0, 0)
    return pos, width[id(root)]


def tree_plot(tree: Node) -> bytes | None:
    """The expression tree drawn as boxes and edges; None when too wide to be legible."""
    pos, total = tree_layout(tree)
    depth = tree.depth()
    w_in = total * _CHAR_INCHES + 0.4
    if w_in > _MAX_TREE_INCHES:
        return None
    fig = outputs.figure(max(w_in, 2.0), (depth + 1) * 0.62 + 0.3, dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(-0.5, total + 0.5)
    ax.set_ylim(-depth - 0.5, 0.5)
    for n in tree.iter_nodes():
        x, d = pos[id(n)]
        if isinstance(n, Apply):
            for c in n.args:
                cx, cd = pos[id(c)]
                ax.plot([x, cx], [-d, -cd], color="0.55", lw=1, zorder=1)
    for n in tree.iter_nodes():
        x, d = pos[id(n)]
        leaf = isinstance(n, Terminal)
        ax.text(x, -d, n.name if leaf else n.op, ha="center", va="center", fontsize=9,  # type: ignore[attr-defined]
                family="monospace", zorder=2,
                bbox=dict(boxstyle="round,pad=0.3", fc="#e3f2e1" if leaf else "#dde8f7",
                          ec="#5d8a55" if leaf else "#4a6fa5", lw=1))
    return outputs.png(fig)
