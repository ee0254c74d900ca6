"""Stage ``report``: turn a finished (or still running) evolve run directory into a report.

In: a run directory as ``evolve`` writes it (``run.json``, ``generations.jsonl``,
``programs/*.json``, ``scores/<program>.csv``), or several of them. Out: files in that
directory: ``report.md`` and a self-contained ``report.html`` with ``plots/*.png``
(fitness per generation, score vs accuracy, the best program's tree); for several runs,
``comparison.md/.html/.csv``. Modules: ``runs`` (read a run leniently), ``document``
(the blocks both formats render), ``results`` (a run's programs, coarse ones flagged, and a
proxies run's cross-problem matrix), ``sections`` (its header, configuration and log), ``plots``, ``markdown``,
``html``, ``run_report`` (``write_report``) and ``comparison`` (``write_comparison``).
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.report import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "write_comparison": "eznas_store.report.comparison",
    "write_report": "eznas_store.report.run_report",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

