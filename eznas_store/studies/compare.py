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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from eznas_store.errors import IncompleteStoreWarning, StoreError, UnknownNameError
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
    kind: str  # "proxy" | "joined" (from Suite-Zero) | "program"
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


@dataclass(frozen=True)
class ProxyTask:
    """The networks a store's proxies are ranked on: complete, with a finite ``label`` accuracy;
    ``label_set``: the position of the label set whose head the values are read under (the one
    whose accuracy column is ``label``, else the first)."""

    name: str
    label: str
    networks: np.ndarray
    accuracy: np.ndarray
    archs: tuple[str, ...]
    label_set: int


def proxy_task(store, accuracy_column: str | None = None) -> ProxyTask:
    """``store``'s proxy task against ``accuracy_column`` (None: the column chosen at ingest). It
    reads no statistics, so a proxies-only store has one too."""
    plan, url = store.plan, store.url
    label = accuracy_column or plan.accuracy_column
    if label == "accuracy" and label not in plan.accuracies:  # the array holding the default column
        label = plan.accuracy_column
    if label not in plan.accuracies:
        raise UnknownNameError(f"store {url} has no accuracy column {label!r} (it has: "
                               f"{', '.join(plan.accuracies)}; default {plan.accuracy_column})")
    acc = np.asarray(plan.accuracies[label], dtype=np.float64)
    complete = store.complete()
    if not complete.all():  # never use a partial store without a word (as fitness.load_task)
        warnings.warn(f"store {url}: only {int(complete.sum())} of {len(complete)} networks are complete; "
                      "using those (finish it with ingest, or check it with verify)", IncompleteStoreWarning, stacklevel=3)
    nets = np.flatnonzero(complete & np.isfinite(acc))
    if len(nets) < 2:
        raise StoreError(f"store {url} has {len(nets)} complete networks with an accuracy ({label}); "
                         "a rank correlation needs at least 2 (run ingest to completion first)")
    columns = [h[2] for h in store.label_sets()]
    name = f"{plan.space}-{plan.dataset}:{os.path.basename(str(url).rstrip('/'))}"
    name += f"@{label}" if label != plan.accuracy_column else ""
    return ProxyTask(name=name, label=label, networks=nets, accuracy=acc[nets],
                     archs=tuple(plan.archs[i] for i in nets),
                     label_set=columns.index(label) if label in columns else 0)


def _proxy_columns(store, task: ProxyTask) -> dict[str, tuple[np.ndarray, np.ndarray | None, str]]:
    """Every stored proxy, then every joined Suite-Zero value, on the task's networks:
    name -> (values, reasons or None, kind)."""
    out: dict[str, tuple[np.ndarray, np.ndarray | None, str]] = {}
    values = store.proxy_values()
    if values is not None:
        reasons = np.asarray(store.proxy_reasons(store.label_sets()[task.label_set][0]), dtype=object)
        for j, name in enumerate(str(p) for p in values["proxy"].values):
            out[name] = (np.asarray(values.values[task.networks, j, task.label_set], dtype=np.float64),
                         reasons[task.networks, j], "proxy")
    joined = store.suitezero_values()
    if joined is not None:
        for j, name in enumerate(str(p) for p in joined["suitezero_proxy"].values):
            out.setdefault(name, (np.asarray(joined.values[task.networks, j, task.label_set], dtype=np.float64),
                                  None, "joined"))
    return out


def _no_proxies(url: str) -> StoreError:
    return StoreError(f"store {url} was ingested without hand-crafted proxies (rerun ingest without "
                      "--no-proxies, or with --proxy NAME, into a new store)")


def proxy_scores(url: str, name: str, *, accuracy_column: str | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, accuracy, network indices) of a stored proxy (or one joined from Suite-Zero) over
    the usable networks (those with a finite ``accuracy_column``; None: the column chosen at ingest)."""
    store = open_store(url)
    if not store.plan.proxies and not store.plan.suitezero_proxies:
        raise _no_proxies(url)
    task = proxy_task(store, accuracy_column)
    columns = _proxy_columns(store, task)
    if name not in columns:
        raise UnknownNameError(f"proxy {name!r} is not in store {url} (it has: {', '.join(columns)})")
    return columns[name][0], task.accuracy, task.networks


def stored_proxy_results(url: str, names: Sequence[str], *, accuracy_column: str | None = None
                         ) -> list[ScoreResult]:
    """``score --proxy`` on a store (one with statistics or a proxies-only one): each stored
    proxy's values against the label, as results."""
    task = proxy_task(open_store(url), accuracy_column)
    out = []
    for name in names:
        values, acc, nets = proxy_scores(url, name, accuracy_column=accuracy_column)
        out.append(summarise(name, task.name, values, acc, task.archs, nets, label=task.label))
    return out


def compare_store(url: str, *, programs: Sequence[str] = (), engine: Engine | None = None,
                  accuracy_column: str | None = None) -> list[Row]:
    """Rows for every stored proxy (and value joined from Suite-Zero), EZNAS-A and ``programs``
    (files or names), same networks, against ``accuracy_column`` (None: the column chosen at
    ingest). Programs are loaded and checked (statistics programs; a sequential one with an
    output) before the store is read. A proxies-only store gives its proxies' rows alone
    (EZNAS-A reads statistics; a ``programs`` entry is refused in one line)."""
    progs = [NAMED_PROGRAMS["eznas-a"]] + [load_program(p, require_output=True) for p in programs]
    require_statistics_programs(progs)
    store = open_store(url)
    if programs:
        store.require_statistics("scoring programs")
    task = proxy_task(store, accuracy_column)
    rows: list[Row] = []
    for name, (values, reasons, kind) in _proxy_columns(store, task).items():
        failed = [r for r in reasons if r] if reasons is not None else []
        note = f"failed on {len(failed)}: {failed[0]}" if failed else ""
        rows.append(_row(name, kind, values, task.accuracy, note, task.label))
    if not store.has_statistics:
        return rows
    names = ["eznas-a"] + [os.path.splitext(os.path.basename(p))[0] if os.path.exists(p) else p for p in programs]
    own = engine is None
    engine = engine or Engine(workers=0)
    try:
        res = engine.score(progs, [load_task(url, accuracy_column=accuracy_column)])
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
    if open_store(url).proxy_values() is None:
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
