"""Search spaces by name: each parses architecture strings, builds networks and predicts blocks.

In: a space name (``"nb201"``) from a config or a store. Out: its
:class:`~eznas_store.sources.spaces.base.SearchSpace`, the table of functions the collector,
the store layout, the Suite-Zero reader and aging evolution call. Adding a space means one
module here that defines ``SPACE`` and one line in :data:`SPACES`.
"""

from __future__ import annotations

from eznas_store.errors import UnknownNameError
from eznas_store.sources.spaces import darts, nb201
from eznas_store.sources.spaces.base import SearchSpace

__all__ = ["SPACES", "VARIANTS", "SearchSpace", "get_space"]

SPACES: dict[str, SearchSpace] = {
    "nb201": nb201.SPACE,
    "darts": darts.SPACE,
}

#: skeleton variants: the cells of a space of :data:`SPACES` on another network, ``<space>-<skeleton>``
#: (not listed in ``SPACES``, so nothing enumerates them as spaces of their own)
VARIANTS: dict[str, SearchSpace] = {
    "darts-swap": darts.SWAP_SPACE,
}


def get_space(name: str) -> SearchSpace:
    """The registered space (or skeleton variant) called ``name``; the error lists the known ones."""
    try:
        return SPACES[name] if name in SPACES else VARIANTS[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown search space {name!r} (known: {', '.join(sorted(SPACES))})"
        ) from None

