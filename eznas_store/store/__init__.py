"""Stage ``store``: one Zarr v3 group that plain xarray can open, read and written by layout alone.

In: a ``StorePlan`` (which networks, how collected), a ``Layout`` computed by the caller
from plain block-shape records, and numpy arrays of stored tensors (``terminals.STORED``).
Out: an open ``Store`` (tables, chunk ranges, numpy rows of whole chunks), xarray views,
``verify``/``info`` reports. It knows nothing of what produced the bytes: no torch, no
search space, no collector.

Modules: ``plan`` (StorePlan and its JSON), ``layout`` (block table, row widths, chunk
size), ``group`` (URLs, opening the root group quietly), ``create`` (making a store for a
plan), ``reader`` (``open_store``, ``Store``), ``writer`` (whole chunks, run records),
``views`` (xarray), ``verify`` (``verify_store``, ``store_summary``).

Layout of a store (all arrays carry ``dimension_names``, so ``xarray.open_zarr(url)`` labels them):

* network table, dim ``network``: ``arch``, ``bench_index``, ``accuracy`` (the fitness
  target) and every accuracy column of the benchmark table, ``n_blocks``,
  ``block_start``; written at creation. Per-network results written by ingest, chunked
  like the tensors: ``complete``, ``params``, ``flops``, ``seconds``.
* block table, dim ``block``: ``block_network``, ``block_index``, shapes (``c_in``,
  ``c_out``, ``kernel``, ``stride``, ``h_in``, ``h_out``) and, per stored family, the
  element offset of the block's tensor inside its network's row (``off_*``).
* tensors, dims ``(network, <family>_elem)``: each network's tensors of one kind,
  flattened and concatenated into one row, padded with zeros to the widest network.
  A chunk holds ``chunk_networks`` whole rows, so one chunk read gives whole networks and
  there is one file per chunk per kind, not per network or block.

What is stored is the smallest exact set (``terminals.STORED``); the rest of the 22
terminals are derived on read (``evaluate.chunk.read_chunk``): ``preact``/``inpactgrad``
from ``inpact``/``preactgrad``, and P terminals as (P − D) differences, the released
EZNAS code's semantics.
"""
