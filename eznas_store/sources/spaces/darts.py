"""DARTS CNN cells (Liu et al., ICLR 2019): genotype strings, the NetworkCIFAR skeleton and its blocks.

Everything the package knows about the DARTS space reaches the stages through
:data:`SPACE`; genotype parsing, NB301 keys, random cells and mutation live in
:mod:`~eznas_store.sources.spaces.darts_genotype`, the primitive ops in
:mod:`~eznas_store.sources.spaces.darts_ops`.

The network
-----------
``build`` follows DARTS's eval ``NetworkCIFAR`` (``cnn/model.py``) without the auxiliary
head and without drop-path; ``forward`` returns logits only. Stem 3×3 conv 3→3C + BN;
``L`` cells, cell ``i`` a reduction cell iff ``i ∈ {L//3, 2L//3}`` (channels double);
preprocess0 is FactorizedReduce after a reduction cell, else ReLU-1×1-BN; preprocess1 is
ReLU-1×1-BN; then global average pooling and a linear head. **``N`` is the number of
layers ``L``** (the SearchSpace's skeleton argument; NB201's ``N`` is cells per stage).
Parameter counts equal DARTS's: DARTS_V2 at C=36, L=20 has 3,349,342.

Defaults are C=16, L=8, small enough for a CPU. Measured here (2-core VM shared with other
jobs, torch CPU, train mode, forward + backward of the logits' sum, 32×32 images, best of
5, median of 5 genotypes of the 1000 set): **0.07 s per network at batch 1** (0.06-0.12,
one thread) and **0.75 s at batch 16** (0.58-1.19 one thread; 0.50 s on two threads); a
mid NB201 cell took 0.04 / 0.44 s in the same run (``docs/design.md`` §4: 0.26 s at
batch 16 on an idle VM). Labels: ``darts_1000_cifar10_valid.csv`` comes from an
unpublished small recipe (200 epochs; C and L unknown; 86.6 % max), the NB301 surrogate
values from C=32, L=8, 100 epochs with aux head, drop-path and cutout
(``docs/design.md`` §4), so use the labels as ranks.

Skeletons
---------
Two networks of the same genotypes (``--skeleton``): ``eval`` (:data:`SPACE`, the above) and
``swap`` (:data:`SWAP_SPACE`, space ``darts-swap``, ``build_swap``): SWAP's DARTS network
(its authors' ``correlation.py``: ``Network(3, 10, 1, genotype)``), no stem, the image itself
is both inputs of the first cell (ReLU-1×1 conv 3→2C-BN each); with one layer the only cell is
a reduction cell (built from ``genotype.reduce``, edges from the inputs at stride 2,
``skip_connect`` there FactorizedReduce), 4·2C channels at half the resolution, GAP, linear
head: 310-2,692 parameters on the 1,000-genotype set at C=3. A store's plan names the space,
so it says which network it holds. On any DARTS network, the ``swap`` proxy runs on SWAP's
(``SearchSpace.proxy_networks``), its paper's protocol. A cell takes the previous cell's
output first (``cell(s1, s0)``), so hooks on a cell's first input see the cells as a chain
(AZ-NAS's per-cell features).

A cell whose input (0 or 1) or intermediate node is read by no op and not concatenated
is still computed, as in DARTS, and is tied into the cell output with weight exactly 0
(``out + 0·Σs``): values are unchanged, and the blocks upstream get their true gradient,
zero, instead of none (86 of the 1000 labelled genotypes leave an input unused).

Blocks (what the collector records)
-----------------------------------
The collector's block is an ``nn.Sequential(ReLU, Conv2d, BatchNorm2d)`` whose statistics
are exact: ``preact = relu(inpact)`` and ``inpactgrad = preactgrad·(inpact > 0)``, with
``inpact`` and ``preact`` of one shape. So:

- **preprocess ReLU-1×1-BN**: one block (kernel 1).
- **sep_conv**: two blocks; **dil_conv**: one. DARTS's depthwise conv has no BN after
  it, so it cannot be a block of its own; the BN pairs with the **pointwise 1×1 conv**,
  which is the block's conv (``wt``/``wtgrad``: the pointwise weight, kernel 1). The
  depthwise conv runs inside that conv (:class:`~eznas_store.sources.spaces.darts_ops.SeparableConv2d`),
  so the block's conv input ``preact`` is the **ReLU output** (the depthwise input), not
  the depthwise output EZNAS's ``create_layer_sequence`` hooks: that tensor is not the
  ReLU of the block input (and at stride 2 has the output's size), so the stored
  derivation would be wrong. The depthwise weights are parameters, not terminals.
- **FactorizedReduce** (preprocess0 after a reduction; ``skip_connect`` at stride 2): two
  blocks of half the channels each, ``a`` (conv_1 on x) then ``b`` (conv_2 on
  ``x[:, :, 1:, 1:]``, the shift inside the conv, so both read x and share ``inpact``);
  DARTS's one BN(C) is one BN(C/2) per half, which computes the same.
- pools, ``none``, identity and the stem (Conv-BN) are no blocks.

Order: per cell, preprocess0, preprocess1, then ops in genotype order (node 2's two ops,
node 3's, ...), each op's units in order. ``input_key``s name tensors (``stem``, ``c3`` =
output of cell 3, ``c3.s4`` = state 4 of cell 3); two blocks summed into one node share
an ``output_key``. Feature maps must be even at each reduction (FactorizedReduce).

Search
------
The space cannot be enumerated, so aging evolution (``search --space darts``) walks the
cells of the benchmark table it is judged by: random table cells, and a mutation moves
to the nearest table cell (:func:`~eznas_store.sources.spaces.darts_genotype.distance`:
differing ``(op, input)`` pairs); see :mod:`eznas_store.archsearch.table_space`.

Example
-------
>>> g = random_cell(np.random.default_rng(0))
>>> net = build(g, num_classes=10, C=4, N=3)
>>> len(block_specs(g, batch_size=1, image_size=16, C=4, N=3)) > 0
True
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from eznas_store.errors import ConfigError
from eznas_store.sources.spaces import nb201
from eznas_store.sources.spaces.base import SearchSpace
from eznas_store.sources.spaces.darts_genotype import (
    Genotype,
    Pairs,
    as_genotype,
    canonical,
    distance,
    from_naslib_key,
    mutate,
    parse_genotype,
    random_cell,
    to_naslib_key,
)
from eznas_store.sources.spaces.darts_ops import CONV_OPS, FactorizedReduce, ReLUConvBN, make_op

__all__ = ["SKELETONS", "SPACE", "SWAP_SPACE", "BlockSpec", "Network", "block_specs", "build", "build_swap",
           "count_params"]

STEM_MULTIPLIER = 3
#: channels of the images a stem-less network's first cell reads (SWAP's skeleton)
IMAGE_CHANNELS = 3
#: the named skeletons: ``eval`` DARTS's NetworkCIFAR, ``swap`` SWAP's stem-less network
SKELETONS: dict[str, str] = {
    "eval": "DARTS eval NetworkCIFAR: stem 3x3 conv 3->3C + BN, L cells (reductions at L//3, 2L//3), "
            "GAP, linear head",
    "swap": "SWAP's DARTS network (correlation.py's Network(3, 10, 1)): no stem, both inputs of the first cell "
            "the image, L cells (L=1: one reduction cell from genotype.reduce, 2C channels), GAP, linear head",
}


@dataclass(frozen=True)
class CellPlan:
    """One cell of the skeleton: its kind and channel counts (DARTS's bookkeeping)."""

    index: int
    reduction: bool
    reduction_prev: bool
    c_pp: int
    c_p: int
    c: int


def skeleton(g: Genotype, C: int, L: int, *, stem: bool = True) -> list[CellPlan]:
    """Cells of NetworkCIFAR(C, L): reductions at L//3 and 2L//3, channels doubling there;
    without ``stem`` the first cell reads the 3-channel image (SWAP's network)."""
    if C < 1 or L < 1:
        raise ConfigError(f"DARTS needs C >= 1 and N (layers) >= 1, got C={C}, N={L}")
    c_pp = c_p = STEM_MULTIPLIER * C if stem else IMAGE_CHANNELS
    c = C
    plans, reduction_prev = [], False
    for i in range(L):
        reduction = i in (L // 3, 2 * L // 3)
        c = 2 * c if reduction else c
        plans.append(CellPlan(i, reduction, reduction_prev, c_pp, c_p, c))
        c_pp, c_p = c_p, len(g.reduce_concat if reduction else g.normal_concat) * c
        reduction_prev = reduction
    return plans


def _dead_states(pairs: Pairs, concat: tuple[int, ...]) -> list[int]:
    used = {j for _, j in pairs} | set(concat)
    return [s for s in range(len(pairs) // 2 + 2) if s not in used]


class Cell(nn.Module):
    def __init__(self, g: Genotype, plan: CellPlan) -> None:
        super().__init__()
        self.pairs = g.reduce if plan.reduction else g.normal
        self.concat = g.reduce_concat if plan.reduction else g.normal_concat
        self.dead = _dead_states(self.pairs, self.concat)
        c = plan.c
        self.preprocess0 = (FactorizedReduce(plan.c_pp, c) if plan.reduction_prev
                            else ReLUConvBN(plan.c_pp, c))
        self.preprocess1 = ReLUConvBN(plan.c_p, c)
        self._ops = nn.ModuleList(
            make_op(op, c, 2 if plan.reduction and j < 2 else 1) for op, j in self.pairs
        )

    def forward(self, s1: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
        """``s1`` (the previous cell's output) first: hooks reading a cell's first input see
        the cells as a chain (AZ-NAS's ``F_{l-1} -> F_l``, ``collect.proxies.features``)."""
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for k in range(len(self.pairs) // 2):
            (_, j0), (_, j1) = self.pairs[2 * k], self.pairs[2 * k + 1]
            a = self._ops[2 * k](states[j0])
            b = self._ops[2 * k + 1](states[j1])
            states.append(a + b)
        out = torch.cat([states[i] for i in self.concat], dim=1)
        for s in self.dead:  # computed but unused: tie in with weight 0 (see module docstring)
            out = out + 0.0 * states[s].sum()
        return out


class Network(nn.Module):
    """DARTS's eval NetworkCIFAR without auxiliary head or drop-path; ``forward`` → logits.
    ``stem=False``: SWAP's network, the image itself is both inputs of the first cell."""

    def __init__(self, g: Genotype, *, num_classes: int, C: int, L: int, stem: bool = True) -> None:
        super().__init__()
        c_stem = STEM_MULTIPLIER * C
        self.stem = (nn.Sequential(nn.Conv2d(IMAGE_CHANNELS, c_stem, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(c_stem)) if stem else nn.Identity())
        plans = skeleton(g, C, L, stem=stem)
        self.cells = nn.ModuleList(Cell(g, p) for p in plans)
        last = plans[-1]
        c_out = len(g.reduce_concat if last.reduction else g.normal_concat) * last.c
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_out, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s1, s0)
        return self.classifier(self.global_pooling(s1).flatten(1))


def _check_structure(structure: str) -> None:
    if structure != "rcb":
        raise ConfigError(f"DARTS ops are ReLU-Conv-BN units: structure must be 'rcb', not {structure!r}")


def build(arch: str | Genotype, *, num_classes: int = 10, C: int = 16, N: int = 8,
          structure: str = "rcb") -> Network:
    """The untrained network of one genotype; ``N`` is the number of layers L."""
    _check_structure(structure)
    return Network(as_genotype(arch), num_classes=num_classes, C=C, L=N)


def build_swap(arch: str | Genotype, *, num_classes: int = 10, C: int = 3, N: int = 1,
               structure: str = "rcb") -> Network:
    """SWAP's stem-less network of one genotype (``swap`` skeleton; C=3, one layer as its paper)."""
    _check_structure(structure)
    return Network(as_genotype(arch), num_classes=num_classes, C=C, L=N, stem=False)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- block layout
@dataclass(frozen=True)
class BlockSpec(nb201.BlockSpec):
    """A predicted R-C-B block (shapes, sharing keys as in NB201) and what it belongs to."""

    role: str = ""


def _halve(h: int, where: str) -> int:
    if h % 2:
        raise ConfigError(f"DARTS reductions need even feature maps (FactorizedReduce): {where} is {h}×{h}")
    return h // 2


def _fr_blocks(c_in: int, c_out: int, h: int, in_key: str, out_key: str, role: str) -> list[BlockSpec]:
    h_out = _halve(h, f"the input of {role}")
    return [BlockSpec(c_in, c_out // 2, 1, 2, h, h_out, in_key, f"{out_key}.{half}", f"{role}.{half}")
            for half in ("a", "b")]


def _op_blocks(op: str, c: int, stride: int, h: int, in_key: str, out_key: str,
               role: str) -> list[BlockSpec]:
    if op == "skip_connect" and stride == 2:
        return _fr_blocks(c, c, h, in_key, out_key, role)
    if op not in CONV_OPS:
        return []
    h_out = h // stride
    units = CONV_OPS[op][2]
    specs = []
    for u in range(units):
        last = u == units - 1
        specs.append(BlockSpec(c, c, 1, stride if u == 0 else 1, h if u == 0 else h_out, h_out,
                               in_key if u == 0 else f"{role}.u{u - 1}",
                               out_key if last else f"{role}.u{u}", f"{role}.u{u}"))
    return specs


def _cell_blocks(g: Genotype, p: CellPlan, h_pp: int, h_p: int, first: str = "stem"
                 ) -> tuple[list[BlockSpec], int]:
    """One cell's blocks, and its output size; ``first`` names what the first cell reads."""
    i = p.index
    src0 = first if i < 2 else f"c{i - 2}"
    src1 = first if i == 0 else f"c{i - 1}"
    if p.reduction_prev:
        specs = _fr_blocks(p.c_pp, p.c, h_pp, src0, f"c{i}.s0", f"c{i}.pre0")
    else:
        specs = [BlockSpec(p.c_pp, p.c, 1, 1, h_pp, h_pp, src0, f"c{i}.s0", f"c{i}.pre0")]
    specs.append(BlockSpec(p.c_p, p.c, 1, 1, h_p, h_p, src1, f"c{i}.s1", f"c{i}.pre1"))
    h_out = _halve(h_p, f"the input of reduction cell {i}") if p.reduction else h_p
    for e, (op, j) in enumerate(g.reduce if p.reduction else g.normal):
        stride = 2 if p.reduction and j < 2 else 1
        specs += _op_blocks(op, p.c, stride, h_p if j < 2 else h_out, f"c{i}.s{j}",
                            f"c{i}.s{e // 2 + 2}", f"c{i}.e{e}.{op}")
    return specs, h_out


def block_specs(arch: str | Genotype, *, batch_size: int, image_size: int, C: int = 16, N: int = 8,
                structure: str = "rcb", stem: bool = True) -> list[BlockSpec]:
    """The blocks ``build(arch, C=C, N=N)`` executes on ``image_size`` images, in order
    (``stem=False``: ``build_swap``'s)."""
    del batch_size  # shapes are per sample; the batch is a run constant
    _check_structure(structure)
    g = as_genotype(arch)
    specs: list[BlockSpec] = []
    h_pp = h_p = image_size
    for p in skeleton(g, C, N, stem=stem):
        cell, h_out = _cell_blocks(g, p, h_pp, h_p, "stem" if stem else "image")
        specs += cell
        h_pp, h_p = h_p, h_out
    return specs


# ----------------------------------------------------------------------------- registration
def all_genotypes() -> Iterator[str]:
    """The DARTS space is not enumerable here (~10^11 cells even with normal == reduce)."""
    raise ConfigError("the DARTS space cannot be enumerated: give a benchmark table or a list of "
                      "genotypes (e.g. darts_1000_cifar10_valid.csv)")


def block_specs_swap(arch: str | Genotype, *, batch_size: int, image_size: int, C: int = 3, N: int = 1,
                     structure: str = "rcb") -> list[BlockSpec]:
    """The blocks ``build_swap(arch, C=C, N=N)`` executes."""
    return block_specs(arch, batch_size=batch_size, image_size=image_size, C=C, N=N, structure=structure,
                       stem=False)


SPACE = SearchSpace(
    name="darts",
    parse=parse_genotype,
    canonical=canonical,
    build=build,
    block_specs=block_specs,
    all_archs=all_genotypes,
    skeleton={"C": 16, "N": 8},
    random_cell=random_cell,
    mutate=mutate,
    from_naslib_key=from_naslib_key,
    to_naslib_key=to_naslib_key,
    suitezero_file_tags=("nasbench301", "nb301"),
    distance=distance,
    network=SKELETONS["eval"],
    proxy_networks={"swap": "darts-swap", "swap_reg": "darts-swap"},
    skeletons={"eval": "darts", "swap": "darts-swap"},
)

#: the same genotypes on SWAP's network (``--skeleton swap``): a skeleton variant of :data:`SPACE`
SWAP_SPACE = dataclasses.replace(SPACE, name="darts-swap", build=build_swap, block_specs=block_specs_swap,
                                 skeleton={"C": 3, "N": 1}, suitezero_file_tags=(), network=SKELETONS["swap"],
                                 proxy_networks={}, skeletons={})
