"""Storeless scoring stage: collect, score, discard, network by network, with no store.

In: a plan of networks (space, cells, benchmark table, data batch) and programs or proxy
names. Out: the same per-network scores and tau/rho a store would give
(:class:`~eznas_store.fitness.scores.ScoreResult`). It needs both halves of the house,
the collecting one (build and run each network) and the scoring one (evaluate programs),
so it sits above both, where ``score`` without a STORE, ``seeds`` and ``search`` use it.
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.storeless import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "check_to_scalar": "eznas_store.storeless.scoring",
    "score_collected": "eznas_store.storeless.scoring",
    "score_storeless": "eznas_store.storeless.scoring",
    "score_storeless_proxies": "eznas_store.storeless.scoring",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

