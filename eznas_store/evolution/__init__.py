"""Evolution stage: genetic programming of the programs that score networks (``eznas-store evolve``).

In: statistics stores, or proxy values (stores, Suite-Zero files, old proxy tables), with
accuracy labels, through the fitness stage. Out: a run folder: checkpoint per generation,
hall of fame, the best programs as JSON, ``run.json`` with how every result was made.
``evolve`` is the (mu+lambda) loop with its typed config; ``representations`` the two
genomes (trees, instruction lists); ``population_scorers`` what a generation is scored on;
``split``/``generalise`` held-out networks and validation-chosen programs.
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.evolution import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "GPSettings": "eznas_store.evolution.settings",
    "PAPER_GP": "eznas_store.evolution.settings",
    "CHECKPOINT": "eznas_store.evolution.evolve",
    "EvolveConfig": "eznas_store.evolution.evolve",
    "config_json": "eznas_store.evolution.checkpoint",
    "resume_point": "eznas_store.evolution.checkpoint",
    "run_evolve": "eznas_store.evolution.evolve",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

