"""Report of an evolution run: ``RUN/report.md`` and a self-contained ``RUN/report.html``.

``evolve`` writes a run directory (``run.json``, ``generations.jsonl``, ``programs/*.json``,
``scores/<program>.csv``); :func:`write_report` reads it and writes both reports from one
list of blocks, so they say the same thing:

1. the run: title, when, stores, tasks, the configuration and the versions;
2. a summary table: for every saved program and the reference ``eznas-a``, Kendall tau-b
   and Spearman rho on each task recomputed from its scores file (over the networks
   with a finite score, whose number is printed beside), the fitness evolution recorded,
   and the formula;
3. fitness per generation (best and median, valid fraction on a twin axis);
4. score vs accuracy, one panel per program;
5. the best program as a formula, a drawn tree and an indented text tree;
6. the generation log.

The plots are PNGs under ``RUN/plots/`` (the Markdown links them) and embedded in the
HTML as base64 data URIs, so ``report.html`` needs nothing else. A run that is still going
(no ``best_final.json`` yet, ``finished`` null), a missing or malformed scores file,
all-NaN scores or a half-written last line in ``generations.jsonl`` are stated in the
report, never raised; only a missing run directory or ``run.json`` raises
:class:`~eznas_store.errors.DataNotFoundError`. Files the report does not know (e.g.
``transfer.csv``) are ignored.

Plots are drawn with matplotlib's object API on the Agg canvas (no ``pyplot``), so
writing a report neither needs a display nor changes the caller's backend.

Example
-------
>>> md, html = write_report("runs/nb201-c10")  # doctest: +SKIP
>>> md.name, html.name  # doctest: +SKIP
('report.md', 'report.html')
"""

from __future__ import annotations

import base64
import datetime as _dt
import html as _html
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from eznas_store import outputs
from eznas_store.errors import DataNotFoundError, ProgramError
from eznas_store.programs.tree import (
    NAMED_PROGRAMS,
    Apply,
    Node,
    Program,
    Terminal,
    load_program,
    parse_formula,
    terminals_for,
)

__all__ = [
    "PROGRAM_ROLES", "REFERENCE", "RunRecord", "read_run", "score_correlations", "text_tree", "write_report",
]

#: the program files ``evolve`` saves, in the order the report lists them
PROGRAM_ROLES: tuple[str, ...] = ("best_final", "best_ever_1", "best_ever_2")
#: the published program every run is compared with (its scores: ``scores/eznas-a.csv``)
REFERENCE = "eznas-a"
#: columns a scores file must have (``arch`` is optional)
SCORE_COLUMNS: tuple[str, ...] = ("task", "network", "accuracy", "score")
#: columns of the generation log, in order; unknown keys follow these
GENERATION_COLUMNS: tuple[str, ...] = (
    "gen", "best", "median", "valid_fraction", "evaluated", "seconds", "peak_rss_mb", "best_formula",
)
#: plot file names under ``RUN/plots/``
PLOT_FILES: tuple[str, ...] = ("fitness.png", "scatter.png", "tree.png")

_DPI = 110
#: the score axis of a scatter is symlog/log above this many decades, ranks above the second
_LOG_DECADES, _RANK_DECADES = 3.0, 30.0
#: a tree wider than this (inches, at the drawing's font size) is only given as text
_MAX_TREE_INCHES = 60.0
_CHAR_INCHES = 0.085  # width of one monospace character at 9 pt, plus slack
_DASH = "—"


# ----------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class RunRecord:
    """What a run directory holds, read leniently.

    ``info`` is ``run.json``; ``generations`` the parsed lines of ``generations.jsonl``;
    ``programs`` maps a program name (the file stem, e.g. ``best_final``) to its
    :class:`Program`, or to ``None`` when the file could not be loaded; ``scores`` maps a
    name to its scores table (columns ``task, network, arch, accuracy, score``, floats for
    the last two); ``notes`` are one-line sentences on what is missing or malformed.
    """

    path: Path
    info: dict[str, Any]
    generations: list[dict[str, Any]] = field(default_factory=list)
    programs: dict[str, Program | None] = field(default_factory=dict)
    scores: dict[str, pd.DataFrame] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.info.get("finished") is not None

    def task_names(self) -> list[str]:
        """Tasks of ``run.json`` in order, then any other task found in a scores file."""
        names: list[str] = []
        for t in self.info.get("tasks") or []:
            name = t.get("name") if isinstance(t, Mapping) else t
            if name is not None and str(name) not in names:
                names.append(str(name))
        for frame in self.scores.values():
            for name in pd.unique(frame["task"]):
                if name not in names:
                    names.append(name)
        return names

    def program_names(self) -> list[str]:
        """Saved programs (roles first), then ``eznas-a``, then names that only have scores."""
        saved = sorted(
            (n for n in self.programs if n != REFERENCE),
            key=lambda n: (PROGRAM_ROLES.index(n) if n in PROGRAM_ROLES else len(PROGRAM_ROLES), n),
        )
        rest = sorted(n for n in self.scores if n not in self.programs and n != REFERENCE)
        return [*saved, REFERENCE, *rest]

    def program(self, name: str) -> Program | None:
        """The program called ``name``; ``eznas-a`` comes from the registry if not saved."""
        if name in self.programs:
            return self.programs[name]
        return NAMED_PROGRAMS.get(name)


def read_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """Read a run directory; raise :class:`DataNotFoundError` without ``run.json``.

    Everything but ``run.json`` is optional: what is missing or malformed becomes a note.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise DataNotFoundError(f"run directory {path} does not exist: pass the directory evolve wrote")
    run_json = path / "run.json"
    if not run_json.is_file():
        raise DataNotFoundError(f"{path} has no run.json, so it is not a run directory written by evolve")
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataNotFoundError(f"{run_json} cannot be read as JSON ({_one_line(e)})") from None
    if not isinstance(info, dict):
        raise DataNotFoundError(f"{run_json} holds a {type(info).__name__}, not a JSON object")
    run = RunRecord(path=path, info=info)
    if info.get("finished") is None:
        run.notes.append("The run has not finished (run.json has no finish time): this report shows it so far.")
    _read_generations(run)
    _read_programs(run)
    _read_scores(run)
    return run


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _read_generations(run: RunRecord) -> None:
    file = run.path / "generations.jsonl"
    if not file.is_file():
        run.notes.append("generations.jsonl is missing: no generation has been logged.")
        return
    for i, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            run.notes.append(f"generations.jsonl line {i} is not valid JSON and was skipped "
                             "(a run still writing may leave a partial last line).")
            continue
        if not isinstance(row, dict):
            run.notes.append(f"generations.jsonl line {i} is not a JSON object and was skipped.")
            continue
        run.generations.append(row)
    if not run.generations:
        run.notes.append("generations.jsonl holds no generation yet.")


def _read_programs(run: RunRecord) -> None:
    folder = run.path / "programs"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    for file in files:
        try:
            run.programs[file.stem] = load_program(file)
        except ProgramError as e:
            run.programs[file.stem] = None
            run.notes.append(f"programs/{file.name} could not be loaded: {_one_line(e)}")
    for role in PROGRAM_ROLES:
        if role not in run.programs:
            why = " (not written yet: the run has not finished)" if not run.finished else ""
            run.notes.append(f"programs/{role}.json is missing{why}.")


def _read_scores(run: RunRecord) -> None:
    folder = run.path / "scores"
    files = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    for file in files:
        try:
            frame = pd.read_csv(file, dtype=str, keep_default_na=False)
        except (OSError, ValueError) as e:  # EmptyDataError and ParserError are ValueErrors
            run.notes.append(f"scores/{file.name} could not be read: {_one_line(e)}")
            continue
        missing = [c for c in SCORE_COLUMNS if c not in frame.columns]
        if missing:
            run.notes.append(f"scores/{file.name} lacks the column(s) {', '.join(missing)} and was ignored.")
            continue
        if "arch" not in frame.columns:
            frame["arch"] = ""
        for col in ("accuracy", "score"):
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(np.float64)
        run.scores[file.stem] = frame[["task", "network", "arch", "accuracy", "score"]]
    for name in run.program_names():
        if name not in run.scores and run.program(name) is not None:
            run.notes.append(f"scores/{name}.csv is missing: no correlations or scatter for {name}.")


# ----------------------------------------------------------------------------- numbers
def score_correlations(frame: pd.DataFrame, tasks: Sequence[str] | None = None) -> pd.DataFrame:
    """Per task: networks ``n``, ``n_valid`` (finite score and accuracy), ``tau``, ``rho``.

    ``tau`` is ``scipy.stats.kendalltau`` (tau-b), ``rho`` ``scipy.stats.spearmanr``, both
    over the valid networks only; NaN with fewer than two valid networks or constant
    values. (Evolution's fitness is stricter: one invalid network makes it NaN.)
    Indexed by task, in the order of ``tasks`` (default: as they appear in ``frame``).
    """
    names = list(tasks) if tasks is not None else list(pd.unique(frame["task"]))
    rows = []
    for task in names:
        part = frame[frame["task"] == task]
        s = part["score"].to_numpy(np.float64)
        a = part["accuracy"].to_numpy(np.float64)
        ok = np.isfinite(s) & np.isfinite(a)
        s, a = s[ok], a[ok]
        tau = rho = math.nan
        if s.size >= 2 and np.ptp(s) > 0 and np.ptp(a) > 0:
            tau = float(stats.kendalltau(s, a).statistic)
            rho = float(stats.spearmanr(s, a).statistic)
        rows.append({"task": task, "n": int(len(part)), "n_valid": int(ok.sum()), "tau": tau, "rho": rho})
    out = pd.DataFrame(rows, columns=["task", "n", "n_valid", "tau", "rho"])
    return out.set_index("task")


#: marks an absent value (shown as a dash), as opposed to a null one (shown as NaN)
_MISSING: Any = object()


def _float(value: Any) -> float:
    """A JSON number as float; None, bools and anything else are NaN."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return math.nan


def _num(value: Any, digits: int = 4) -> str:
    """``—`` when absent, ``NaN`` for null/NaN, else fixed-point."""
    if value is _MISSING:
        return _DASH
    x = _float(value)
    return "NaN" if math.isnan(x) else f"{x:.{digits}f}"


def _duration(seconds: Any) -> str:
    x = _float(seconds)
    if math.isnan(x):
        return _DASH
    m, s = divmod(int(round(x)), 60)
    h, m = divmod(m, 60)
    human = f"{h} h {m} min" if h else f"{m} min {s} s" if m else f"{x:.1f} s"
    return f"{x:.1f} s ({human})" if (h or m) else human


# ----------------------------------------------------------------------------- blocks
@dataclass(frozen=True)
class _Code:
    text: str


_Inline = str | _Code


@dataclass(frozen=True)
class _Heading:
    level: int
    text: str


@dataclass(frozen=True)
class _Para:
    parts: tuple[_Inline, ...]


@dataclass(frozen=True)
class _Notes:
    items: tuple[str, ...]


@dataclass(frozen=True)
class _List:
    items: tuple[tuple[_Inline, ...], ...]


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    rows: tuple[tuple[_Inline, ...], ...]
    numeric: tuple[bool, ...]


@dataclass(frozen=True)
class _Image:
    file: str  # relative to the run directory, e.g. "plots/fitness.png"
    alt: str
    png: bytes


@dataclass(frozen=True)
class _Pre:
    text: str


_Block = _Heading | _Para | _Notes | _List | _Table | _Image | _Pre


def _para(*parts: _Inline) -> _Para:
    return _Para(tuple(parts))


def _table(header: Sequence[str], rows: Iterable[Sequence[_Inline]], numeric: Sequence[bool] | None = None) -> _Table:
    header = tuple(header)
    return _Table(header, tuple(tuple(r) for r in rows), tuple(numeric) if numeric else (False,) * len(header))


# ----------------------------------------------------------------------------- sections
def _header(run: RunRecord, title: str) -> list[_Block]:
    info = run.info
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    finished = info.get("finished")
    blocks: list[_Block] = [
        _Heading(1, title),
        _para("Run directory ", _Code(str(run.path.resolve())), f"; report written {now}."),
        _para("Started ", _Code(str(info.get("started", _DASH))), ", ",
              *(("finished ", _Code(str(finished))) if finished is not None else ("not finished",)),
              "" if math.isnan(_float(info.get("seconds"))) else f"; {_duration(info['seconds'])} of run time",
              "."),
    ]
    if run.notes:
        blocks += [_Heading(2, "Missing or incomplete"), _Notes(tuple(run.notes))]
    blocks.append(_Heading(2, "Run"))
    stores = info.get("stores") or []
    blocks.append(_Heading(3, "Stores"))
    if isinstance(stores, (str, Mapping)):
        stores = [stores]
    blocks.append(_List(tuple((_Code(str(s)),) for s in stores)) if stores else _para("No store recorded."))
    blocks.append(_Heading(3, "Tasks"))
    tasks = [t for t in info.get("tasks") or [] if isinstance(t, Mapping)]
    if tasks:
        blocks.append(_table(("task", "networks"),
                             ((_Code(str(t.get("name", _DASH))), str(t.get("n_networks", _DASH))) for t in tasks),
                             (False, True)))
    else:
        blocks.append(_para("No task recorded."))
    blocks.append(_Heading(3, "Configuration"))
    config = info.get("config")
    if isinstance(config, Mapping) and config:
        blocks.append(_table(("option", "value"), ((k, _Code(v)) for k, v in _flatten(config))))
    else:
        blocks.append(_para("No configuration recorded."))
    blocks.append(_Heading(3, "Versions"))
    versions = info.get("versions")
    if isinstance(versions, Mapping) and versions:
        blocks.append(_table(("package", "version"), ((k, _Code(v)) for k, v in _flatten(versions))))
    else:
        blocks.append(_para("No versions recorded."))
    return blocks


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """``(dotted key, text)`` pairs; nested objects are flattened, lists shown as JSON."""
    out: list[tuple[str, str]] = []
    for k, v in mapping.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out += _flatten(v, key + ".")
        elif isinstance(v, str):
            out.append((key, v))
        else:
            out.append((key, json.dumps(v, ensure_ascii=False, default=str)))
    return out


def _summary(run: RunRecord, tasks: list[str]) -> list[_Block]:
    blocks: list[_Block] = [
        _Heading(2, "Programs"),
        _para("Kendall tau-b and Spearman rho of each program's network scores with the accuracies, "
              "recomputed from ", _Code("scores/<program>.csv"), " with scipy over the networks whose "
              "score is finite (", _Code("valid"), " counts them). Fitness is the value evolution "
              "recorded for the program (NaN: invalid on some network), over the tasks as the "
              "configuration combines them."),
    ]
    header = ["program", "role", "generation", "fitness"]
    numeric = [False, False, True, True]
    for t in tasks:
        suffix = f" ({t})" if len(tasks) > 1 else ""
        header += [f"tau{suffix}", f"rho{suffix}", f"valid{suffix}"]
        numeric += [True, True, True]
    header.append("formula")
    numeric.append(False)
    rows = []
    for name in run.program_names():
        prog = run.program(name)
        meta = prog.meta if prog is not None else {}
        row: list[_Inline] = [
            _Code(name),
            str(meta.get("role", "reference" if name == REFERENCE else _DASH)),
            str(meta["generation"]) if "generation" in meta else _DASH,
            _num(meta.get("fitness", _MISSING)),
        ]
        frame = run.scores.get(name)
        corr = score_correlations(frame, tasks) if frame is not None else None
        for t in tasks:
            if corr is None:
                row += [_DASH, _DASH, "no scores"]
            else:
                c = corr.loc[t]
                row += [_num(c["tau"]), _num(c["rho"]), f"{int(c['n_valid'])}/{int(c['n'])}"]
        if prog is not None:
            row.append(_Code(prog.formula()))
        else:
            row.append("could not be loaded" if name in run.programs else "no program file")
        rows.append(row)
    blocks.append(_table(header, rows, numeric))
    return blocks


def _generation_log(run: RunRecord) -> list[_Block]:
    blocks: list[_Block] = [_Heading(2, "Generation log")]
    if not run.generations:
        blocks.append(_para("No generation logged yet."))
        return blocks
    extra = sorted({k for g in run.generations for k in g} - set(GENERATION_COLUMNS))
    cols = [*GENERATION_COLUMNS[:-1], *extra, GENERATION_COLUMNS[-1]]  # the formula last
    digits = {"best": 4, "median": 4, "valid_fraction": 3, "seconds": 1, "peak_rss_mb": 0}
    rows = []
    for g in run.generations:
        row: list[_Inline] = []
        for c in cols:
            v = g.get(c, _MISSING)
            if c in digits:
                row.append(_num(v, digits[c]))
            elif c == "best_formula":
                row.append(_Code(str(v)) if isinstance(v, str) else _DASH)
            elif v is _MISSING:
                row.append(_DASH)
            else:
                row.append(v if isinstance(v, str) else json.dumps(v, default=str))
        rows.append(row)
    numeric = [c not in ("best_formula",) for c in cols]
    blocks.append(_table(cols, rows, numeric))
    return blocks


def _best_program(run: RunRecord) -> tuple[str, Program] | None:
    """The saved program with the highest recorded fitness; else the first saved in role
    order; else the last logged generation's ``best_formula``."""
    saved = [(n, p) for n in run.program_names() if n != REFERENCE and (p := run.programs.get(n)) is not None]
    finite = [(n, p) for n, p in saved if not math.isnan(_float(p.meta.get("fitness")))]
    if finite:
        return max(finite, key=lambda np_: _float(np_[1].meta.get("fitness")))
    if saved:
        return saved[0]
    for g in reversed(run.generations):
        text = g.get("best_formula")
        if not isinstance(text, str):
            continue
        for terminal_set in ("statistics", "proxies"):
            try:
                tree = parse_formula(text, terminals=terminals_for(terminal_set))
            except ProgramError:
                continue
            return f"generation {g.get('gen', '?')} best", Program(tree, terminal_set=terminal_set)
        return None
    return None


def text_tree(node: Node) -> str:
    """An indented text drawing of a tree, one node per line."""
    lines: list[str] = []
    stack: list[tuple[Node, str, str]] = [(node, "", "")]
    while stack:
        n, lead, child_lead = stack.pop()
        lines.append(lead + (n.name if isinstance(n, Terminal) else n.op))  # type: ignore[attr-defined]
        if isinstance(n, Apply):
            k = len(n.args)
            for i in reversed(range(k)):
                last = i == k - 1
                stack.append((n.args[i], child_lead + ("└── " if last else "├── "),
                              child_lead + ("    " if last else "│   ")))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots
def _fitness_plot(run: RunRecord) -> bytes | None:
    gens = [g for g in run.generations if isinstance(g.get("gen"), (int, float))]
    if not gens:
        return None
    x = np.array([g["gen"] for g in gens], dtype=np.float64)
    best = np.array([_float(g.get("best")) for g in gens])
    median = np.array([_float(g.get("median")) for g in gens])
    valid = np.array([_float(g.get("valid_fraction")) for g in gens])
    fig = outputs.figure(7.0, 3.8, dpi=_DPI)
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


def _score_axis(values: np.ndarray) -> str:
    """"linear", "log", "symlog" or "rank" for a program's finite scores."""
    nz = np.abs(values[values != 0])
    if nz.size < 2:
        return "linear"
    decades = math.log10(float(nz.max())) - math.log10(float(nz.min()))
    if decades > _RANK_DECADES:
        return "rank"
    if decades > _LOG_DECADES:
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


def _scatter_plot(run: RunRecord, tasks: list[str]) -> bytes | None:
    names = [n for n in run.program_names() if n in run.scores]
    if not names:
        return None
    ncols = min(3, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig = outputs.figure(4.3 * ncols, 3.7 * nrows, dpi=_DPI)
    colors = [f"C{i % 10}" for i in range(len(tasks))]
    for k, name in enumerate(names):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        frame = run.scores[name]
        corr = score_correlations(frame, tasks)
        finite = frame["score"].to_numpy(np.float64)
        finite = finite[np.isfinite(finite)]
        mode = _score_axis(finite)
        lines = [name]
        for t, color in zip(tasks, colors):
            part = frame[frame["task"] == t]
            s = part["score"].to_numpy(np.float64)
            a = part["accuracy"].to_numpy(np.float64)
            ok = np.isfinite(s) & np.isfinite(a)
            if ok.any():
                y = stats.rankdata(s[ok]) / ok.sum() if mode == "rank" else s[ok]
                ax.scatter(a[ok], y, s=8, alpha=0.6, color=color, label=t, edgecolors="none")
            c = corr.loc[t]
            label = f"{t}: " if len(tasks) > 1 else ""
            lines.append(f"{label}τ={_num(c['tau'], 3)} ρ={_num(c['rho'], 3)} "
                         f"({int(c['n_valid'])}/{int(c['n'])} valid)")
        ax.set_title("\n".join(lines), fontsize=8)
        ax.set_xlabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        if finite.size == 0:
            ax.text(0.5, 0.5, "no valid scores", transform=ax.transAxes, ha="center", va="center", color="grey")
            ax.set_ylabel("score", fontsize=8)
            continue
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
        ax.grid(alpha=0.3)
        if len(tasks) > 1:
            ax.legend(fontsize=7, markerscale=1.5)
    fig.tight_layout()
    return outputs.png(fig)


def _tree_layout(root: Node) -> tuple[dict[int, tuple[float, int]], float]:
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


def _tree_plot(tree: Node) -> bytes | None:
    pos, total = _tree_layout(tree)
    depth = tree.depth()
    w_in = total * _CHAR_INCHES + 0.4
    if w_in > _MAX_TREE_INCHES:
        return None
    fig = outputs.figure(max(w_in, 2.0), (depth + 1) * 0.62 + 0.3, dpi=_DPI)
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


# ----------------------------------------------------------------------------- rendering
_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]<>|#"})


def _md_inline(part: _Inline, *, in_table: bool = False) -> str:
    if isinstance(part, _Code):
        text = " ".join(part.text.split("\n"))
        fence = "``" if "`" in text else "`"
        pad = " " if fence == "``" else ""
        out = f"{fence}{pad}{text}{pad}{fence}"
        return out.replace("|", "\\|") if in_table else out
    return " ".join(part.split("\n")).translate(_MD_SPECIAL)


def _to_markdown(blocks: Sequence[_Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, _Heading):
            out.append(f"{'#' * b.level} {_md_inline(b.text)}")
        elif isinstance(b, _Para):
            out.append("".join(_md_inline(p) for p in b.parts))
        elif isinstance(b, _Notes):
            out.append("\n".join(f"> - {_md_inline(i)}" for i in b.items))
        elif isinstance(b, _List):
            out.append("\n".join("- " + "".join(_md_inline(p) for p in item) for item in b.items))
        elif isinstance(b, _Table):
            lines = ["| " + " | ".join(_md_inline(h, in_table=True) for h in b.header) + " |",
                     "|" + "|".join("---:" if n else "---" for n in b.numeric) + "|"]
            lines += ["| " + " | ".join(_md_inline(c, in_table=True) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, _Image):
            out.append(f"![{_md_inline(b.alt)}]({b.file})")
        elif isinstance(b, _Pre):
            out.append("```text\n" + b.text + "\n```")
    return "\n\n".join(out) + "\n"


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0;background:#fafafa}
main{max-width:1200px;margin:0 auto;padding:1.5em 2em;background:#fff}
h1{font-size:1.6em;margin-top:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
code{background:#f3f3f3;padding:0 .25em;border-radius:3px}
pre{background:#f6f8fa;padding:.8em 1em;overflow-x:auto;border-radius:4px}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d8d8d8;padding:.25em .6em;vertical-align:top}
th{background:#f0f3f7;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr:nth-child(even) td{background:#fbfbfb}
.notes{background:#fff8e1;border-left:4px solid #f0b400;padding:.4em 1em .4em 2em;margin:.6em 0}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
.scroll{overflow-x:auto}
"""


_NUM_CLASS = ' class="n"'


def _html_inline(part: _Inline) -> str:
    if isinstance(part, _Code):
        return f"<code>{_html.escape(part.text)}</code>"
    return _html.escape(part)


def _to_html(blocks: Sequence[_Block], title: str) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{_html.escape(title)}</title>", f"<style>{_CSS}</style>", "</head>", "<body>", "<main>"]
    for b in blocks:
        if isinstance(b, _Heading):
            out.append(f"<h{b.level}>{_html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, _Para):
            out.append("<p>" + "".join(_html_inline(p) for p in b.parts) + "</p>")
        elif isinstance(b, _Notes):
            out.append('<ul class="notes">' + "".join(f"<li>{_html.escape(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, _List):
            out.append("<ul>" + "".join("<li>" + "".join(_html_inline(p) for p in item) + "</li>"
                                        for item in b.items) + "</ul>")
        elif isinstance(b, _Table):
            head = "".join(f"<th>{_html.escape(h)}</th>" for h in b.header)
            body = "".join(
                "<tr>" + "".join(f"<td{_NUM_CLASS if n else ''}>{_html_inline(c)}</td>"
                                 for c, n in zip(row, b.numeric)) + "</tr>"
                for row in b.rows
            )
            out.append(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>')
        elif isinstance(b, _Image):
            data = base64.b64encode(b.png).decode("ascii")
            out.append(f'<img alt="{_html.escape(b.alt)}" src="data:image/png;base64,{data}">')
        elif isinstance(b, _Pre):
            out.append(f"<pre>{_html.escape(b.text)}</pre>")
    out += ["</main>", "</body>", "</html>"]
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- entry point
def write_report(run_dir: str | os.PathLike[str], *, title: str | None = None) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` (plus ``plots/*.png``) into ``run_dir``.

    Parameters
    ----------
    run_dir
        A run directory written by ``evolve``; it may still be running.
    title
        The report's title; default ``"EZNAS run <directory name>"``.

    Returns
    -------
    (markdown path, HTML path)

    Raises
    ------
    DataNotFoundError
        ``run_dir`` does not exist, or has no readable ``run.json``.
    """
    run = read_run(run_dir)
    title = title or f"EZNAS run {run.path.resolve().name}"
    tasks = run.task_names()
    plots_dir = run.path / "plots"
    plots_dir.mkdir(exist_ok=True)
    pngs: dict[str, bytes] = {}
    blocks: list[_Block] = [*_header(run, title), *_summary(run, tasks)]

    def image(file: str, alt: str, png: bytes | None, missing: str) -> None:
        if png is None:
            blocks.append(_para(missing))
            return
        pngs[file] = png
        blocks.append(_Image(f"plots/{file}", alt, png))

    blocks.append(_Heading(2, "Fitness per generation"))
    image("fitness.png", "fitness per generation", _fitness_plot(run), "No generation logged yet: nothing to plot.")
    blocks.append(_Heading(2, "Scores vs accuracy"))
    if run.scores:
        blocks.append(_para("One panel per program. The score axis is linear, log or symlog when the "
                            f"scores span more than {_LOG_DECADES:g} decades, and the scores' rank within "
                            f"the task when they span more than {_RANK_DECADES:g}."))
    image("scatter.png", "score vs accuracy per program", _scatter_plot(run, tasks),
          "No scores file: nothing to plot.")

    blocks.append(_Heading(2, "Best program"))
    best = _best_program(run)
    if best is None:
        blocks.append(_para("No program saved and no best formula logged yet."))
    else:
        name, prog = best
        fit = prog.meta.get("fitness", _MISSING)
        if not isinstance(prog, Program):  # a sequential program: show its instructions, then its tree
            blocks.append(_para(_Code(name), f" as evolved: {len(prog.instructions)} instructions, "
                                f"{len(prog.live())} live (dead ones marked):"))
            blocks.append(_Pre(prog.listing()))
            try:
                prog = prog.to_program()
            except ProgramError as e:
                blocks.append(_para(f"It computes no valid tree: {_one_line(e)}"))
                prog = None
    if best is not None and prog is not None:
        blocks.append(_para(_Code(name), f" (fitness {_num(fit)}, {prog.tree.size()} nodes, "
                            f"depth {prog.tree.depth()}, to_scalar {prog.to_scalar}):"))
        blocks.append(_Pre(prog.formula()))
        image("tree.png", f"expression tree of {name}", _tree_plot(prog.tree),
              f"The tree is too wide to draw ({prog.tree.size()} nodes); see the text tree below.")
        blocks.append(_Pre(text_tree(prog.tree)))

    blocks += _generation_log(run)

    for file in PLOT_FILES:  # drop plots a previous report drew that this one did not
        if file not in pngs:
            (plots_dir / file).unlink(missing_ok=True)
    for file, png in pngs.items():
        outputs.write_atomic(plots_dir / file, png)
    md_path, html_path = run.path / "report.md", run.path / "report.html"
    outputs.write_atomic(md_path, _to_markdown(blocks))
    outputs.write_atomic(html_path, _to_html(blocks, title))
    return md_path, html_path


# ----------------------------------------------------------------------------- several runs
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
    tasks: list[str] = []
    for run in runs:
        tasks += [t for t in run.task_names() if t not in tasks]
    header = ["run", "variant", "generations", "evaluated", "wall time", "best fitness", "final best fitness"]
    header += [f"tau {t}" for t in tasks] + [f"rho {t}" for t in tasks] + ["dead code", "formula"]
    rows = []
    for run in runs:
        gens = [g for g in run.generations if isinstance(g.get("gen"), (int, float))]
        best_ever = max((_float(g.get("best")) for g in gens if math.isfinite(_float(g.get("best")))),
                        default=math.nan)
        final = _float(gens[-1].get("best")) if gens else math.nan
        corr = (score_correlations(run.scores["best_final"], tasks) if "best_final" in run.scores
                else pd.DataFrame(index=tasks, columns=["tau", "rho"], dtype=float))
        dead = gens[-1].get("dead_code_fraction", _MISSING) if gens else _MISSING
        prog = run.programs.get("best_final")
        formula = prog.formula() if prog is not None else (gens[-1].get("best_formula") if gens else None)
        rows.append([run.path.name, variant_label(run), len(gens) - 1 if gens else 0,
                     int(sum(_float(g.get("evaluated")) for g in gens if math.isfinite(_float(g.get("evaluated"))))),
                     _duration(run.info.get("seconds")), best_ever, final,
                     *[corr["tau"].get(t, math.nan) for t in tasks], *[corr["rho"].get(t, math.nan) for t in tasks],
                     dead, formula or "-"])
    return header, rows


def _comparison_plot(runs: Sequence[RunRecord], labels: Sequence[str]) -> bytes | None:
    fig = outputs.figure(7.0, 3.8, dpi=_DPI)
    ax = fig.add_subplot()
    drawn = False
    for k, (run, label) in enumerate(zip(runs, labels)):
        gens = [g for g in run.generations if isinstance(g.get("gen"), (int, float))]
        if not gens:
            continue
        x = np.array([g["gen"] for g in gens], dtype=np.float64)
        color = f"C{k % 10}"
        ax.plot(x, [_float(g.get("best")) for g in gens], color=color, marker="o", ms=3, label=f"{label} best")
        ax.plot(x, [_float(g.get("median")) for g in gens], color=color, ls="--", alpha=0.7)
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
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    labels = [f"{r.path.name}: {variant_label(r)}" for r in runs]
    header, rows = _comparison_rows(runs)
    title = title or "EZNAS runs compared"
    blocks: list[_Block] = [_Heading(1, title),
                            _para(f"{len(runs)} runs; tau/rho are those of each run's final best program "
                                  "(scores/best_final.csv) on every task; 'best fitness' is the best over all "
                                  "generations, 'final best fitness' the best of the last population.")]
    numeric = [False, False, True, True, False, True, True] + [True] * (len(header) - 9) + [True, False]
    blocks.append(_table(header, [[_num(v) if isinstance(v, float) else ("-" if v is _MISSING else str(v))
                                   for v in row] for row in rows], numeric))
    png = _comparison_plot(runs, labels)
    if png is not None:
        blocks += [_Heading(2, "Fitness per generation"), _Image("plots/comparison_fitness.png", "fitness per run", png)]
        outputs.write_atomic(out_dir / "plots" / "comparison_fitness.png", png)
    for run, label in zip(runs, labels):
        for note in run.notes:
            blocks.append(_para(f"{label}: {note}"))
    csv = pd.DataFrame([[None if v is _MISSING else v for v in row] for row in rows], columns=header)
    md, html, csv_path = out_dir / "comparison.md", out_dir / "comparison.html", out_dir / "comparison.csv"
    outputs.write_atomic(csv_path, csv.to_csv(index=False))
    outputs.write_atomic(md, _to_markdown(blocks))
    outputs.write_atomic(html, _to_html(blocks, title))
    return md, html, csv_path
