"""Fitness stage: turn program scores into Kendall tau / Spearman rho fitness over tasks.

In: statistics stores (or freshly collected networks) and network x proxy tables, plus
programs (from :mod:`eznas_store.programs`). Out: per-network scores of each program
(:class:`~eznas_store.fitness.scores.ScoreResult`, ``scores/*.csv``) and its fitness
(:class:`~eznas_store.fitness.correlations.Fitness`: tau per task, combined by min or mean).

* ``correlations``: tau-b / rho, invalid-program reasons, combining tasks.
* ``engine`` (with ``chunk_scoring``, ``dask_workers``): the Dask engine streaming store
  chunks to workers, one task per chunk; ``scores``: summaries and CSV output.
* ``storeless``: collect, score, discard, network by network, with no store.
* ``problems``, ``proxy_table_scorer``, ``matrix``: proxy-table problems (load, split),
  fitness of proxy programs on them, and the cross-problem transfer matrix.
"""
