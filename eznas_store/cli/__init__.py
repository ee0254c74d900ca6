"""The ``eznas-store`` command line: it only wires the stages.

In: argv. Out: files and one-line results on stdout, one-line errors on stderr (exit 2).
Every command is a thin wrapper that builds a stage's typed config and calls the stage's
plain keyword-only function, which other code can call directly; nothing in the package
imports this folder. ``app.py`` holds the app and the error funnel; the command modules
register themselves on import.
"""

# the order of these imports is the order of `eznas-store -h`
from eznas_store.cli import store_commands  # noqa: F401, I001  (registers ingest, verify, info, label)
from eznas_store.cli import run_commands  # noqa: F401, E402  (evolve, score, report)
from eznas_store.cli import study_commands  # noqa: F401, E402  (compare, transfer, seeds, search, demo)
from eznas_store.cli import proxy_commands  # noqa: F401, E402  (proxy-table)
from eznas_store.cli.app import _entry, app, main

__all__ = ["app", "main"]
