"""Stage ``evaluate``: interpret programs over chunks of networks.

In: a ``Chunk`` (``chunk``) holding, per block of every network, the torch tensors of
the statistics terminals, stacked by block shape into ``BlockGroup``s; and programs
(``programs.tree`` trees over the ``programs.ops`` table). Out: per-network scores, NaN
where a program is invalid, with a one-line failure reason per program
(``population.ChunkScores``).

Modules, in the order they build on each other:

``chunk``, ``synthetic``
    the chunk of tensors, and made-up chunks for tests and benchmarks
``table_ops``
    the facts about the table's ops that the fast paths rely on
``keys``
    canonical subtree keys (shared subtrees), terminals, a program's to_scalar mode
``interpret``
    plain interpretation of one tree, a block's scalar, diagnosis of failures
``reference``
    ``evaluate_reference``: one program, block by block (the definition)
``shapes``
    per-block output shapes without data; ``ShapeCache`` owned by the caller
``plan``
    a population's distinct subtrees, their shapes per group, slice sizes
``stacked``
    table ops called directly on stacked blocks, without vmap
``runner``
    ``SliceRunner``: the plan on one group slice (batched, then member by member)
``population``
    ``evaluate_population`` over a chunk, ``ChunkScores``, ``merge_chunk_scores``
``columns``
    ``evaluate_columns``: proxy programs over whole columns of a proxy table
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.evaluate import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "Chunk": "eznas_store.evaluate.chunk",
    "ChunkScores": "eznas_store.evaluate.population",
    "ShapeCache": "eznas_store.evaluate.shapes",
    "SubtreeCache": "eznas_store.evaluate.runner",
    "TO_SCALARS": "eznas_store.evaluate.keys",
    "chunk_from_raw": "eznas_store.evaluate.chunk",
    "decoded_bytes": "eznas_store.evaluate.chunk",
    "evaluate_columns": "eznas_store.evaluate.columns",
    "evaluate_population": "eznas_store.evaluate.population",
    "merge_chunk_scores": "eznas_store.evaluate.population",
    "read_chunk": "eznas_store.evaluate.chunk",
    "release_freed_memory": "eznas_store.evaluate.chunk",
    "tune_allocator": "eznas_store.evaluate.chunk",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

