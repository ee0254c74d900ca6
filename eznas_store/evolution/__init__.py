"""Evolution stage: genetic programming of the programs that score networks (``eznas-store evolve``).

In: statistics stores, or proxy values (stores, Suite-Zero files, old proxy tables), with
accuracy labels, through the fitness stage. Out: a run folder: checkpoint per generation,
hall of fame, the best programs as JSON, ``run.json`` with how every result was made.
``evolve`` is the (mu+lambda) loop with its typed config; ``representations`` the two
genomes (trees, instruction lists); ``population_scorers`` what a generation is scored on;
``split``/``generalise`` held-out networks and validation-chosen programs.
"""


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


def __getattr__(name: str):
    if name in _FACE:
        import importlib

        return getattr(importlib.import_module(_FACE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_FACE))

