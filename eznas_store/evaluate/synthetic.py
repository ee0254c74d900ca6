"""Synthetic chunks: random statistics with NAS-Bench-201 block shapes, for tests and benchmarks.

A real ``Chunk`` comes from the store; this module builds one from random tensors so the
evaluator can be tested and timed without running networks. The layout follows NB201's
``TinyNetwork``: three stages of ``cells_per_stage`` cells (channels C, 2C, 4C at
resolution H, H/2, H/4) joined by two residual reduction blocks (a 3×3 stride-2 block
then a 3×3 block); each cell edge that is a 1×1 or 3×3 convolution is one block. Blocks
of equal shapes from all networks are stacked into one ``BlockGroup``, as the store does.

All 22 terminals are stored directly (nothing is derived lazily). The values are plausible,
not exact: kaiming-normal weights, normal activations, ``preact`` and ``inpactgrad`` by
the collector's rcb rules (``preact = relu(inpact)``, ``inpactgrad = preactgrad * (inpact > 0)``)
so gradients have exact zeros (which makes
``sign``/``invert``/``logdet`` fail for some blocks, as with real data).

Example
-------
>>> chunk = synthetic_chunk(3, seed=1, channels=(2, 4, 8), image_size=8, cells_per_stage=1)
>>> chunk.n_networks, sorted(chunk.groups[0].terminals)[:2]
(3, ['act_D', 'act_N'])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from eznas_store.evaluate.chunk import BlockGroup, Chunk, LazyTerminals
from eznas_store.terminals import INPUTS, TERMINALS, derive_inpactgrad, derive_preact

__all__ = ["synthetic_chunk", "random_cell_blocks"]

#: NB201 edge ops and the kernel size of the convolutional ones
_EDGE_OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
_KERNEL: dict[str, int] = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}

#: (c_in, c_out, kernel, h_in, h_out): the shape key of a block
BlockShape = tuple[int, int, int, int, int]


def random_cell_blocks(
    rng: np.random.Generator,
    *,
    channels: Sequence[int] = (16, 32, 64),
    image_size: int = 32,
    cells_per_stage: int = 5,
) -> list[BlockShape]:
    """Block shapes, in execution order, of one network with a random NB201 cell."""
    ops = [_EDGE_OPS[i] for i in rng.integers(0, len(_EDGE_OPS), size=6)]
    blocks: list[BlockShape] = []
    h = image_size
    c_prev = channels[0]
    for stage, c in enumerate(channels):
        if stage > 0:  # residual reduction block: conv_a (stride 2), conv_b
            h_out = (h - 1) // 2 + 1
            blocks.append((c_prev, c, 3, h, h_out))
            blocks.append((c, c, 3, h_out, h_out))
            h = h_out
        for _ in range(cells_per_stage):
            blocks.extend((c, c, _KERNEL[op], h, h) for op in ops if op in _KERNEL)
        c_prev = c
    return blocks


def _terminals(
    shape: BlockShape, g: int, batch: int, gen: torch.Generator, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    c_in, c_out, k, h_in, h_out = shape
    w_shape = (g, c_out, c_in, k, k)
    in_shape = (g, batch, c_in, h_in, h_in)
    out_shape = (g, batch, c_out, h_out, h_out)

    def randn(s: tuple[int, ...], scale: float = 1.0) -> torch.Tensor:
        return torch.randn(s, generator=gen, dtype=dtype) * scale

    t: dict[str, torch.Tensor] = {"wt": randn(w_shape, (2.0 / (c_out * k * k)) ** 0.5)}
    for x in INPUTS:
        # P terminals are differences (perturbed minus data): small values
        scale = 0.01 if x == "P" else 1.0
        inpact = randn(in_shape, scale)
        preactgrad = randn(in_shape, 0.1 * scale)
        t[f"inpact_{x}"] = inpact
        t[f"preact_{x}"] = derive_preact(inpact, "rcb", torch.relu)
        t[f"preactgrad_{x}"] = preactgrad
        t[f"inpactgrad_{x}"] = derive_inpactgrad(preactgrad, inpact, "rcb")
        t[f"wtgrad_{x}"] = randn(w_shape, 0.1 * scale)
        t[f"act_{x}"] = randn(out_shape, scale)
        t[f"actgrad_{x}"] = randn(out_shape, 0.1 * scale)
    return {name: t[name] for name in TERMINALS}


def synthetic_chunk(
    n_networks: int,
    *,
    batch: int = 1,
    seed: int = 0,
    channels: Sequence[int] = (16, 32, 64),
    image_size: int = 32,
    cells_per_stage: int = 5,
    dtype: torch.dtype = torch.float32,
    network_ids: Sequence[int] | None = None,
) -> Chunk:
    """A ``Chunk`` of ``n_networks`` random NB201-like networks, blocks grouped by shape.

    Parameters
    ----------
    n_networks
        Number of networks; each gets a random cell (and so its own number of blocks).
    batch
        Batch size of the activations ``(batch, C, H, W)``.
    seed
        Seeds both the cells and the tensor values; equal arguments give equal chunks.
    channels, image_size, cells_per_stage
        The macro skeleton; NB201 is ``(16, 32, 64)``, 32 and 5. Small values make
        fast test fixtures.
    dtype
        Tensor dtype (``torch.float64`` makes evaluator comparisons tighter).
    network_ids
        Global ids of the networks (default ``0..n_networks-1``).

    Every network has at least one block: a cell without convolutions still has the
    four reduction blocks.
    """
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    per_net = [
        random_cell_blocks(rng, channels=channels, image_size=image_size,
                           cells_per_stage=cells_per_stage)
        for _ in range(n_networks)
    ]
    members: dict[BlockShape, list[tuple[int, int]]] = {}
    for i, blocks in enumerate(per_net):
        for b, shape in enumerate(blocks):
            members.setdefault(shape, []).append((i, b))
    groups = []
    for shape in sorted(members):
        idx = members[shape]
        groups.append(BlockGroup(
            network=torch.tensor([i for i, _ in idx], dtype=torch.long),
            block=torch.tensor([b for _, b in idx], dtype=torch.long),
            terminals=LazyTerminals(_terminals(shape, len(idx), batch, gen, dtype)),
        ))
    ids = np.arange(n_networks) if network_ids is None else np.asarray(network_ids)
    if len(ids) != n_networks:
        raise ValueError(f"network_ids has {len(ids)} entries for {n_networks} networks")
    return Chunk(
        network_ids=ids.astype(np.int64),
        n_blocks=np.array([len(b) for b in per_net], dtype=np.int64),
        groups=groups,
    )
