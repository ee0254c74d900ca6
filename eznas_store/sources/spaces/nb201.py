"""NAS-Bench-201: cell strings, the 15,625-cell space, and the network as the benchmark trained it.

Everything the package knows about NB201 lives here and reaches the stages through
:data:`SPACE`: parsing and canonical strings, enumeration and cell indices, random cells
and one-edge mutation (for aging evolution), NASLib's key strings (for Suite-Zero).

The builder follows NB201's ``TinyNetwork`` (Dong & Yang, ICLR 2020): stem Conv3×3+BN,
three stages of ``N`` cells (C, 2C, 4C channels) joined by two residual reduction blocks,
then BN-ReLU, global average pooling and a linear head. Every module is named and ordered
as in the benchmark so that parameter counts match the published table exactly.

``block_specs`` predicts, without running anything, the R-C-B blocks a network executes
(shapes and which blocks share a tensor); the store lays out its arrays from it and the
collector checks the prediction against what the network really did.

Example
-------
>>> cell = parse_cell("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_3x3~2|")
>>> len(block_specs(cell, batch_size=1, image_size=32))
34
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from eznas_store.errors import ConfigError, InvalidArchError
from eznas_store.sources.spaces.base import SearchSpace
from eznas_store.sources.spaces.layers import Zero

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
CONV_OPS: dict[str, int] = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
#: (to_node, from_node) of the six edges, in cell-string order
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
STRUCTURES: tuple[str, ...] = ("rcb", "cbr")
N_CELLS = 15_625


@dataclass(frozen=True)
class Cell:
    """A parsed NB201 cell: the op on each of the six edges, in cell-string order."""

    ops: tuple[str, ...]

    def __str__(self) -> str:
        return format_cell(self.ops)

    def op(self, to_node: int, from_node: int) -> str:
        return self.ops[EDGES.index((to_node, from_node))]


def format_cell(ops: tuple[str, ...] | list[str]) -> str:
    """The canonical cell string of six edge ops."""
    o = list(ops)
    return f"|{o[0]}~0|+|{o[1]}~0|{o[2]}~1|+|{o[3]}~0|{o[4]}~1|{o[5]}~2|"


def parse_cell(text: str) -> Cell:
    """Parse ``|op~0|+|op~0|op~1|+|op~0|op~1|op~2|``; errors name the token and its position."""
    if not isinstance(text, str):
        raise InvalidArchError(f"a cell string must be text, got {type(text).__name__}")
    s = text.strip()
    offset = len(text) - len(text.lstrip())
    groups = s.split("+")
    if len(groups) != 3:
        raise InvalidArchError(
            f"invalid NB201 cell {text!r}: expected 3 node groups separated by '+', found {len(groups)}"
        )
    ops: list[str] = []
    pos = offset
    for node, group in enumerate(groups, start=1):
        if not (group.startswith("|") and group.endswith("|")) or len(group) < 2:
            raise InvalidArchError(
                f"invalid NB201 cell {text!r}: node group {group!r} at position {pos} "
                "must start and end with '|'"
            )
        tokens = group[1:-1].split("|")
        if len(tokens) != node:
            raise InvalidArchError(
                f"invalid NB201 cell {text!r}: node {node} at position {pos} needs {node} "
                f"edge(s), found {len(tokens)}"
            )
        tpos = pos + 1
        for k, token in enumerate(tokens):
            op, sep, src = token.partition("~")
            if not sep:
                raise InvalidArchError(
                    f"invalid NB201 cell {text!r}: token {token!r} at position {tpos} is not 'op~input'"
                )
            if op not in OPS:
                raise InvalidArchError(
                    f"invalid NB201 cell {text!r}: unknown operation {op!r} at position {tpos} "
                    f"(known: {', '.join(OPS)})"
                )
            if src != str(k):
                raise InvalidArchError(
                    f"invalid NB201 cell {text!r}: token {token!r} at position {tpos} must read "
                    f"from node {k}, not {src!r}"
                )
            ops.append(op)
            tpos += len(token) + 1
        pos += len(group) + 1
    return Cell(tuple(ops))


def all_cells() -> Iterator[str]:
    """All 15,625 cell strings (5 ops on 6 edges), in lexicographic op-index order."""
    for ops in itertools.product(OPS, repeat=6):
        yield format_cell(ops)


# ----------------------------------------------------------------------------- walking the space
def cell_index(cell: str) -> int:
    """Position of a cell in :func:`all_cells` (0..15624): its ops as base-5 digits."""
    index = 0
    for op in parse_cell(cell).ops:
        index = index * len(OPS) + OPS.index(op)
    return index


def cell_from_index(index: int) -> str:
    """The cell at ``index`` of :func:`all_cells`."""
    if not 0 <= index < N_CELLS:
        raise ConfigError(f"an NB201 cell index is in 0..{N_CELLS - 1}, got {index}")
    ops = []
    for _ in EDGES:
        index, k = divmod(index, len(OPS))
        ops.append(OPS[k])
    return format_cell(ops[::-1])


def random_cell(rng: np.random.Generator) -> str:
    """A uniformly random NB201 cell string."""
    return format_cell([OPS[int(i)] for i in rng.integers(0, len(OPS), size=len(EDGES))])


def mutate(cell: str, rng: np.random.Generator) -> str:
    """Change one of the six edges (uniform) to one of the four other ops (uniform)."""
    ops = list(parse_cell(cell).ops)
    edge = int(rng.integers(len(ops)))
    others = [op for op in OPS if op != ops[edge]]
    ops[edge] = others[int(rng.integers(len(others)))]
    return format_cell(ops)


# ----------------------------------------------------------------------------- NASLib keys
#: NASLib's op index → NB201 op name (``naslib/search_spaces/nasbench201/conversions.py``)
NB201_KEY_OPS: tuple[str, ...] = (
    "skip_connect", "none", "nor_conv_3x3", "nor_conv_1x1", "avg_pool_3x3",
)
#: key position of each cell-string edge: the string lists o0 | o1, o3 | o2, o4, o5
_CELL_ORDER: tuple[int, ...] = (0, 1, 3, 2, 4, 5)
_KEY_RE = re.compile(r"^\(\s*([0-4])\s*,\s*([0-4])\s*,\s*([0-4])\s*,\s*([0-4])\s*,\s*([0-4])\s*,\s*([0-4])\s*\)$")


def nb201_key_to_cell(key: str) -> str:
    """NASLib's key ``"(4, 0, 3, 1, 4, 3)"`` → ``|avg_pool_3x3~0|+|skip_connect~0|none~1|+|nor_conv_1x1~0|avg_pool_3x3~1|nor_conv_1x1~2|``.

    One op index per edge (1,2),(1,3),(1,4),(2,3),(2,4),(3,4) (NASLib numbers the nodes
    1..4); the cell string runs (1,2) | (1,3),(2,3) | (1,4),(2,4),(3,4), so o3 comes
    before o2 (NASLib ``convert_op_indices_to_str``).
    """
    m = _KEY_RE.match(str(key).strip())
    if m is None:
        raise InvalidArchError(
            f"{key!r} is not a NASLib NB201 key: expected six op indices 0..4 like "
            "'(4, 0, 3, 1, 4, 3)'"
        )
    o = [NB201_KEY_OPS[int(g)] for g in m.groups()]
    return f"|{o[0]}~0|+|{o[1]}~0|{o[3]}~1|+|{o[2]}~0|{o[4]}~1|{o[5]}~2|"


def nb201_cell_to_key(cell: str) -> str:
    """Inverse of :func:`nb201_key_to_cell`: a NB201 cell string → NASLib's key string."""
    ops = parse_cell(cell).ops  # cell-string order: (1,2) (1,3) (2,3) (1,4) (2,4) (3,4)
    idx = [0] * 6
    for pos_in_string, key_pos in enumerate(_CELL_ORDER):
        idx[key_pos] = NB201_KEY_OPS.index(ops[pos_in_string])
    return "(" + ", ".join(str(i) for i in idx) + ")"


# ----------------------------------------------------------------------------- modules
class ReLUConvBN(nn.Module):
    """NB201's conv op; ``structure='cbr'`` reorders it to Conv→BN→ReLU (EZNAS Fig. 3)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding: int,
                 structure: str = "rcb") -> None:
        super().__init__()
        conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        bn = nn.BatchNorm2d(c_out, affine=True, track_running_stats=True)
        relu = nn.ReLU(inplace=False)
        self.op = nn.Sequential(relu, conv, bn) if structure == "rcb" else nn.Sequential(conv, bn, relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


def make_op(name: str, c: int, structure: str) -> nn.Module:
    """An edge op inside a normal cell (stride 1, C_in == C_out, as NB201 cells always are)."""
    if name == "none":
        return Zero(1)
    if name == "skip_connect":
        return nn.Identity()
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    k = CONV_OPS[name]
    return ReLUConvBN(c, c, k, 1, k // 2, structure)


class InferCell(nn.Module):
    def __init__(self, cell: Cell, c: int, structure: str) -> None:
        super().__init__()
        self.layers = nn.ModuleList(make_op(op, c, structure) for op in cell.ops)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        e = 0
        for to_node in (1, 2, 3):
            total = None
            for from_node in range(to_node):
                y = self.layers[e](nodes[from_node])
                total = y if total is None else total + y
                e += 1
            nodes.append(total)
        return nodes[-1]


class ResNetBasicblock(nn.Module):
    """NB201's reduction block: two 3×3 conv ops, shortcut AvgPool2d(2)+Conv1×1 (no BN)."""

    def __init__(self, c_in: int, c_out: int, structure: str) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, structure)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, structure)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )
        self.out_dim = c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class TinyNetwork(nn.Module):
    """The NB201 macro skeleton; ``forward`` returns logits only."""

    def __init__(self, cell: Cell, *, num_classes: int, C: int = 16, N: int = 5,
                 structure: str = "rcb") -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, C, kernel_size=3, padding=1, bias=False), nn.BatchNorm2d(C))
        channels = [C] * N + [C * 2] + [C * 2] * N + [C * 4] + [C * 4] * N
        reductions = [False] * N + [True] + [False] * N + [True] + [False] * N
        cells: list[nn.Module] = []
        c_prev = C
        for c_curr, reduction in zip(channels, reductions):
            cells.append(ResNetBasicblock(c_prev, c_curr, structure) if reduction
                         else InferCell(cell, c_curr, structure))
            c_prev = c_curr
        self.cells = nn.ModuleList(cells)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for cell in self.cells:
            x = cell(x)
        x = self.global_pooling(self.lastact(x))
        return self.classifier(x.flatten(1))


def build(arch: str | Cell, *, num_classes: int, C: int = 16, N: int = 5,
          structure: str = "rcb") -> TinyNetwork:
    """The benchmark's network for one cell (untrained; the collector re-initialises it)."""
    if structure not in STRUCTURES:
        raise InvalidArchError(f"unknown block structure {structure!r} (known: {', '.join(STRUCTURES)})")
    cell = arch if isinstance(arch, Cell) else parse_cell(arch)
    return TinyNetwork(cell, num_classes=num_classes, C=C, N=N, structure=structure)


class SwapNetwork(nn.Module):
    """A cheap stem-less NB201 network in the spirit of SWAP's DARTS network (one cell, no stem):
    the image through ReLU-1x1 conv-BN to ``C`` channels (as a DARTS cell's preprocessing),
    ``N`` NB201 cells at ``C`` channels and full resolution, global average pooling and a
    linear head. Built so SWAP (and other proxies) cost well under a second per NB201 cell;
    ``stride`` 2 halves the resolution in the preprocessing (as a DARTS reduction cell's
    16x16 output), a quarter of the cost."""

    def __init__(self, cell: Cell, *, num_classes: int, C: int = 3, N: int = 1, structure: str = "rcb",
                 stride: int = 1) -> None:
        super().__init__()
        self.preprocess = ReLUConvBN(3, C, 1, stride, 0, structure)
        self.cells = nn.ModuleList(InferCell(cell, C, structure) for _ in range(N))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(x)
        for cell in self.cells:
            x = cell(x)
        return self.classifier(self.global_pooling(x).flatten(1))


def build_swap(arch: str | Cell, *, num_classes: int = 10, C: int = 3, N: int = 1,
               structure: str = "rcb", stride: int = 1) -> SwapNetwork:
    """The cheap stem-less network of one cell (:class:`SwapNetwork`; C=3, one cell, as SWAP's DARTS one)."""
    if structure not in STRUCTURES:
        raise InvalidArchError(f"unknown block structure {structure!r} (known: {', '.join(STRUCTURES)})")
    if C < 1 or N < 1 or stride not in (1, 2):
        raise ConfigError(f"the stem-less NB201 network needs C >= 1, N >= 1 and stride 1 or 2, got C={C}, N={N}, "
                          f"stride={stride}")
    cell = arch if isinstance(arch, Cell) else parse_cell(arch)
    return SwapNetwork(cell, num_classes=num_classes, C=C, N=N, structure=structure, stride=stride)


# ----------------------------------------------------------------------------- block layout
@dataclass(frozen=True)
class BlockSpec:
    """One R-C-B (or C-B-R) block in execution order, predicted from the cell alone.

    ``input_key`` / ``output_key`` name the tensor a block reads and the node its output
    is summed into: blocks with the same ``input_key`` see the same input tensor, and (for
    ``rcb``) blocks with the same ``output_key`` receive the same output gradient, so the
    store keeps one copy of each.
    """

    c_in: int
    c_out: int
    kernel: int
    stride: int
    h_in: int
    h_out: int
    input_key: str
    output_key: str

    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in, self.kernel, self.kernel)

    def input_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.c_in, self.h_in, self.h_in)

    def output_shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, self.c_out, self.h_out, self.h_out)


def block_specs(arch: str | Cell, *, batch_size: int, image_size: int, C: int = 16, N: int = 5,
                structure: str = "rcb") -> list[BlockSpec]:
    """The blocks ``build(arch)`` executes, in order, with shapes and sharing keys."""
    del batch_size  # shapes below are per sample; the batch is a run constant
    cell = arch if isinstance(arch, Cell) else parse_cell(arch)
    specs: list[BlockSpec] = []
    channels = [C] * N + [C * 2] + [C * 2] * N + [C * 4] + [C * 4] * N
    reductions = [False] * N + [True] + [False] * N + [True] + [False] * N
    h = image_size
    c_prev = C
    for layer, (c, red) in enumerate(zip(channels, reductions)):
        if red:
            h_out = (h - 1) // 2 + 1
            specs.append(BlockSpec(c_prev, c, 3, 2, h, h_out, f"L{layer}.in", f"L{layer}.a"))
            specs.append(BlockSpec(c, c, 3, 1, h_out, h_out, f"L{layer}.a", f"L{layer}.b"))
            h = h_out
        else:
            for (to_node, from_node), op in zip(EDGES, cell.ops):
                if op in CONV_OPS:
                    k = CONV_OPS[op]
                    out_key = f"L{layer}.n{to_node}" if structure == "rcb" else f"L{layer}.e{to_node}{from_node}"
                    specs.append(BlockSpec(c, c, k, 1, h, h, f"L{layer}.n{from_node}", out_key))
        c_prev = c
    return specs


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- registration
SPACE = SearchSpace(
    name="nb201",
    parse=parse_cell,
    canonical=lambda text: str(parse_cell(text)),
    build=build,
    block_specs=block_specs,
    all_archs=all_cells,
    skeleton={"C": 16, "N": 5},
    n_cells=N_CELLS,
    cell_at=cell_from_index,
    index_of=cell_index,
    random_cell=random_cell,
    mutate=mutate,
    from_naslib_key=nb201_key_to_cell,
    to_naslib_key=nb201_cell_to_key,
    suitezero_file_tags=("nasbench201", "nb201"),
)
