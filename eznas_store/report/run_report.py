"""Report of one evolution run: ``RUN/report.md`` and a self-contained ``RUN/report.html``.

``evolve`` writes a run directory (``run.json``, ``generations.jsonl``, ``programs/*.json``,
``scores/<program>.csv``); :func:`write_report` reads it and writes both reports from one
list of blocks, so they say the same thing:

1. the title, when it ran and what is missing or incomplete;
2. the results: a summary table of the programs, each distinct formula once (identical
   ones share a row, "best_final = best_ever_1"): for a statistics run, Kendall tau-b and
   Spearman rho on each task recomputed from its scores file (over the networks with a
   finite score, whose number is printed beside) beside the reference ``eznas-a``; for a
   proxies run (``evolve --over proxies``), train tau as evolution recorded it and test
   tau from the cross-problem matrix. Programs whose scores take only a few distinct
   values are flagged as coarse. Then, for a proxies run, the cross-problem matrix
   (``cross_problem/matrix.csv`` as a table, ``matrix.png``); the best program as a
   formula, a drawn tree and an indented text tree; fitness per generation (best and
   median, valid fraction on a twin axis); score vs accuracy, one panel per program
   (statistics runs);
3. the run's configuration: stores, tasks, options and versions;
4. the generation log.

The plots are PNGs under ``RUN/plots/`` (the Markdown links them) and embedded in the
HTML as base64 data URIs, so ``report.html`` needs nothing else. A run that is still going
(no ``best_final.json`` yet, ``finished`` null), a missing or malformed scores file,
all-NaN scores or a half-written last line in ``generations.jsonl`` are stated in the
report, never raised; only a missing run directory or ``run.json`` raises
:class:`~eznas_store.errors.DataNotFoundError`. Files the report does not know (e.g.
``transfer.csv``) are ignored.

Example
-------
>>> md, html = write_report("runs/nb201-c10")  # doctest: +SKIP
>>> md.name, html.name  # doctest: +SKIP
('report.md', 'report.html')
"""

from __future__ import annotations

import os
from pathlib import Path

import eznas_store.outputs as outputs
from eznas_store.errors import ProgramError
from eznas_store.programs import Program
from eznas_store.report.document import (
    MISSING,
    Block,
    Code,
    Heading,
    Image,
    Preformatted,
    format_number,
    paragraph,
)
from eznas_store.report.html import to_html
from eznas_store.report.markdown import to_markdown
from eznas_store.report.plots import LOG_DECADES, RANK_DECADES, fitness_plot, scatter_plot, tree_plot
from eznas_store.report.results import (
    ProgramGroup,
    coarse_notes,
    group_of,
    matrix_section,
    program_groups,
    programs_section,
)
from eznas_store.report.runs import RunRecord, one_line, read_run
from eznas_store.report.sections import best_program, generation_log, run_configuration, run_header, text_tree

__all__ = ["PLOT_FILES", "write_report"]

#: plot file names under ``RUN/plots/``
PLOT_FILES: tuple[str, ...] = ("fitness.png", "scatter.png", "tree.png")


def _image(file: str, alt: str, png: bytes | None, missing: str) -> Block:
    """The plot ``plots/<file>``, or the sentence ``missing`` when there is nothing to draw."""
    return paragraph(missing) if png is None else Image(f"plots/{file}", alt, png)


def _plot_sections(run: RunRecord, tasks: list[str], groups: list[ProgramGroup]) -> list[Block]:
    """Fitness per generation, then score vs accuracy (with how its score axis was chosen)."""
    blocks: list[Block] = [
        Heading(3, "Fitness per generation"),
        _image("fitness.png", "fitness per generation", fitness_plot(run), "No generation logged yet: nothing to plot."),
    ]
    if run.over == "proxies":  # no per-network scores: the cross-problem matrix is the result
        return blocks
    blocks.append(Heading(3, "Scores vs accuracy"))
    if run.scores:
        blocks.append(paragraph("One panel per program. The score axis is linear, log or symlog when the "
                                f"scores span more than {LOG_DECADES:g} decades, and the scores' rank within "
                                f"the task when they span more than {RANK_DECADES:g}."))
    panels = [(g.label, g.name) for g in groups]
    blocks.append(_image("scatter.png", "score vs accuracy per program", scatter_plot(run, tasks, panels),
                         "No scores file: nothing to plot."))
    return blocks


def _best_program_section(run: RunRecord, groups: list[ProgramGroup]) -> list[Block]:
    """The best program's formula, drawn tree and text tree (a sequential one's listing first)."""
    blocks: list[Block] = [Heading(3, "Best program")]
    best = best_program(run)
    if best is None:
        return blocks + [paragraph("No program saved and no best formula logged yet.")]
    name, prog = best
    group = group_of(groups, name)
    name = group.label if group is not None else name
    fit = prog.meta.get("fitness", MISSING)
    roundoff = _roundoff_paragraph(prog.meta.get("roundoff"))
    if not isinstance(prog, Program):  # a sequential program: show its instructions, then its tree
        blocks.append(paragraph(Code(name), f" as evolved: {len(prog.instructions)} instructions, "
                                f"{len(prog.live())} live (dead ones marked):"))
        blocks.append(Preformatted(prog.listing()))
        try:
            prog = prog.to_program()
        except ProgramError as e:
            return blocks + [paragraph(f"It computes no valid tree: {one_line(e)}")]
    tree = prog.tree
    blocks += [
        paragraph(Code(name), f" (fitness {format_number(fit)}, {tree.size()} nodes, "
                  f"depth {tree.depth()}, to_scalar {prog.to_scalar}):"),
        Preformatted(prog.formula()),
        *roundoff,
        _image("tree.png", f"expression tree of {name}", tree_plot(tree),
               f"The tree is too wide to draw ({tree.size()} nodes); see the text tree below."),
        Preformatted(text_tree(tree)),
    ]
    return blocks


def _roundoff_paragraph(check: dict | None) -> list[Block]:
    """What evolve's round-off check found for the program (none for runs made before it)."""
    if not isinstance(check, dict):
        return []
    shift = check.get("shift")
    moved = "an unbounded amount" if shift is None else f"{float(shift):.2g} of the scores' spread"
    if check.get("round_off_determined"):
        return [paragraph(f"Round-off check: ROUND-OFF-DETERMINED. One float32 ulp on every statistic moves a "
                          f"score by {moved}, so its ranking is set by round-off: its tau will not hold on "
                          f"another copy of the statistics (a lossy store, other hardware).")]
    return [paragraph(f"Round-off check: stable (one float32 ulp on every statistic moves a score by {moved}).")]


def _write_plots(plots_dir: Path, blocks: list[Block]) -> None:
    """Write this report's PNGs and drop those a previous report drew that this one did not."""
    pngs = {Path(b.file).name: b.png for b in blocks if isinstance(b, Image) and b.file.startswith("plots/")}
    for file in PLOT_FILES:
        if file not in pngs:
            (plots_dir / file).unlink(missing_ok=True)
    for file, png in pngs.items():
        outputs.write_atomic(plots_dir / file, png)


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
    outputs.ensure_dir(plots_dir)
    groups = program_groups(run)
    blocks: list[Block] = [
        *run_header(run, title),
        Heading(2, "Results"),
        *programs_section(run, tasks, groups),
        *coarse_notes(run, tasks, groups),
        *(matrix_section(run, groups) if run.over == "proxies" else []),
        *_best_program_section(run, groups),
        *_plot_sections(run, tasks, groups),
        *run_configuration(run),
        *generation_log(run),
    ]
    _write_plots(plots_dir, blocks)
    md_path, html_path = run.path / "report.md", run.path / "report.html"
    outputs.write_atomic(md_path, to_markdown(blocks))
    outputs.write_atomic(html_path, to_html(blocks, title))
    return md_path, html_path
