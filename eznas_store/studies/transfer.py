"""``eznas-store transfer``: evolve on each task, test every evolved program on every task.

The transfer matrix of the EZNAS appendix (Fig. 4). Given several task stores (e.g.
NB201 on CIFAR-10, CIFAR-100 and ImageNet16-120), :func:`run_transfer`

1. evolves a program on each task alone, with the same evolution options, into
   ``OUT/evolve/<task>/`` (an ordinary ``evolve`` run directory: ``report`` reads it).
   A rerun reuses a finished run and resumes an unfinished one from its checkpoint, so
   a killed job loses at most one generation of one task (every task's run is checked
   before any evolves, and the folder is written by one transfer at a time);
2. scores each task's evolved program (``best_ever_1`` by default: the fittest program
   seen on its task; or ``best_final``) and the reference rows on every task, in one
   :class:`~eznas_store.fitness.engine.Engine`;
3. writes the Kendall-τ matrix: rows are *evolved-on* tasks plus the baselines
   ``FLOPs`` and ``params`` (the store's network table columns used as proxies) and
   ``EZNAS-A`` (the published program); columns are *tested-on* tasks.

In each column the best row is marked ``**`` and the second best ``*`` (competition
ranking: rows tied for best all get ``**`` and then none gets ``*``; NaN is never marked). "Best" is the largest τ, or the largest |τ|
when ``abs_tau`` is set (the evolution then treats a negative correlation as useful).
The diagonal of the evolved rows is each run's own fitness on its task (same networks,
same scores), a built-in check of the whole chain.

Outputs in ``OUT/``: ``transfer.csv`` (one line per cell: τ, Spearman ρ, mark, networks),
``transfer.md`` (τ matrix with marks, ρ matrix, the programs), ``transfer.png`` (heat map
of τ, annotated, diverging colour map centred at 0) and ``transfer.json`` (configuration,
package versions, per-task provenance, the matrices).

>>> cfg = TransferConfig(stores=("c10=c10.zarr", "c100=c100.zarr"), out="tr",
...                      generations=5, workers=2)                  # doctest: +SKIP
>>> print(format_transfer(run_transfer(cfg)))                       # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import math
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from eznas_store.config import check_seed
from eznas_store.errors import ConfigError
from eznas_store.fitness import Engine, Task, load_task
from eznas_store.fitness import summarise
from eznas_store.outputs import claim_outputs, ensure_dir, exclusive, figure, json_safe, package_versions, png, write_atomic
from eznas_store.programs import load_program, program_to_json
from eznas_store.programs import NAMED_PROGRAMS
from eznas_store.programs import Program
from eznas_store.evolution import GPSettings, config_json, resume_point
from eznas_store.evolution import CHECKPOINT, EvolveConfig, run_evolve
from eznas_store.store import open_store

__all__ = ["BASELINES", "TransferConfig", "TransferResult", "format_transfer", "mark_columns", "parse_task_spec",
           "run_transfer"]

#: the reference rows, in the order they follow the evolved rows
BASELINES: tuple[str, ...] = ("FLOPs", "params", "EZNAS-A")
#: the choices of ``TransferConfig.program``: which saved program of each evolve run represents its task
REPRESENTATIVES: tuple[str, ...] = ("best_ever", "best_final")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: options that may differ between a finished run and its rerun without invalidating it
#: (``out``: the transfer folder may have been moved or copied)
_FREE = {"workers", "scheduler", "progress", "out"}


def parse_task_spec(text: str) -> tuple[str | None, str]:
    """``"c10=runs/c10.zarr"`` → ``("c10", "runs/c10.zarr")``; a bare URL → ``(None, url)``.

    Only a plain name (letters, digits, ``_.-``) before the first ``=`` counts as a name, so
    URLs such as ``s3://b/x?v=1`` are left whole.
    """
    name, sep, url = text.partition("=")
    if sep and _NAME_RE.fullmatch(name) and url:
        return name, url
    return None, text


def _default_name(url: str) -> str:
    base = os.path.basename(str(url).rstrip("/")) or "task"
    for suffix in (".zarr", ".zip"):
        if base.endswith(suffix) and len(base) > len(suffix):
            base = base[: -len(suffix)]
    base = re.sub(r"[^A-Za-z0-9_.-]", "_", base)
    return base if _NAME_RE.fullmatch(base) else f"task_{base}"[:64]


@dataclass(frozen=True, kw_only=True)
class TransferConfig(GPSettings):
    """One transfer study; written into ``transfer.json``.

    ``stores``: one entry per task, ``URL`` or ``NAME=URL`` (NAME labels the row and the
    column and names ``OUT/evolve/NAME``; default: the store's file name without
    ``.zarr``). The evolution options are those of ``evolve`` and apply to every task;
    ``max_networks`` limits both the evolution and the test to each store's first usable
    networks. ``program`` picks each run's representative: ``best_ever`` (the fittest
    program seen, ``best_ever_1.json``) or ``best_final`` (the fittest of the last
    population).
    """

    stores: tuple[str, ...]
    out: str
    program: str = "best_ever"
    seed: int = 0
    abs_tau: bool = False
    to_scalar: str = "mean"
    workers: int = 0
    scheduler: str | None = None
    max_networks: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mu is None:
            object.__setattr__(self, "mu", max(1, int(self.population) // 2))
        if self.lambda_ is None:
            object.__setattr__(self, "lambda_", int(self.population))
        if isinstance(self.stores, str):
            object.__setattr__(self, "stores", (self.stores,))
        object.__setattr__(self, "stores", tuple(str(s) for s in self.stores))
        if len(self.stores) < 2:
            raise ConfigError(f"transfer needs at least two stores (tasks), got {len(self.stores)}")
        if not self.out:
            raise ConfigError("transfer needs --out (the folder for evolve runs and the matrix)")
        names = [n for n, _ in self.tasks]
        for raw, n in zip(self.stores, names):
            if not _NAME_RE.fullmatch(n):
                raise ConfigError(f"task name {n!r} (from {raw!r}) must be letters, digits, '_', '.' or '-' "
                                  "(at most 64, starting with a letter or digit): write NAME=URL")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"two stores get the task name {dup[0]!r}: name them, e.g. c10={self.stores[0]}")
        clash = sorted(set(names) & set(BASELINES))
        if clash:
            raise ConfigError(f"task name {clash[0]!r} is a baseline row name; choose another NAME=URL")
        if self.program not in REPRESENTATIVES:
            raise ConfigError(f"--program must be one of {', '.join(REPRESENTATIVES)}, got {self.program!r}")
        if self.max_networks is not None and self.max_networks < 2:
            raise ConfigError(f"--max-networks must be at least 2 (Kendall tau needs two), got {self.max_networks}")
        check_seed(self.seed, "--seed")
        self.evolve_config(self.tasks[0][0], self.tasks[0][1])  # the evolution options' own checks

    @property
    def tasks(self) -> list[tuple[str, str]]:
        """``(name, url)`` per task, in the order given."""
        out = []
        for s in self.stores:
            name, url = parse_task_spec(s)
            out.append((name or _default_name(url), url))
        return out

    def evolve_config(self, name: str, url: str) -> EvolveConfig:
        """The ``EvolveConfig`` of one task's run (``OUT/evolve/NAME``)."""
        shared = {f.name for f in dataclasses.fields(EvolveConfig)} - {"stores", "out"}
        return EvolveConfig(stores=(url,), out=str(Path(self.out) / "evolve" / name),
                            **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name in shared})


@dataclass
class TransferResult:
    """The τ/ρ matrices (rows × columns) and how they were made."""

    out: Path
    rows: tuple[str, ...]
    row_kinds: tuple[str, ...]  # "evolved" or "baseline"
    columns: tuple[str, ...]
    tau: np.ndarray
    rho: np.ndarray
    n: np.ndarray  # networks per column
    n_valid: np.ndarray  # networks with a finite score, per cell
    marks: list[list[str]]
    programs: dict[str, Program]  # row name → program (evolved rows and EZNAS-A)
    evolve_status: dict[str, str]  # task → "evolved" | "resumed" | "reused"
    seconds: float
    notes: list[str] = dataclasses.field(default_factory=list)  # e.g. an evolution that found no valid program

    def cell(self, row: str, column: str) -> float:
        return float(self.tau[self.rows.index(row), self.columns.index(column)])


# ----------------------------------------------------------------------------- marks
def mark_columns(tau: np.ndarray, *, use_abs: bool = False) -> list[list[str]]:
    """``**`` on the best and ``*`` on the second-best value of each column.

    Competition ranking (rank = 1 + rows strictly better): rows tied for best all get
    ``**`` and then no row is second; NaN is never marked.
    """
    tau = np.asarray(tau, dtype=np.float64)
    marks = [["" for _ in range(tau.shape[1])] for _ in range(tau.shape[0])]
    for c in range(tau.shape[1]):
        col = np.abs(tau[:, c]) if use_abs else tau[:, c]
        finite = col[np.isfinite(col)]
        for r, v in enumerate(col):
            if np.isfinite(v):
                rank = 1 + int((finite > v).sum())
                marks[r][c] = {1: "**", 2: "*"}.get(rank, "")
    return marks


# ----------------------------------------------------------------------------- evolution
def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _plain(cfg) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def _role_file(role: str) -> str:
    return "best_ever_1.json" if role == "best_ever" else "best_final.json"


def _reusable(cfg: TransferConfig, name: str, url: str) -> bool:
    """Whether ``OUT/evolve/NAME`` holds a finished run of these options (and its program)."""
    ecfg = cfg.evolve_config(name, url)
    meta = _read_json(Path(ecfg.out) / "run.json") or {}
    return (bool(meta.get("finished")) and isinstance(meta.get("config"), dict)
            and (Path(ecfg.out) / "programs" / _role_file(cfg.program)).exists()
            and all(meta["config"].get(k) == v for k, v in _plain(ecfg).items() if k not in _FREE))


def _check_task(cfg: TransferConfig, name: str, url: str) -> None:
    """Refuse, before any task evolves, a task whose run can be neither reused nor resumed with these options."""
    ecfg = cfg.evolve_config(name, url)
    d = Path(ecfg.out)
    if not _reusable(cfg, name, url) and (d / CHECKPOINT).exists():
        try:
            resume_point(d / CHECKPOINT, config_json(ecfg), cfg.generations)
        except ConfigError as e:
            raise ConfigError(f"task {name}: {e} (or delete {d} to evolve it afresh)") from None


def _evolve_task(cfg: TransferConfig, name: str, url: str) -> tuple[Program, str]:
    """Evolve on one task, or reuse/resume the run already in ``OUT/evolve/NAME``."""
    ecfg = cfg.evolve_config(name, url)
    d = Path(ecfg.out)
    prog_path = d / "programs" / _role_file(cfg.program)
    if _reusable(cfg, name, url):
        return load_program(prog_path), "reused"
    resume = (d / CHECKPOINT).exists()
    try:
        run_evolve(ecfg, resume=resume)
    except ConfigError as e:
        if not resume:
            raise
        raise ConfigError(f"task {name}: {e} (or delete {d} to evolve it afresh)") from None
    if not prog_path.exists():
        raise ConfigError(f"task {name}: the evolve run in {d} wrote no {prog_path.name}")
    return load_program(prog_path), "resumed" if resume else "evolved"


# ----------------------------------------------------------------------------- the study
def run_transfer(cfg: TransferConfig) -> TransferResult:
    """Evolve on every task (reusing finished runs), then test every program on every task.

    Under the folder's one-writer lock; every store is opened and every task's earlier run
    checked (reusable, or resumable with these options) before any task evolves."""
    out = Path(cfg.out)
    ensure_dir(out.parent, "folder of --out")
    with exclusive(out, "transfer study"):
        return _run_transfer(cfg, out)


def _run_transfer(cfg: TransferConfig, out: Path) -> TransferResult:
    t0 = time.perf_counter()
    started = _dt.datetime.now(_dt.UTC).isoformat()
    names = [n for n, _ in cfg.tasks]
    tasks = [load_task(url, name=name, max_networks=cfg.max_networks) for name, url in cfg.tasks]
    for name, url in cfg.tasks:
        _check_task(cfg, name, url)
    claim_outputs(out, "transfer", [*(f"transfer.{x}" for x in ("csv", "md", "json", "png"))],
                  made_before_markers="transfer.json")

    evolved: dict[str, Program] = {}
    status: dict[str, str] = {}
    for name, url in tqdm(cfg.tasks, desc="transfer: evolve", unit="task", disable=not cfg.progress):
        evolved[name], status[name] = _evolve_task(cfg, name, url)

    reference = dataclasses.replace(NAMED_PROGRAMS["eznas-a"], name="eznas-a")
    programs = [dataclasses.replace(evolved[n], name=f"evolved-{n}") for n in names] + [reference]
    rows = tuple(names) + BASELINES
    tau, rho, n_valid = _correlation_matrices(cfg, tasks, programs, rows)
    result = TransferResult(
        out=out, rows=rows, row_kinds=tuple(["evolved"] * len(names) + ["baseline"] * len(BASELINES)),
        columns=tuple(names), tau=tau, rho=rho,
        n=np.array([t.n for t in tasks], dtype=np.int64), n_valid=n_valid,
        marks=mark_columns(tau, use_abs=cfg.abs_tau),
        programs={**{n: evolved[n] for n in names}, "EZNAS-A": reference},
        evolve_status=status, seconds=time.perf_counter() - t0,
    )
    result.notes.extend(_invalid_evolution_notes(result))
    _write_csv(out / "transfer.csv", result)
    write_atomic(out / "transfer.md", _markdown(result, cfg))
    write_atomic(out / "transfer.png", transfer_plot(result))
    meta = _metadata(cfg, result, tasks, started)
    write_atomic(out / "transfer.json", json.dumps(meta, indent=1, allow_nan=False) + "\n")
    return result


def _correlation_matrices(cfg: TransferConfig, tasks: list[Task], programs: list[Program],
                          rows: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """τ, ρ and valid networks of every row on every task: the programs scored in one
    :class:`Engine` (the evolved rows, then EZNAS-A), FLOPs and params from the network table."""
    R, C = len(rows), len(tasks)
    tau = np.full((R, C), np.nan)
    rho = np.full((R, C), np.nan)
    n_valid = np.zeros((R, C), dtype=np.int64)
    with Engine(workers=cfg.workers, scheduler=cfg.scheduler, progress=cfg.progress) as engine:
        res = engine.score(programs, tasks, to_scalar=cfg.to_scalar, desc="transfer: scores")
    row_of_program = list(range(len(programs) - 1)) + [rows.index("EZNAS-A")]
    for c, task in enumerate(tasks):
        for k, p in enumerate(programs):
            s = summarise(p.name, task.name, res.scores[c][k], task.accuracy, task.archs, task.networks,
                          res.reasons[c][k])
            r = row_of_program[k]
            tau[r, c], rho[r, c], n_valid[r, c] = s.tau, s.rho, s.n_valid
        for base, column in (("FLOPs", "flops"), ("params", "params")):
            values = np.asarray(open_store(task.url).column(column), dtype=np.float64)[task.networks]
            s = summarise(base, task.name, values, task.accuracy, task.archs, task.networks)
            r = rows.index(base)
            tau[r, c], rho[r, c], n_valid[r, c] = s.tau, s.rho, s.n_valid
    return tau, rho, n_valid


def _invalid_evolution_notes(r: TransferResult) -> list[str]:
    """A note per task whose evolved program is not valid on all of that task's networks."""
    notes = []
    for i, name in enumerate(r.columns):
        if r.n_valid[i, i] < r.n[i]:
            notes.append(f"the program evolved on {name} scores only {r.n_valid[i, i]} of the {r.n[i]} "
                         f"networks of {name} (fitness NaN): the evolution found no valid program; "
                         "raise --population or --generations")
    return notes


def _method(cfg: TransferConfig) -> dict[str, str]:
    """How the rows, columns, statistic and marks were made, in words, for ``transfer.json``."""
    return {
        "rows": "evolved-on task (its " + _role_file(cfg.program) + "), then FLOPs and params of the "
                "store's network table as proxies, then EZNAS-A",
        "columns": "tested-on task: its usable networks (complete, finite accuracy"
                   + (f", first {cfg.max_networks}" if cfg.max_networks else "") + ")",
        "statistic": "Kendall tau-b and Spearman rho over the networks with a finite score",
        "marks": "** best, * second best per column (competition ranking: ties for best leave no second), by "
                 + ("|tau|" if cfg.abs_tau else "tau"),
    }


def _metadata(cfg: TransferConfig, r: TransferResult, tasks: list[Task], started: str) -> dict[str, Any]:
    """``transfer.json``: configuration, per-task provenance, method, programs, the matrices."""
    return {
        "command": "transfer",
        "config": _plain(cfg),
        "tasks": [{"name": t.name, "url": t.url, "n_networks": t.n, **_store_identity(t.url),
                   "evolve_dir": str(Path(cfg.out) / "evolve" / t.name), "evolve": r.evolve_status[t.name]}
                  for t in tasks],
        "method": _method(cfg),
        "programs": {row: {"formula": p.formula(), "program": program_to_json(p)} for row, p in r.programs.items()},
        "rows": list(r.rows), "row_kinds": list(r.row_kinds), "columns": list(r.columns),
        "tau": json_safe(r.tau), "rho": json_safe(r.rho), "n": r.n.tolist(), "n_valid": r.n_valid.tolist(),
        "marks": r.marks, "notes": r.notes,
        "versions": package_versions(), "host": socket.gethostname(),
        "started": started, "finished": _dt.datetime.now(_dt.UTC).isoformat(),
        "seconds": round(r.seconds, 3),
    }


def _store_identity(url: str) -> dict[str, Any]:
    """What identifies a task's store in ``transfer.json``: space, dataset, collection settings."""
    plan = open_store(url).plan
    return {"space": plan.space, "dataset": plan.dataset, "accuracy_column": plan.accuracy_column,
            "batch_size": plan.collect.batch_size, "seed": plan.collect.seed, "structure": plan.collect.structure}


# ----------------------------------------------------------------------------- writing
def _num(x: float, digits: int = 3) -> str:
    return "nan" if not math.isfinite(float(x)) else f"{x:.{digits}f}"


def _write_csv(path: Path, r: TransferResult) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row", "kind", "tested_on", "tau", "rho", "mark", "n", "n_valid", "formula"])
    for i, row in enumerate(r.rows):
        formula = r.programs[row].formula() if row in r.programs else row.lower()
        for c, col in enumerate(r.columns):
            w.writerow([row, r.row_kinds[i], col,
                        "" if not math.isfinite(r.tau[i, c]) else repr(float(r.tau[i, c])),
                        "" if not math.isfinite(r.rho[i, c]) else repr(float(r.rho[i, c])),
                        r.marks[i][c], int(r.n[c]), int(r.n_valid[i, c]), formula])
    write_atomic(path, buf.getvalue())


def _matrix_lines(r: TransferResult, values: np.ndarray, marks: bool, corner: str) -> list[str]:
    head = f"| {corner} | " + " | ".join(r.columns) + " |"
    lines = [head, "|---|" + "---:|" * len(r.columns)]
    for i, row in enumerate(r.rows):
        label = f"evolved on {row}" if r.row_kinds[i] == "evolved" else row
        cells = [_num(values[i, c]) + (r.marks[i][c] if marks else "") for c in range(len(r.columns))]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def _markdown(r: TransferResult, cfg: TransferConfig) -> str:
    lines = [
        "# Transfer matrix",
        "",
        (f"Kendall τ of each row's scores with the accuracies of each column's task; `**` best, `*` second best "
         f"per column (by {'|τ|' if cfg.abs_tau else 'τ'}). Rows: the program evolved on a task "
         f"(`{_role_file(cfg.program)}`; {cfg.generations} generations, population {cfg.population}, "
         f"μ {cfg.mu}, λ {cfg.lambda_}, seed {cfg.seed}), FLOPs and params as proxies, EZNAS-A."),
        "",
        *_matrix_lines(r, r.tau, True, "Kendall τ (row ↓ tested on →)"),
        "",
        "Spearman ρ:",
        "",
        *_matrix_lines(r, r.rho, False, "Spearman ρ"),
        "",
        "Networks per task: " + ", ".join(f"{c} {int(n)}" for c, n in zip(r.columns, r.n)) + ".",
        "",
        *(f"Note: {n}." for n in r.notes),
        *([""] if r.notes else []),
        "Programs:",
        "",
    ]
    for row, p in r.programs.items():
        where = f" ({r.evolve_status[row]}, `{Path(cfg.out) / 'evolve' / row}`)" if row in r.evolve_status else ""
        lines.append(f"- {row}{where}: `{p.formula()}`")
    return "\n".join(lines) + "\n"


def format_transfer(result: TransferResult) -> str:
    """The τ matrix with marks as a plain-text table (ρ in brackets), for a terminal."""
    cells = [[f"{_num(result.tau[i, c])}{result.marks[i][c]:<2} ({_num(result.rho[i, c])})"
              for c in range(len(result.columns))] for i in range(len(result.rows))]
    labels = [f"evolved on {r}" if k == "evolved" else r for r, k in zip(result.rows, result.row_kinds)]
    w0 = max(len("tau (rho)"), *(len(s) for s in labels))
    widths = [max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(result.columns)]
    out = ["tau (rho)".ljust(w0) + "  " + "  ".join(c.rjust(w) for c, w in zip(result.columns, widths))]
    for label, row in zip(labels, cells):
        out.append(label.ljust(w0) + "  " + "  ".join(s.rjust(w) for s, w in zip(row, widths)))
    out.append("** best, * second best per column; networks per task: "
               + ", ".join(f"{c} {int(n)}" for c, n in zip(result.columns, result.n)))
    out.extend(f"note: {n}" for n in result.notes)
    return "\n".join(out)


def transfer_plot(r: TransferResult) -> bytes:
    """Heat map of τ (rows × tested-on tasks): annotated cells, diverging colours centred at 0."""
    R, C = r.tau.shape
    fig = figure(1.6 + 1.25 * C, 1.1 + 0.5 * R)
    ax = fig.add_subplot(1, 1, 1)
    finite = np.abs(r.tau[np.isfinite(r.tau)])
    lim = max(float(finite.max()) if finite.size else 1.0, 0.05)
    masked = np.ma.masked_invalid(r.tau)
    import matplotlib  # lazy: matplotlib is heavy and only this plot needs its colour maps

    cmap = matplotlib.colormaps["RdBu"].with_extremes(bad="#d9d9d9")
    im = ax.imshow(masked, cmap=cmap, vmin=-lim, vmax=lim, aspect="auto")
    for i in range(R):
        for c in range(C):
            v = r.tau[i, c]
            text = "n/a" if not np.isfinite(v) else f"{v:.2f}{r.marks[i][c]}"
            dark = np.isfinite(v) and abs(v) > 0.6 * lim
            ax.text(c, i, text, ha="center", va="center", fontsize=9,
                    color="white" if dark else "black", fontweight="bold" if r.marks[i][c] == "**" else "normal")
    n_ev = sum(k == "evolved" for k in r.row_kinds)
    if 0 < n_ev < R:
        ax.axhline(n_ev - 0.5, color="black", linewidth=1.5)
    ax.set_xticks(range(C), [f"{c}\n(n={int(n)})" for c, n in zip(r.columns, r.n)], fontsize=9)
    ax.set_yticks(range(R), [f"evolved on {x}" if k == "evolved" else x for x, k in zip(r.rows, r.row_kinds)],
                  fontsize=9)
    ax.set_xlabel("tested on")
    ax.set_title("Kendall τ transfer (** best, * second best per column)", fontsize=10)
    fig.colorbar(im, ax=ax, label="Kendall τ", fraction=0.05, pad=0.03)
    return png(fig)
