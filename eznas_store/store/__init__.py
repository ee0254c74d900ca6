"""Stage ``store``: one Zarr v3 group that plain xarray can open, read and written by layout alone.

In: a ``StorePlan`` (which networks, how collected), a ``Layout`` computed by the caller
from plain block-shape records, and numpy arrays of stored tensors (``terminals.STORED``).
Out: an open ``Store`` (tables, chunk ranges, numpy rows of whole chunks), xarray views,
``verify``/``info`` reports. It knows nothing of what produced the bytes: no torch, no
search space, no collector.

Modules: ``plan`` (StorePlan and its JSON), ``layout`` (block table, row widths, chunk
size), ``group`` (URLs, opening the root group quietly), ``create`` (making a store for a
plan), ``reader`` (``open_store``, ``Store``), ``writer`` (whole chunks, run records),
``views`` (xarray), ``verify`` (``verify_store``, ``store_summary``), ``describe`` (each
array's attributes), ``chunks`` (which chunks must exist: an absent key is lost data, not fill
values), ``transcode`` (a copy with another tensor codec, renamed into place once checked).

Layout of a store (format 2). All arrays carry ``dimension_names``, ``long_name`` and
``description``; arrays along ``network`` or ``block`` name that dim's table columns in a
``coordinates`` attribute, so ``xarray.open_zarr(url)`` labels them and puts ``arch``,
``bench_index``, ``n_blocks``, ``block_start`` on ``network`` and the block columns on ``block``:

* network table, dim ``network``: ``arch``, ``bench_index``, ``accuracy`` (the fitness
  target) and every accuracy column of the benchmark table, ``n_blocks``,
  ``block_start``; written at creation. Per-network results written by ingest, chunked
  like the tensors: ``complete``, ``params``, ``flops``, ``seconds``.
* block table, dim ``block``: ``block_network``, ``block_index``, shapes (``c_in``,
  ``c_out``, ``kernel``, ``stride``, ``h_in``, ``h_out``, ``w_in``, ``w_out``) and, per
  stored family, the element offset of the block's tensor inside its network's row (``off_*``).
* tensors, dims ``(network, <family>_elem)``: each network's tensors of one kind,
  flattened and concatenated into one row, padded with zeros to the widest network; the
  attributes ``offset`` and ``block_shape`` say where one block's tensor lies. Arrays are
  named by ``layout.array_name``: the terminal they are (``wt``, ``act_D``, ...), except
  the raw P pass, ``raw_<kind>_P`` (the terminal ``act_P`` is ``raw_act_P - act_D``).
  Format 1 stores (raw P arrays named ``act_P``) are read through ``Store.array_names``.
  A chunk holds ``chunk_networks`` whole rows, so one chunk read gives whole networks and
  there is one file per chunk per kind, not per network or block.
* proxies, dims ``(network, proxy)``, or ``(network, proxy, label_set)`` in a store made with
  label sets (``StorePlan.label_sets``: one classifier head each): ``proxy_value`` (float64,
  NaN where one failed; its attribute ``proxies`` holds each proxy's card: summary, protocol,
  head dependence, images read) and ``proxy_reason``; tables ``proxy`` and, with label sets,
  ``label_set``, ``label_set_classes``, ``label_set_accuracy``; with a Suite-Zero join,
  ``suitezero_value`` (network, suitezero_proxy[, label_set]), a table (``suitezero_proxy``).
  ``Store.proxy_values`` reads any of them as (network, proxy, label_set).

A proxies-only store (``StorePlan.statistics`` false: ``ingest --no-statistics``,
``proxy-table``) is the same group without tensors, block table, ``n_blocks``/``block_start``
or ``params``/``flops``; its ``data_batch`` is the proxies' images; readers of statistics
refuse it in one line (``Store.require_statistics``).

What is stored is the smallest exact set (``terminals.STORED``); the rest of the 22
terminals are derived on read (``evaluate.chunk.read_chunk``): ``preact``/``inpactgrad``
from ``inpact``/``preactgrad``, and P terminals as (P − D) differences, the released
EZNAS code's semantics (the rules: ``terminals.terminal_value``, which ``Store.tensor``
applies in numpy).
"""

from eznas_store.faces import lazy_face

# The stage's face: what other stages import from it (``from eznas_store.store import name``),
# loaded on first use so that importing the stage stays cheap (``eznas-store -h`` loads no torch).
_FACE = {
    "ARRAY_FAMILY": "eznas_store.store.layout",
    "CHUNK_TARGET_BYTES": "eznas_store.store.layout",
    "Layout": "eznas_store.store.layout",
    "NetworkArrays": "eznas_store.store.writer",
    "NetworkProxies": "eznas_store.store.writer",
    "ProxyValues": "eznas_store.store.writer",
    "ROUNDINGS": "eznas_store.store.plan",
    "Store": "eznas_store.store.store",
    "StorePlan": "eznas_store.store.plan",
    "canonical_codec": "eznas_store.store.plan",
    "codec_line": "eznas_store.store.verify",
    "compute_layout": "eznas_store.store.layout",
    "create_store": "eznas_store.store.create",
    "intact_networks": "eznas_store.store.verify",
    "normalise_url": "eznas_store.store.group",
    "open_for_plan": "eznas_store.store.create",
    "open_store": "eznas_store.store.store",
    "parse_codec": "eznas_store.store.plan",
    "plan_to_json": "eznas_store.store.plan",
    "record_run": "eznas_store.store.writer",
    "store_summary": "eznas_store.store.verify",
    "suitezero_sha256": "eznas_store.store.create",
    "transcode_store": "eznas_store.store.transcode",
    "verify_store": "eznas_store.store.verify",
    "write_chunk": "eznas_store.store.writer",
    "write_proxy_rows": "eznas_store.store.writer",
    "zfp_missing": "eznas_store.store.group",
}
__all__ = sorted(_FACE)

__getattr__, __dir__ = lazy_face(__name__, _FACE)

