"""Evolved and hand-crafted proxies side by side on the same networks (``eznas-store compare``).

One table (and one plot) with Kendall τ and Spearman ρ against the store's accuracy (the
column chosen at ingest, or any other the store keeps: ``accuracy_column``; every row names
it as ``label``) of every hand-crafted proxy ingest computed, EZNAS-A, and any given
programs; optionally the
network-by-network agreement of our proxy values with NAS-Bench-Suite-Zero's published
``zc_*.json`` values on the cells both hold.

Example
-------
>>> rows = compare_store("S.zarr", programs=["RUN/programs/best_final.json"])  # doctest: +SKIP
>>> print(format_table(rows))                                                  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eznas_store.errors import StoreError, UnknownNameError
from eznas_store.fitness import kendall_tau, spearman_rho
from eznas_store.fitness import Engine, load_task, require_statistics_programs
from eznas_store.fitness import ScoreResult, json_ready, summarise
from eznas_store.outputs import ensure_dir, figure, png, write_atomic
from eznas_store.programs import load_program
from eznas_store.programs import NAMED_PROGRAMS
from eznas_store.sources import read_zc
from eznas_store.store import open_store


@dataclass(frozen=True)
class Row:
    name: str
    kind: str  # "proxy" | "program"
    tau: float
    rho: float
    n_valid: int
    n: int
    note: str = ""
    label: str = ""  # the accuracy column tau/rho are against


def _row(name: str, kind: str, scores: np.ndarray, acc: np.ndarray, note: str = "", label: str = "") -> Row:
    ok = np.isfinite(scores) & np.isfinite(acc)
    if ok.sum() >= 2:
        tau, rho = kendall_tau(scores[ok], acc[ok]), spearman_rho(scores[ok], acc[ok])
    else:
        tau = rho = float("nan")
    return Row(name, kind, tau, rho, int(ok.sum()), int(len(scores)), note, label)


def proxy_scores(url: str, name: str, *, accuracy_column: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, accuracy, network indices) of a stored proxy over the usable networks
    (those with a finite ``accuracy_column``; None: the column chosen at ingest)."""
    store = open_store(url)
    table = store.proxy_table()
    if table is None:
        raise StoreError(f"store {url} was ingested without hand-crafted proxies (rerun ingest without "
                         "--no-proxies into a new store)")
    names = [str(p) for p in table["proxy"].values]
    if name not in names:
        raise UnknownNameError(f"proxy {name!r} is not in store {url} (it has: {', '.join(names)})")
    task = load_task(url, accuracy_column=accuracy_column)
    values = np.asarray(table.values[:, names.index(name)], dtype=np.float64)[task.networks]
    return values, task.accuracy, task.networks


def stored_proxy_results(url: str, names: Sequence[str], *, accuracy_column: str | None = None
                         ) -> list[ScoreResult]:
    """``score --proxy`` on a store: each stored proxy's values against the label, as results."""
    task = load_task(url, accuracy_column=accuracy_column)
    out = []
    for name in names:
        values, acc, nets = proxy_scores(url, name, accuracy_column=accuracy_column)
        out.append(summarise(name, task.name, values, acc, task.archs, nets, label=task.label))
    return out


def compare_store(url: str, *, programs: Sequence[str] = (), engine: Engine | None = None,
                  accuracy_column: str | None = None) -> list[Row]:
    """Rows for every stored proxy, EZNAS-A and ``programs`` (files or names), same networks,
    against ``accuracy_column`` (None: the column chosen at ingest). Programs are loaded and
    checked (statistics programs; a sequential one with an output) before the store is read."""
    progs = [NAMED_PROGRAMS["eznas-a"]] + [load_program(p, require_output=True) for p in programs]
    require_statistics_programs(progs)
    store = open_store(url)
    task = load_task(url, accuracy_column=accuracy_column)
    rows: list[Row] = []
    table = store.proxy_table()
    if table is not None:
        reasons = store.proxy_reasons()[task.networks]
        for j, name in enumerate(str(p) for p in table["proxy"].values):
            values = np.asarray(table.values[:, j], dtype=np.float64)[task.networks]
            failed = [r for r in reasons[:, j] if r]
            note = f"failed on {len(failed)}: {failed[0]}" if failed else ""
            rows.append(_row(name, "proxy", values, task.accuracy, note, task.label))
    names = ["eznas-a"] + [os.path.splitext(os.path.basename(p))[0] if os.path.exists(p) else p for p in programs]
    own = engine is None
    engine = engine or Engine(workers=0)
    try:
        res = engine.score(progs, [task])
    finally:
        if own:
            engine.close()
    for k, (name, p) in enumerate(zip(names, progs)):
        rows.append(_row(name, "program", res.scores[0][k], task.accuracy, res.reasons[0][k] or "", task.label))
    return rows


def format_table(rows: Sequence[Row], title: str = "") -> str:
    out = [title] if title else []
    out.append(f"{'proxy / program':<18} {'kind':<8} {'Kendall tau':>11} {'Spearman rho':>12} {'valid':>9}")
    for r in sorted(rows, key=lambda r: -(r.tau if np.isfinite(r.tau) else -9)):
        out.append(f"{r.name:<18} {r.kind:<8} {r.tau:>11.4f} {r.rho:>12.4f} {r.n_valid:>4}/{r.n:<4}"
                   + (f"  {r.note[:80]}" if r.note else ""))
    return "\n".join(out)


def rows_json(rows: Sequence[Row]) -> list[dict]:
    """The rows for ``compare --json``: numbers unrounded, NaN as null."""
    return json_ready([{"name": r.name, "kind": r.kind, "label": r.label, "kendall_tau": r.tau,
                        "spearman_rho": r.rho, "n_valid": r.n_valid, "n": r.n, "note": r.note} for r in rows])


def write_outputs(rows: Sequence[Row], out_dir: str, title: str) -> tuple[str, str]:
    """``compare.csv`` and a horizontal bar plot ``compare.png`` of τ and ρ."""
    ensure_dir(out_dir)
    csv_path = os.path.join(out_dir, "compare.csv")
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["name", "kind", "label", "kendall_tau", "spearman_rho", "n_valid", "n", "note"])
    for r in rows:
        w.writerow([r.name, r.kind, r.label, r.tau, r.rho, r.n_valid, r.n, r.note])
    write_atomic(csv_path, buf.getvalue())

    ordered = sorted(rows, key=lambda r: r.tau if np.isfinite(r.tau) else -9)
    fig = figure(7, 0.35 * len(ordered) + 1.5, dpi=100)
    ax = fig.add_subplot(111)
    y = np.arange(len(ordered))
    taus = [r.tau if np.isfinite(r.tau) else 0 for r in ordered]
    rhos = [r.rho if np.isfinite(r.rho) else 0 for r in ordered]
    colors = ["tab:orange" if r.kind == "program" else "tab:blue" for r in ordered]
    ax.barh(y + 0.2, taus, height=0.4, color=colors, label="Kendall τ")
    ax.barh(y - 0.2, rhos, height=0.4, color=colors, alpha=0.45, label="Spearman ρ")
    ax.set_yticks(y, [r.name for r in ordered])
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("rank correlation with accuracy (dark: τ, light: ρ; orange: programs)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    png_path = os.path.join(out_dir, "compare.png")
    write_atomic(png_path, png(fig, dpi=110))
    return csv_path, png_path


def check_compare_args(url: str, *, out: str | None = None, suitezero: str | None = None,
                       task: str = "cifar10") -> dict | None:
    """``compare``'s checks of its arguments, made before any program is scored: ``out`` made
    (a file in its place is a one-line error); with ``suitezero``, the store holding proxies,
    the file read and its ``task`` found. Returns the Suite-Zero tables (None without
    ``suitezero``) for :func:`suitezero_agreement`."""
    if out:
        ensure_dir(out)
    if suitezero is None:
        return None
    if open_store(url).proxy_table() is None:
        raise StoreError(f"store {url} has no hand-crafted proxies to compare with {suitezero}")
    tables = read_zc(suitezero)
    if task not in tables:
        raise UnknownNameError(f"{suitezero} has no task {task!r} (it has: {', '.join(tables)})")
    return tables


def suitezero_agreement(url: str, zc_path: str, *, task: str = "cifar10",
                        tables: dict | None = None) -> list[tuple[str, int, float]]:
    """Per proxy: (name, common cells, Spearman ρ between our values and Suite-Zero's);
    ``tables``: ``zc_path`` already read (:func:`check_compare_args`)."""
    store = open_store(url)
    table = store.proxy_table()
    if table is None:
        raise StoreError(f"store {url} has no hand-crafted proxies to compare")
    tables = read_zc(zc_path) if tables is None else tables
    if task not in tables:
        raise UnknownNameError(f"{zc_path} has no task {task!r} (it has: {', '.join(tables)})")
    zc = tables[task]
    index = {a: i for i, a in enumerate(zc.archs)}
    done = store.complete()
    common = [(n, index[a]) for n, a in enumerate(store.plan.archs) if a in index and done[n]]
    out = []
    names = [str(p) for p in table["proxy"].values]
    for j, name in enumerate(names):
        if name not in zc.proxies or len(common) < 3:
            out.append((name, len(common), float("nan")))
            continue
        ours = np.array([table.values[n, j] for n, _ in common], dtype=np.float64)
        theirs = np.array([zc.proxies[name][i] for _, i in common], dtype=np.float64)
        ok = np.isfinite(ours) & np.isfinite(theirs)
        rho = spearman_rho(ours[ok], theirs[ok]) if ok.sum() >= 3 else float("nan")
        out.append((name, int(ok.sum()), rho))
    return out
