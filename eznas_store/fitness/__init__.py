"""Fitness stage: turn program scores into Kendall tau / Spearman rho fitness over tasks.

In: statistics stores and proxy values (stores, Suite-Zero files, old proxy tables), plus
programs (from :mod:`eznas_store.programs`). Out: per-network scores of each program
(:class:`~eznas_store.fitness.scores.ScoreResult`, ``scores/*.csv``) and its fitness
(:class:`~eznas_store.fitness.correlations.Fitness`: tau per task, combined by min or mean).

* ``correlations``: tau-b / rho, invalid-program reasons, combining tasks.
* ``engine`` (with ``chunk_scoring``, ``dask_workers``): the Dask engine streaming store
  chunks to workers, one task per chunk; ``scores``: summaries and CSV output.
* ``problems``, ``proxy_table_scorer``, ``matrix``: proxy-table problems (load, split),
  fitness of proxy programs on them, and the cross-problem transfer matrix.
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.fitness import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "Engine": "eznas_store.fitness.engine",
    "FITNESSES": "eznas_store.fitness.correlations",
    "Fitness": "eznas_store.fitness.correlations",
    **{n: "eznas_store.fitness.learned" for n in ("LearnedConfig", "LearnedModel", "feature_matrix", "fit_learned", "fit_problems", "predict_learned", "rank_columns")},
    "ProxyTableScorer": "eznas_store.fitness.proxy_table_scorer",
    "Roundoff": "eznas_store.fitness.roundoff",
    "ScoreResult": "eznas_store.fitness.scores",
    "ScoringCaches": "eznas_store.fitness.chunk_scoring",
    "Task": "eznas_store.fitness.engine",
    "cross_problem_matrix": "eznas_store.fitness.matrix",
    "default_cache_budget": "eznas_store.fitness.chunk_scoring",
    "json_ready": "eznas_store.fitness.scores",
    "json_text": "eznas_store.fitness.scores",
    "kendall_tau": "eznas_store.fitness.correlations",
    "load_problems": "eznas_store.fitness.problems",
    "load_task": "eznas_store.fitness.engine",
    "population_fitness": "eznas_store.fitness.correlations",
    "require_statistics_programs": "eznas_store.fitness.engine",
    "result_json": "eznas_store.fitness.scores",
    "roundoff_check": "eznas_store.fitness.roundoff",
    "score_store": "eznas_store.fitness.engine",
    "selection_value": "eznas_store.fitness.correlations",
    "spearman_rho": "eznas_store.fitness.correlations",
    "split_problem": "eznas_store.fitness.problems",
    "summarise": "eznas_store.fitness.scores",
    "write_matrix": "eznas_store.fitness.matrix",
    "write_scores_csv": "eznas_store.fitness.scores",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

