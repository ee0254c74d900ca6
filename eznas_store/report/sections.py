"""The sections of a run's report, as document blocks: the run, its programs, its log.

Each function reads a :class:`~eznas_store.report.runs.RunRecord` and returns blocks
(:mod:`eznas_store.report.document`); none draws a plot or writes a file.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping
from typing import Any

from eznas_store.errors import ProgramError
from eznas_store.programs.formula import parse_formula
from eznas_store.programs.tree import Apply, Node, Program, Terminal, terminals_for
from eznas_store.report.document import (
    DASH,
    MISSING,
    Block,
    BulletList,
    Code,
    Heading,
    Inline,
    Notes,
    as_float,
    format_duration,
    format_number,
    paragraph,
    table,
)
from eznas_store.report.runs import REFERENCE, RunRecord, score_correlations

__all__ = ["GENERATION_COLUMNS", "best_program", "generation_log", "programs_section", "run_header", "text_tree"]

#: columns of the generation log, in order; unknown keys follow these
GENERATION_COLUMNS: tuple[str, ...] = (
    "gen", "best", "median", "valid_fraction", "evaluated", "seconds", "peak_rss_mb", "best_formula",
)


def run_header(run: RunRecord, title: str) -> list[Block]:
    """Title, when, what is missing, then the stores, tasks, configuration and versions."""
    info = run.info
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    finished = info.get("finished")
    blocks: list[Block] = [
        Heading(1, title),
        paragraph("Run directory ", Code(str(run.path.resolve())), f"; report written {now}."),
        paragraph("Started ", Code(str(info.get("started", DASH))), ", ",
              *(("finished ", Code(str(finished))) if finished is not None else ("not finished",)),
              "" if math.isnan(as_float(info.get("seconds"))) else f"; {format_duration(info['seconds'])} of run time",
              "."),
    ]
    if run.notes:
        blocks += [Heading(2, "Missing or incomplete"), Notes(tuple(run.notes))]
    blocks.append(Heading(2, "Run"))
    stores = info.get("stores") or []
    blocks.append(Heading(3, "Stores"))
    if isinstance(stores, (str, Mapping)):
        stores = [stores]
    blocks.append(BulletList(tuple((Code(str(s)),) for s in stores)) if stores else paragraph("No store recorded."))
    blocks.append(Heading(3, "Tasks"))
    tasks = [t for t in info.get("tasks") or [] if isinstance(t, Mapping)]
    if tasks:
        blocks.append(table(("task", "networks"),
                             ((Code(str(t.get("name", DASH))), str(t.get("n_networks", DASH))) for t in tasks),
                             (False, True)))
    else:
        blocks.append(paragraph("No task recorded."))
    blocks.append(Heading(3, "Configuration"))
    config = info.get("config")
    if isinstance(config, Mapping) and config:
        blocks.append(table(("option", "value"), ((k, Code(v)) for k, v in _flatten(config))))
    else:
        blocks.append(paragraph("No configuration recorded."))
    blocks.append(Heading(3, "Versions"))
    versions = info.get("versions")
    if isinstance(versions, Mapping) and versions:
        blocks.append(table(("package", "version"), ((k, Code(v)) for k, v in _flatten(versions))))
    else:
        blocks.append(paragraph("No versions recorded."))
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


def programs_section(run: RunRecord, tasks: list[str]) -> list[Block]:
    """The summary table: per program its fitness and tau/rho/valid per task, recomputed."""
    blocks: list[Block] = [
        Heading(2, "Programs"),
        paragraph("Kendall tau-b and Spearman rho of each program's network scores with the accuracies, "
              "recomputed from ", Code("scores/<program>.csv"), " with scipy over the networks whose "
              "score is finite (", Code("valid"), " counts them). Fitness is the value evolution "
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
        row: list[Inline] = [
            Code(name),
            str(meta.get("role", "reference" if name == REFERENCE else DASH)),
            str(meta["generation"]) if "generation" in meta else DASH,
            format_number(meta.get("fitness", MISSING)),
        ]
        frame = run.scores.get(name)
        corr = score_correlations(frame, tasks) if frame is not None else None
        for t in tasks:
            if corr is None:
                row += [DASH, DASH, "no scores"]
            else:
                c = corr.loc[t]
                row += [format_number(c["tau"]), format_number(c["rho"]), f"{int(c['n_valid'])}/{int(c['n'])}"]
        if prog is not None:
            row.append(Code(prog.formula()))
        else:
            row.append("could not be loaded" if name in run.programs else "no program file")
        rows.append(row)
    blocks.append(table(header, rows, numeric))
    return blocks


def generation_log(run: RunRecord) -> list[Block]:
    """The generation log as a table: the known columns, then any others, the formula last."""
    blocks: list[Block] = [Heading(2, "Generation log")]
    if not run.generations:
        blocks.append(paragraph("No generation logged yet."))
        return blocks
    extra = sorted({k for g in run.generations for k in g} - set(GENERATION_COLUMNS))
    cols = [*GENERATION_COLUMNS[:-1], *extra, GENERATION_COLUMNS[-1]]  # the formula last
    digits = {"best": 4, "median": 4, "valid_fraction": 3, "seconds": 1, "peak_rss_mb": 0}
    rows = []
    for g in run.generations:
        row: list[Inline] = []
        for c in cols:
            v = g.get(c, MISSING)
            if c in digits:
                row.append(format_number(v, digits[c]))
            elif c == "best_formula":
                row.append(Code(str(v)) if isinstance(v, str) else DASH)
            elif v is MISSING:
                row.append(DASH)
            else:
                row.append(v if isinstance(v, str) else json.dumps(v, default=str))
        rows.append(row)
    numeric = [c not in ("best_formula",) for c in cols]
    blocks.append(table(cols, rows, numeric))
    return blocks


def best_program(run: RunRecord) -> tuple[str, Program] | None:
    """The saved program with the highest recorded fitness; else the first saved in role
    order; else the last logged generation's ``best_formula``."""
    saved = [(n, p) for n in run.program_names() if n != REFERENCE and (p := run.programs.get(n)) is not None]
    finite = [(n, p) for n, p in saved if not math.isnan(as_float(p.meta.get("fitness")))]
    if finite:
        return max(finite, key=lambda np_: as_float(np_[1].meta.get("fitness")))
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
