"""Where each tensor lives in a store: the block table, row widths and chunk size.

The caller hands in, per network, its blocks as plain shape records (a search space's
``BlockSpec`` fits); the store never asks a search space. Stored tensors of one kind form
*families* (``FAMILIES``) that share a row; tensors a NB201 cell holds twice are laid out
once: edges out of one node share their input (``off_inpact`` repeats), edges into one
node share their output gradient (``off_actgrad`` repeats).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from eznas_store.terminals import INPUTS, STORED, STORED_KINDS

#: stored family → (dim name, which block shape, dedup key attribute or None)
FAMILIES: dict[str, tuple[str, str, str | None]] = {
    "wt": ("wt_elem", "weight", None),
    "inpact": ("inpact_elem", "input", "input_key"),
    "preactgrad": ("preactgrad_elem", "input", None),
    "act": ("act_elem", "output", None),
    "actgrad": ("actgrad_elem", "output", "output_key"),
}
#: stored array name → family
ARRAY_FAMILY: dict[str, str] = {"wt": "wt", **{
    f"{k}_{x}": ("wt" if k == "wtgrad" else k) for k in STORED_KINDS for x in INPUTS}}
assert set(ARRAY_FAMILY) == set(STORED)

#: prefix of the arrays that hold a raw pass which is not itself a terminal: the P pass
#: (the terminal ``act_P`` is ``raw_act_P - act_D``); every other stored array *is* the
#: terminal of its name
RAW_PREFIX = "raw_"


def array_name(stored: str, p_difference: bool = False) -> str:
    """The Zarr array holding ``STORED`` tensor ``stored`` (format 2): ``raw_act_P`` for
    ``act_P``; D, N and ``wt`` arrays are named as the terminals they are. A store that keeps
    the P pass as its difference from D (``p_difference``: lossy codecs) holds the terminal
    ``act_P`` itself, so it is named ``act_P``."""
    return RAW_PREFIX + stored if stored.endswith("_P") and not p_difference else stored


def array_names(format_version: int, p_difference: bool = False) -> dict[str, str]:
    """``STORED`` name → Zarr array name of a store of this format and P layout."""
    if format_version == 1:
        return ARRAY_NAMES[1]
    return {s: array_name(s, p_difference) for s in STORED}


#: ``STORED`` name → Zarr array name, per store format version (version 1 used the bare names)
ARRAY_NAMES: dict[int, dict[str, str]] = {1: {s: s for s in STORED}, 2: {s: array_name(s) for s in STORED}}
#: every name a stored tensor array has had
TENSOR_ARRAYS: frozenset[str] = frozenset(n for names in ARRAY_NAMES.values() for n in names.values())

SHAPE_COLUMNS = ("c_in", "c_out", "kernel", "stride", "h_in", "h_out")
#: block-table columns written from format 2 on: feature maps are square (``w = h``)
WIDTH_COLUMNS = {"w_in": "h_in", "w_out": "h_out"}
#: target bytes of one chunk across all stored arrays, uncompressed (bounds reader RAM)
CHUNK_TARGET_BYTES = 256 * 2**20


class BlockRecord(Protocol):
    """What the layout needs to know of one block: its shapes and the tensors it shares."""

    c_in: int
    c_out: int
    kernel: int
    stride: int
    h_in: int
    h_out: int
    input_key: str
    output_key: str


def block_shapes(c_in: int, c_out: int, kernel: int, h_in: int, h_out: int,
                 batch: int) -> dict[str, tuple[int, ...]]:
    """The weight, input and output tensor shapes of a block (square feature maps)."""
    return {"weight": (c_out, c_in, kernel, kernel), "input": (batch, c_in, h_in, h_in),
            "output": (batch, c_out, h_out, h_out)}


@dataclass
class Layout:
    """Block table and row widths computed from the plan, before anything runs."""

    n_blocks: np.ndarray
    block_start: np.ndarray
    blocks: dict[str, np.ndarray]  # block-table columns
    widths: dict[str, int]  # family → row width (elements)
    chunk_networks: int


def compute_layout(networks: Sequence[Sequence[BlockRecord]], *, batch_size: int,
                   chunk_networks: int = 0) -> Layout:
    """The layout of networks given as their blocks in execution order.

    ``chunk_networks`` 0 chooses the chunk size from ``CHUNK_TARGET_BYTES``.
    """
    cols: dict[str, list[int]] = defaultdict(list)
    n_blocks = np.zeros(len(networks), dtype=np.int32)
    widths = dict.fromkeys(FAMILIES, 0)
    for n, specs in enumerate(networks):
        n_blocks[n] = len(specs)
        fill = _network_offsets(n, specs, batch_size, cols)
        for fam in FAMILIES:
            widths[fam] = max(widths[fam], fill[fam])
    block_start = np.concatenate([[0], np.cumsum(n_blocks)[:-1]]).astype(np.int64)
    blocks = {k: np.asarray(v, dtype=np.int64 if k.startswith("off_") else np.int32) for k, v in cols.items()}
    return Layout(n_blocks, block_start, blocks, widths, _chunk_size(widths, chunk_networks, len(networks)))


def _network_offsets(n: int, specs: Sequence[BlockRecord], batch: int,
                     cols: dict[str, list[int]]) -> dict[str, int]:
    """Append network ``n``'s rows to the block-table columns; return its row width per family."""
    fill = dict.fromkeys(FAMILIES, 0)
    seen: dict[str, dict[str, int]] = {f: {} for f in FAMILIES}
    for b, s in enumerate(specs):
        cols["block_network"].append(n)
        cols["block_index"].append(b)
        for c in SHAPE_COLUMNS:
            cols[c].append(getattr(s, c))
        for w, h in WIDTH_COLUMNS.items():
            cols[w].append(getattr(s, h))
        shapes = block_shapes(s.c_in, s.c_out, s.kernel, s.h_in, s.h_out, batch)
        for fam, (_, shape_kind, key_attr) in FAMILIES.items():
            size = int(np.prod(shapes[shape_kind]))
            key = getattr(s, key_attr) if key_attr else None
            if key is not None and key in seen[fam]:
                off = seen[fam][key]
            else:
                off = fill[fam]
                fill[fam] += size
                if key is not None:
                    seen[fam][key] = off
            cols[f"off_{fam}"].append(off)
    return fill


def _chunk_size(widths: dict[str, int], chunk_networks: int, n_networks: int) -> int:
    """Networks per chunk: as asked, else as many as fit ``CHUNK_TARGET_BYTES`` (1..64)."""
    row_bytes = 4 * sum(widths[ARRAY_FAMILY[a]] for a in STORED)
    k = chunk_networks or int(np.clip(CHUNK_TARGET_BYTES // max(row_bytes, 1), 1, 64))
    return min(k, max(n_networks, 1))
