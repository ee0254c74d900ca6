"""The sections of a run's report, as document blocks: the run's header, configuration and log.

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
from eznas_store.programs import parse_formula
from eznas_store.programs import Apply, Node, Program, Terminal, terminals_for
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
from eznas_store.report.runs import REFERENCE, RunRecord

__all__ = ["GENERATION_COLUMNS", "best_program", "generation_log", "run_configuration", "run_header", "text_tree"]

#: columns of the generation log, in order; unknown keys follow these
GENERATION_COLUMNS: tuple[str, ...] = (
    "gen", "best", "median", "valid_fraction", "evaluated", "seconds", "peak_rss_mb", "best_formula",
)


def run_header(run: RunRecord, title: str) -> list[Block]:
    """Title, when, and what is missing: what a reader must know before the results."""
    info = run.info
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    finished = info.get("finished")
    over = " Programs over hand-crafted proxies (evolve --over proxies)." if run.over == "proxies" else ""
    blocks: list[Block] = [
        Heading(1, title),
        paragraph("Run directory ", Code(str(run.path.resolve())), f"; report written {now}."),
        paragraph("Started ", Code(str(info.get("started", DASH))), ", ",
              *(("finished ", Code(str(finished))) if finished is not None else ("not finished",)),
              "" if math.isnan(as_float(info.get("seconds"))) else f"; {format_duration(info['seconds'])} of run time",
              ".", over),
    ]
    if run.notes:
        blocks += [Heading(2, "Missing or incomplete"), Notes(tuple(run.notes))]
    return blocks


def run_configuration(run: RunRecord) -> list[Block]:
    """The stores, tasks, configuration and versions: after the results, for reference."""
    info = run.info
    blocks: list[Block] = [Heading(2, "Run configuration")]
    stores = info.get("stores") or []
    blocks.append(Heading(3, "Stores"))
    if isinstance(stores, (str, Mapping)):
        stores = [stores]
    blocks.append(BulletList(tuple((Code(str(s)),) for s in stores)) if stores else paragraph("No store recorded."))
    blocks.append(Heading(3, "Tasks"))
    tasks = [t for t in info.get("tasks") or [] if isinstance(t, Mapping)]
    if tasks and any("role" in t for t in tasks):
        blocks.append(table(("task", "networks", "role"),
                             ((Code(str(t.get("name", DASH))), str(t.get("n_networks", DASH)),
                               str(t.get("role", DASH))) for t in tasks),
                             (False, True, False)))
    elif tasks:
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
