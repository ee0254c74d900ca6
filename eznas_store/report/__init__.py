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
