"""Stage ``studies``: research instruments built from the stages below, one per command.

``compare`` puts hand-crafted proxies, EZNAS-A and evolved programs side by side on one
store (and checks our proxies against NAS-Bench-Suite-Zero); ``transfer`` evolves on each
task and tests every evolved program on every task (the appendix's transfer matrix);
``seeds`` measures how a proxy's Kendall tau spreads over random seeds; ``demo`` runs the
whole pipeline (label, ingest, evolve, report) on a fresh machine. In: stores, benchmark
tables, programs and a configuration; out: CSV/JSON/Markdown tables and PNG plots in an
output folder.
"""
