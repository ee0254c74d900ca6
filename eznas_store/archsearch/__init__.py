"""Architecture search stage: aging evolution over the cells of a search space (``eznas-store search``).

In: a proxy or program as fitness (computed on the fly: collect, score, discard), a data
batch and a benchmark table. Out: the best-scored cell judged by its true accuracy and
rank in the table (``search.json`` + ``history.csv``). It sits above both halves: a cell's
fitness needs the collecting half (build and run the network) and the scoring half.
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.archsearch import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "ArchSearchConfig": "eznas_store.archsearch.config",
    "format_result": "eznas_store.archsearch.result",
    "run_search": "eznas_store.archsearch.run",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

