"""The results of a run, as document blocks: its programs (each distinct one once), the
coarse ones flagged, and for a proxies run the cross-problem matrix.

A statistics run's programs are scored per network (``scores/<program>.csv``); their tau
and rho per task are recomputed here, beside the reference ``eznas-a``. A proxies run
(``evolve --over proxies``) has no scores files and no reference: its result is
``cross_problem/matrix.csv`` (tau/rho of every program on held-out networks and other
problems, beside each problem's best single hand-crafted proxy) and ``matrix.png``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from eznas_store.errors import EznasError
from eznas_store.programs import Program
from eznas_store.report.document import (
    DASH,
    MISSING,
    Block,
    Code,
    Heading,
    Image,
    Inline,
    Notes,
    format_number,
    paragraph,
    table,
)
from eznas_store.report.runs import MATRIX_DIR, REFERENCE, RunRecord, one_line, score_correlations

__all__ = [
    "COARSE_FRACTION", "COARSE_VALUES", "ProgramGroup", "coarse_notes", "coarseness", "group_of",
    "matrix_section", "program_groups", "programs_section",
]

#: a program is coarse when its finite scores take at most this many distinct values ...
COARSE_VALUES = 5
#: ... or fewer distinct values than this fraction of the networks (and fewer than the networks)
COARSE_FRACTION = 0.1


@dataclass(frozen=True)
class ProgramGroup:
    """Programs with the same formula (and reduction), shown once: ``names`` in role order."""

    names: tuple[str, ...]
    program: Any  # Program, SequentialProgram or None (not loadable / not saved)
    same_as_reference: bool = False  # the same formula as ``eznas-a`` (which keeps its own row)

    @property
    def label(self) -> str:
        return " = ".join(self.names)

    @property
    def name(self) -> str:
        return self.names[0]


def _key(name: str, prog: Any) -> tuple:
    if prog is None:
        return ("name", name)
    try:
        formula = prog.formula()
    except (EznasError, ValueError):
        return ("name", name)
    return (type(prog).__name__, formula, getattr(prog, "to_scalar", None), getattr(prog, "terminal_set", None))


def program_groups(run: RunRecord) -> list[ProgramGroup]:
    """The run's programs (:meth:`RunRecord.program_names` order), identical ones merged.

    The reference ``eznas-a`` keeps its own row; an evolved group with its formula says so."""
    keys: dict[tuple, list[str]] = {}
    progs: dict[tuple, Any] = {}
    ref_key = None
    for name in run.program_names():
        prog = run.program(name)
        key = _key(name, prog)
        if name == REFERENCE:
            ref_key, key = key, ("reference", name)
        keys.setdefault(key, []).append(name)
        progs.setdefault(key, prog)
    return [ProgramGroup(tuple(names), progs[k], k == ref_key and k[0] != "name") for k, names in keys.items()]


def group_of(groups: Sequence[ProgramGroup], name: str) -> ProgramGroup | None:
    return next((g for g in groups if name in g.names), None)


def _first_cells(run: RunRecord, g: ProgramGroup) -> list[Inline]:
    """program, role, generation, fitness."""
    meta = g.program.meta if g.program is not None else {}
    roles = [str((run.program(n).meta if run.program(n) is not None else {}).get(
        "role", "reference" if n == REFERENCE else DASH)) for n in g.names]
    role = " = ".join(dict.fromkeys(roles)) + (f" (same formula as {REFERENCE})" if g.same_as_reference else "")
    return [Code(g.label), role,
            str(meta["generation"]) if "generation" in meta else DASH, format_number(meta.get("fitness", MISSING))]


def _formula_cell(run: RunRecord, g: ProgramGroup) -> Inline:
    if g.program is not None:
        return Code(g.program.formula())
    return "could not be loaded" if g.name in run.programs else "no program file"


def programs_section(run: RunRecord, tasks: list[str], groups: Sequence[ProgramGroup]) -> list[Block]:
    """The programs table (statistics: tau/rho/valid per task; proxies: train and test tau)."""
    if run.over == "proxies":
        return _proxy_programs(run, groups)
    blocks: list[Block] = [
        Heading(3, "Programs"),
        paragraph("Kendall tau-b and Spearman rho of each program's network scores with the accuracies "
                  "(on the networks evolution used), recomputed from ", Code("scores/<program>.csv"),
                  " with scipy over the networks whose score is finite (", Code("valid"), " counts them). "
                  "Fitness is the value evolution recorded for the program (NaN: invalid on some network), "
                  "over the tasks as the configuration combines them. Identical programs share a row."),
    ]
    header, numeric = ["program", "role", "generation", "fitness"], [False, False, True, True]
    for t in tasks:
        suffix = f" ({t})" if len(tasks) > 1 else ""
        header += [f"tau{suffix}", f"rho{suffix}", f"valid{suffix}"]
        numeric += [True, True, True]
    rows = []
    for g in groups:
        row = _first_cells(run, g)
        frame = run.scores.get(g.name)
        corr = score_correlations(frame, tasks) if frame is not None else None
        for t in tasks:
            if corr is None:
                row += [DASH, DASH, "no scores"]
            else:
                c = corr.loc[t]
                row += [format_number(c["tau"]), format_number(c["rho"]), f"{int(c['n_valid'])}/{int(c['n'])}"]
        rows.append([*row, _formula_cell(run, g)])
    blocks.append(table([*header, "formula"], rows, [*numeric, False]))
    return blocks


def _train_tasks(run: RunRecord, groups: Sequence[ProgramGroup]) -> list[str]:
    tasks = [str(t.get("name")) for t in run.info.get("tasks") or []
             if isinstance(t, dict) and t.get("role") == "train"]
    for g in groups:
        for t in (g.program.meta.get("tasks") or []) if g.program is not None else []:
            if str(t) not in tasks:
                tasks.append(str(t))
    return tasks


def _matrix_problems(run: RunRecord) -> list[tuple[str, bool, str]]:
    """(problem, train, networks) of the matrix, in its order."""
    if run.matrix is None:
        return []
    first = run.matrix.drop_duplicates("problem")
    return [(str(r.problem), bool(r.train), str(r.n_networks)) for r in first.itertuples()]


def _matrix_cell(run: RunRecord, problem: str, names: Sequence[str], col: str = "kendall_tau") -> float:
    m = run.matrix
    if m is None:
        return math.nan
    hit = m[(m["problem"] == problem) & (m["kind"] == "program") & m["name"].isin(list(names))]
    return float(hit[col].iloc[0]) if len(hit) else math.nan


def _proxy_programs(run: RunRecord, groups: Sequence[ProgramGroup]) -> list[Block]:
    train = _train_tasks(run, groups)
    problems = _matrix_problems(run)
    blocks: list[Block] = [
        Heading(3, "Programs"),
        paragraph("Kendall tau of each program with the accuracy: ", Code("train tau"), " on the networks "
                  "it was evolved on (as evolution recorded it), ", Code("test tau"), " on the held-out "
                  "networks and the other problems (from ", Code(f"{MATRIX_DIR}/matrix.csv"), "). Identical "
                  "programs share a row."),
    ]
    header = ["program", "role", "generation", "fitness (train)", *(f"train tau ({t})" for t in train),
              *(f"test tau ({p})" for p, _, _ in problems), "formula"]
    rows = []
    for g in groups:
        meta = g.program.meta if g.program is not None else {}
        taus = dict(zip((str(t) for t in meta.get("tasks") or []), meta.get("taus") or []))
        rows.append([*_first_cells(run, g), *(format_number(taus.get(t, MISSING)) for t in train),
                     *(format_number(_matrix_cell(run, p, g.names)) for p, _, _ in problems),
                     _formula_cell(run, g)])
    blocks.append(table(header, rows, [False, False, *([True] * (len(header) - 3)), False]))
    return blocks


def _pair(tau: float, rho: float) -> str:
    return DASH if math.isnan(tau) else f"{tau:.3f}/{rho:.3f}"


def matrix_section(run: RunRecord, groups: Sequence[ProgramGroup]) -> list[Block]:
    """A proxies run's result: the cross-problem matrix as a table and its heat map."""
    blocks: list[Block] = [Heading(3, "Cross-problem matrix")]
    if run.matrix is None:
        return blocks + [paragraph("No cross-problem matrix (", Code(f"{MATRIX_DIR}/matrix.csv"), ") to show.")]
    m = run.matrix
    in_matrix = set(m.loc[m["kind"] == "program", "name"])
    cols = [(g.label, g.names) for g in groups if in_matrix & set(g.names)]
    covered = {n for _, names in cols for n in names}
    cols += [(n, (n,)) for n in dict.fromkeys(m.loc[m["kind"] == "program", "name"]) if n not in covered]
    rows = []
    for problem, train, n in _matrix_problems(run):
        best = m[(m["problem"] == problem) & (m["kind"] == "best_proxy")]
        best_name = str(best["name"].iloc[0]) if len(best) and best["name"].iloc[0] else DASH
        best_pair = _pair(*(float(best[c].iloc[0]) for c in ("kendall_tau", "spearman_rho"))) if len(best) else DASH
        rows.append([Code(("* " if train else "") + problem), n, best_name, best_pair,
                     *(_pair(_matrix_cell(run, problem, names), _matrix_cell(run, problem, names, "spearman_rho"))
                       for _, names in cols)])
    blocks += [
        paragraph("Kendall tau / Spearman rho against the accuracy of each program on each problem, beside the "
                  "problem's best single hand-crafted proxy; ", DASH, " = invalid; * = held-out networks of a "
                  "problem the programs were evolved on."),
        table(["problem", "networks", "best proxy", "tau/rho", *(label for label, _ in cols)], rows,
              [False, True, False, True, *([True] * len(cols))]),
        *_beats(run, cols),
    ]
    png_file = run.path / MATRIX_DIR / "matrix.png"
    if png_file.is_file():
        blocks.append(Image(f"{MATRIX_DIR}/matrix.png", "cross-problem matrix: Kendall tau per problem",
                            png_file.read_bytes()))
    else:
        blocks.append(paragraph(Code(f"{MATRIX_DIR}/matrix.png"), " is missing: no heat map."))
    return blocks


def _beats(run: RunRecord, cols: Sequence[tuple[str, Sequence[str]]]) -> list[Block]:
    """One sentence per program: on how many problems it beats the best single proxy."""
    m = run.matrix
    problems = _matrix_problems(run)
    if m is None or not problems:
        return []
    out = []
    for label, names in cols:
        wins = 0
        for problem, _, _ in problems:
            best = m[(m["problem"] == problem) & (m["kind"] == "best_proxy")]["kendall_tau"]
            b = float(best.iloc[0]) if len(best) else math.nan
            t = _matrix_cell(run, problem, names)
            wins += int(not math.isnan(t) and (math.isnan(b) or t > b))
        out.append(f"{label} beats the best single proxy on {wins} of {len(problems)} problems.")
    return [paragraph(" ".join(out))]


def coarseness(scores: np.ndarray) -> tuple[int, int] | None:
    """(distinct finite values, finite networks) when ``scores`` are coarse, else None.

    Coarse: fewer distinct values than networks, and at most :data:`COARSE_VALUES` of them
    or fewer than :data:`COARSE_FRACTION` of the networks."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s)]
    if s.size == 0:
        return None
    d = int(np.unique(s).size)
    if d < s.size and (d <= COARSE_VALUES or d < COARSE_FRACTION * s.size):
        return d, int(s.size)
    return None


def _sentence(label: str, where: str, found: tuple[int, int]) -> str:
    d, n = found
    value = "value" if d == 1 else "values"
    return (f"{label} takes only {d} distinct {value} over {n} networks ({where}): a coarse proxy, "
            "ties hide ranking.")


def coarse_notes(run: RunRecord, tasks: list[str], groups: Sequence[ProgramGroup]) -> list[Block]:
    """A box naming each program whose scores take only a few distinct values, per task."""
    lines: list[str] = []
    extra: list[Block] = []
    if run.over == "proxies":
        scores, why = _proxy_scores(run, groups)
        if why:
            extra.append(paragraph(f"Coarse programs not checked: {why}"))
        for label, per_problem in scores.items():
            lines += [_sentence(label, p, f) for p, s in per_problem if (f := coarseness(s)) is not None]
    else:
        for g in groups:
            frame = run.scores.get(g.name)
            if frame is None:
                continue
            for t in tasks:
                found = coarseness(frame.loc[frame["task"] == t, "score"].to_numpy(np.float64))
                if found is not None:
                    lines.append(_sentence(g.label, t, found))
    return ([Notes(tuple(lines))] if lines else []) + extra


def _proxy_scores(run: RunRecord, groups: Sequence[ProgramGroup]
                  ) -> tuple[dict[str, list[tuple[str, np.ndarray]]], str | None]:
    """Each program's scores on every problem of the run's sources (all their networks)."""
    from eznas_store.evaluate import evaluate_columns
    from eznas_store.fitness import load_problems
    from eznas_store.programs import PROXY_OPS

    stores = run.info.get("stores") or []
    config = run.info.get("config")
    graph = bool(config.get("graph_features")) if isinstance(config, dict) else False
    progs = []
    for g in groups:
        prog = g.program
        if prog is not None and not isinstance(prog, Program):
            try:
                prog = prog.to_program()
            except EznasError:
                prog = None
        if prog is not None:
            progs.append((g.label, prog))
    if not progs:
        return {}, None
    try:
        problems = [p for src in ([stores] if isinstance(stores, str) else stores) for p in load_problems(str(src), graph_features=graph)]
    except (EznasError, OSError, ValueError) as e:
        return {}, f"the sources could not be read again ({one_line(e)})."
    out: dict[str, list[tuple[str, np.ndarray]]] = {}
    for problem in problems:
        cols = problem.column_tensors()
        for label, prog in progs:
            try:
                s, _ = evaluate_columns(prog, cols, ops=PROXY_OPS)
            except EznasError:
                continue  # reads a proxy this problem lacks: the matrix says so
            out.setdefault(label, []).append((problem.name, np.asarray(s, dtype=np.float64)))
    return out, None
