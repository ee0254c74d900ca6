"""Stage ``studies``: research instruments built from the stages below, one per command.

``compare`` puts hand-crafted proxies, EZNAS-A and evolved programs side by side on one
store (and checks our proxies against NAS-Bench-Suite-Zero); ``transfer`` evolves on each
task and tests every evolved program on every task (the appendix's transfer matrix);
``seeds`` measures how a proxy's Kendall tau spreads over random seeds; ``demo`` runs the
whole pipeline (label, ingest, evolve, report) on a fresh machine. In: stores, benchmark
tables, programs and a configuration; out: CSV/JSON/Markdown tables and PNG plots in an
output folder.
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.studies import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "DemoConfig": "eznas_store.studies.demo",
    "SeedsConfig": "eznas_store.studies.seeds",
    "TransferConfig": "eznas_store.studies.transfer",
    "check_compare_args": "eznas_store.studies.compare",
    "compare_store": "eznas_store.studies.compare",
    "format_seeds": "eznas_store.studies.seeds",
    "format_table": "eznas_store.studies.compare",
    "format_transfer": "eznas_store.studies.transfer",
    "rows_json": "eznas_store.studies.compare",
    "run_demo": "eznas_store.studies.demo",
    "run_seeds": "eznas_store.studies.seeds",
    "run_transfer": "eznas_store.studies.transfer",
    "stored_proxy_results": "eznas_store.studies.compare",
    "suitezero_agreement": "eznas_store.studies.compare",
    "write_outputs": "eznas_store.studies.compare",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

