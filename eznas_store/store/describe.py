"""What every array of a store means, written into its own attributes (format 2).

Every array gets ``long_name`` and ``description`` (what it holds, its units or shape, and,
for tensors, how the terminal of the same kind follows from it). Arrays along ``network``
or ``block`` name the table columns that label those dims in a ``coordinates`` attribute
(the CF convention ``xarray.open_zarr`` decodes), so ``ds["act_D"]`` arrives with ``arch``,
``bench_index``, ... as coordinates. Tensor arrays also say where one block's tensor lies:
``offset`` (the block-table column of its start in the row) and ``block_shape`` (ints are
fixed sizes, the batch; strings name block-table columns).
"""

from __future__ import annotations

from typing import Any

from eznas_store.store.layout import ARRAY_FAMILY, FAMILIES, RAW_PREFIX, SHAPE_COLUMNS, WIDTH_COLUMNS, array_name
from eznas_store.store.plan import StorePlan
from eznas_store.terminals import STORED, split

#: table columns that label dim ``network`` / dim ``block`` (written as coordinates)
NETWORK_COORDS = ("arch", "bench_index", "n_blocks", "block_start")
BLOCK_COORDS = ("block_network", "block_index", *SHAPE_COLUMNS, *WIDTH_COLUMNS)

_PASSES = {"D": "D pass (the real image batch, data_batch)", "N": "N pass (Gaussian noise images)",
           "P": "P pass (data_batch + perturb_scale * noise)"}
_KINDS = {
    "wt": ("conv weight", "the block's conv weight"),
    "wtgrad": ("conv weight gradient", "d(sum of logits)/d(conv weight)"),
    "inpact": ("block input activation", "the block's input (rcb: the ReLU's input; cbr: the conv's input)"),
    "preactgrad": ("conv input gradient", "d(sum of logits)/d(conv input) (rcb: the ReLU's output)"),
    "act": ("block output activation", "the block's output (rcb: the BatchNorm's output)"),
    "actgrad": ("block output gradient", "d(sum of logits)/d(block output)"),
}
_SHAPES = {"weight": ("c_out", "c_in", "kernel", "kernel"), "input": ("c_in", "h_in", "w_in"),
           "output": ("c_out", "h_out", "w_out")}
_DERIVED = {
    "inpact": "preact_{x} = relu(inpact_{x}) (rcb; = inpact_{x} for cbr)",
    "preactgrad": "inpactgrad_{x} = preactgrad_{x} * (inpact_{x} > 0) (rcb; = preactgrad_{x} for cbr)",
}
#: ``{inpact}``/``{preactgrad}``: the raw P pass, ``raw_inpact_P`` or, where the store keeps P - D,
#: ``(inpact_P + inpact_D)``
_DERIVED_P = {
    "inpact": "preact_P = relu({inpact}) - relu(inpact_D) (rcb; {inpact} - inpact_D for cbr)",
    "preactgrad": "inpactgrad_P = {preactgrad} * ({inpact} > 0) - preactgrad_D * (inpact_D > 0) "
                  "(rcb; {preactgrad} - preactgrad_D for cbr)",
}
_TABLES = {
    "arch": ("architecture", "the network's architecture string in its search space"),
    "bench_index": ("benchmark index", "the network's row index in its benchmark table"),
    "n_blocks": ("number of blocks", "blocks of the network (rows of the block table)"),
    "block_start": ("first block", "position in dim block of the network's first block"),
    "complete": ("complete", "true once ingest wrote every tensor of the network"),
    "params": ("parameters", "number of trainable parameters"),
    "flops": ("FLOPs", "multiply-accumulates of one forward pass of one image"),
    "seconds": ("collection seconds", "wall-clock seconds ingest spent collecting the network"),
    "block_network": ("network of the block", "position in dim network of the network the block belongs to"),
    "block_index": ("block position", "the block's position within its network (execution order, from 0)"),
    "c_in": ("input channels", "channels of the block's input"),
    "c_out": ("output channels", "channels of the block's output"),
    "kernel": ("kernel size", "the conv's kernel size (square)"),
    "stride": ("stride", "the conv's stride"),
    "h_in": ("input height", "height of the block's input feature map (pixels)"),
    "h_out": ("output height", "height of the block's output feature map (pixels)"),
    "w_in": ("input width", "width of the block's input feature map (pixels; maps are square)"),
    "w_out": ("output width", "width of the block's output feature map (pixels; maps are square)"),
    "data_batch": ("image batch", "the images of the D pass (sample, channel, y, x), normalised"),
    "data_labels": ("image labels", "class labels of data_batch"),
    "proxy": ("proxy name", "hand-crafted proxies computed at ingest"),
    "proxy_value": ("proxy value", "hand-crafted proxy values (network x proxy), NaN where one failed"),
    "proxy_reason": ("proxy failure", "why a proxy value is NaN ('' where it is not)"),
}


def array_attributes(name: str, plan: StorePlan, dims: tuple[str, ...]) -> dict[str, Any]:
    """The attributes of array ``name`` of a store made for ``plan``, with dims ``dims``."""
    stored = {array_name(s, plan.p_difference): s for s in STORED}
    if name in stored:
        attrs = _tensor(stored[name], plan)
    elif name in _TABLES:
        long_name, text = _TABLES[name]
        attrs = {"long_name": long_name, "description": text}
    elif name.startswith("off_") and name[4:] in FAMILIES:
        fam = name[4:]
        arrays = ", ".join(array_name(s, plan.p_difference) for s in STORED if ARRAY_FAMILY[s] == fam)
        attrs = {"long_name": f"offset of the block's {fam} tensors",
                 "description": f"element offset in its network's row where the block's tensor of {arrays} "
                                "starts (equal offsets: one tensor shared by several blocks)"}
    elif name == "accuracy":
        attrs = {"long_name": "accuracy (fitness target)",
                 "description": f"benchmark column {plan.accuracy_column!r} (percent): the fitness target"}
    elif name in plan.accuracies:
        attrs = {"long_name": f"accuracy {name}", "description": f"benchmark column {name!r} (percent)"}
    else:
        attrs = {"long_name": name, "description": name}
    coords = _coordinates(name, dims)
    if coords:
        attrs["coordinates"] = coords
    return attrs


def _coordinates(name: str, dims: tuple[str, ...]) -> str:
    """The table columns labelling ``dims`` (none for a column that is itself one)."""
    out: list[str] = []
    if "network" in dims:
        out += [c for c in NETWORK_COORDS if c != name]
    if "block" in dims:
        out += [c for c in BLOCK_COORDS if c != name]
    return " ".join(out) if name not in (*NETWORK_COORDS, *BLOCK_COORDS) else ""


def _tensor(stored: str, plan: StorePlan) -> dict[str, Any]:
    """A stored tensor array: what it holds, where one block's tensor lies, its terminal."""
    kind, x = split(stored)
    fam = ARRAY_FAMILY[stored]
    family = FAMILIES[fam][1]
    B = plan.collect.batch_size
    shape: list[int | str] = [*([] if family == "weight" else [B]), *_SHAPES[family]]
    long_name, what = _KINDS[kind]
    text = (f"{what}{'' if x is None else ', ' + _PASSES[x]}; float32. One row per network: each block's "
            f"tensor of shape ({', '.join(map(str, shape))}) flattened (C order) from column off_{fam} "
            "of the block table, zero-padded after the network's last block.")
    if x == "P" and plan.p_difference:
        terminal = stored
        text += (f" Equals the terminal {stored}: the P - D difference itself, kept instead of the raw P pass "
                 f"because the codec is lossy (the raw P pass is {stored} + {kind}_D).")
    elif x == "P":
        terminal = ""
        text += f" RAW P pass, not a terminal: the terminal {stored} is {RAW_PREFIX}{stored} - {kind}_D."
    else:
        terminal = stored
        text += f" Equals the terminal {stored}."
    if kind in _DERIVED and x is not None:
        raw_p = {k: f"({k}_P + {k}_D)" if plan.p_difference else f"{RAW_PREFIX}{k}_P" for k in _DERIVED}
        rule = _DERIVED[kind].format(x=x) if x != "P" else _DERIVED_P[kind].format(**raw_p)
        text += " Derived from it: " + rule + "."
    tag = "" if x is None else f" ({x} pass{(' - D' if plan.p_difference else ', raw') if x == 'P' else ''})"
    return {"long_name": long_name + tag,
            "description": text, "terminal": terminal, "offset": f"off_{fam}", "block_shape": shape}
