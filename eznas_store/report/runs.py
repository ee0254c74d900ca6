"""Reading a run directory that ``evolve`` wrote, leniently, and its scores' correlations.

``read_run`` turns ``run.json``, ``generations.jsonl``, ``programs/*.json`` and
``scores/<program>.csv`` into a :class:`RunRecord`; whatever is missing or malformed
becomes a one-line note instead of an exception, so a report can describe a run that
is still going. Only a missing directory or ``run.json`` raises
:class:`~eznas_store.errors.DataNotFoundError`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from eznas_store.errors import DataNotFoundError, ProgramError
from eznas_store.programs import load_program
from eznas_store.programs import NAMED_PROGRAMS
from eznas_store.programs import Program

__all__ = [
    "MATRIX_DIR", "PROGRAM_ROLES", "REFERENCE", "SCORE_COLUMNS", "RunRecord", "one_line", "read_run",
    "score_correlations",
]

#: run.json and generations.jsonl of a real run are kilobytes to megabytes; a larger file is
#: not one evolve wrote, and is not read whole into memory
MAX_RUN_FILE_BYTES = 256 << 20
#: the program files ``evolve`` saves, in the order the report lists them
PROGRAM_ROLES: tuple[str, ...] = ("best_final", "best_ever_1", "best_ever_2")
#: the published program every run is compared with (its scores: ``scores/eznas-a.csv``)
REFERENCE = "eznas-a"
#: where ``evolve --over proxies`` writes its result, the cross-problem matrix (``matrix.csv``, ``.png``)
MATRIX_DIR = "cross_problem"
#: columns of ``matrix.csv`` the report reads
MATRIX_COLUMNS: tuple[str, ...] = ("problem", "train", "n_networks", "kind", "name", "kendall_tau", "spearman_rho")
#: columns a scores file must have (``arch`` is optional)
SCORE_COLUMNS: tuple[str, ...] = ("task", "network", "accuracy", "score")


@dataclass(frozen=True)
class RunRecord:
    """What a run directory holds, read leniently.

    ``info`` is ``run.json``; ``generations`` the parsed lines of ``generations.jsonl``;
    ``programs`` maps a program name (the file stem, e.g. ``best_final``) to its
    :class:`Program`, or to ``None`` when the file could not be loaded; ``scores`` maps a
    name to its scores table (columns ``task, network, arch, accuracy, score``, floats for
    the last two); ``matrix`` is ``cross_problem/matrix.csv`` of a proxies run (``None``
    when absent); ``notes`` are one-line sentences on what is missing or malformed.
    """

    path: Path
    info: dict[str, Any]
    generations: list[dict[str, Any]] = field(default_factory=list)
    programs: dict[str, Program | None] = field(default_factory=dict)
    scores: dict[str, pd.DataFrame] = field(default_factory=dict)
    matrix: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.info.get("finished") is not None

    @property
    def over(self) -> str:
        """What the programs read: ``statistics`` (stores' statistics) or ``proxies``
        (hand-crafted proxy columns; no per-network scores, a cross-problem matrix instead)."""
        config = self.info.get("config")
        over = config.get("over") if isinstance(config, Mapping) else None
        if over is None:
            over = next((p.meta.get("over") for p in self.programs.values() if p is not None and p.meta.get("over")),
                        None)
        return str(over or "statistics")

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
        """Saved programs (roles first), then ``eznas-a``, then names that only have scores.

        A proxies run has no ``eznas-a`` (a statistics program): it is listed only if scored."""
        saved = sorted(
            (n for n in self.programs if n != REFERENCE),
            key=lambda n: (PROGRAM_ROLES.index(n) if n in PROGRAM_ROLES else len(PROGRAM_ROLES), n),
        )
        rest = sorted(n for n in self.scores if n not in self.programs and n != REFERENCE)
        ref = [REFERENCE] if self.over != "proxies" or REFERENCE in self.scores else []
        return [*saved, *ref, *rest]

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
    if run_json.stat().st_size > MAX_RUN_FILE_BYTES:
        raise DataNotFoundError(f"{run_json} is larger than {MAX_RUN_FILE_BYTES >> 20} MiB: not a run.json of evolve")
    try:
        info = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise DataNotFoundError(f"{run_json} cannot be read as JSON ({one_line(e)[:80]})") from None
    if not isinstance(info, dict):
        raise DataNotFoundError(f"{run_json} holds a {type(info).__name__}, not a JSON object")
    run = RunRecord(path=path, info=info)
    if info.get("finished") is None:
        run.notes.append("The run has not finished (run.json has no finish time): this report shows it so far.")
    _read_generations(run)
    _read_programs(run)
    if run.over == "proxies":
        _read_matrix(run)
    else:
        _read_scores(run)
    return run


def one_line(e: BaseException) -> str:
    """An exception as one line of text (the report quotes it inside a sentence)."""
    return " ".join(str(e).split()) or type(e).__name__


def _read_generations(run: RunRecord) -> None:
    file = run.path / "generations.jsonl"
    if not file.is_file():
        run.notes.append("generations.jsonl is missing: no generation has been logged.")
        return
    if file.stat().st_size > MAX_RUN_FILE_BYTES:
        run.notes.append(f"generations.jsonl is larger than {MAX_RUN_FILE_BYTES >> 20} MiB and was not read "
                         "(not a log evolve writes).")
        return
    for i, line in enumerate(file.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
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
            run.notes.append(f"programs/{file.name} could not be loaded: {one_line(e)}")
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
            run.notes.append(f"scores/{file.name} could not be read: {one_line(e)}")
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


def _read_matrix(run: RunRecord) -> None:
    """``cross_problem/matrix.csv``: the result of a proxies run (it has no scores files)."""
    file = run.path / MATRIX_DIR / "matrix.csv"
    if not file.is_file():
        why = " (written when the run finishes)" if not run.finished else ""
        run.notes.append(f"{MATRIX_DIR}/matrix.csv is missing{why}: no cross-problem matrix.")
        return
    try:
        frame = pd.read_csv(file, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as e:
        run.notes.append(f"{MATRIX_DIR}/matrix.csv could not be read: {one_line(e)}")
        return
    missing = [c for c in MATRIX_COLUMNS if c not in frame.columns]
    if missing:
        run.notes.append(f"{MATRIX_DIR}/matrix.csv lacks the column(s) {', '.join(missing)} and was ignored.")
        return
    for col in ("kendall_tau", "spearman_rho"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(np.float64)
    frame["train"] = frame["train"].isin(("1", "True", "true"))
    object.__setattr__(run, "matrix", frame)  # the record is frozen once read; this is part of reading it


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
