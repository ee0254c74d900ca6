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
    "proxy": ("proxy name", "hand-crafted proxies computed at ingest (their protocols: proxy_value's "
                            "attribute 'proxies')"),
    "label_set": ("label set", "the classifier heads proxies were computed with: one per label set (the "
                               "accuracy it predicts: label_set_accuracy)"),
    "label_set_classes": ("classes of the head", "output classes of the label set's classifier head"),
    "label_set_accuracy": ("accuracy column of the label set", "the accuracy column (a variable of this store) "
                                                               "a proxy under this head predicts"),
    "suitezero_proxy": ("Suite-Zero proxy name", "NASLib's proxies joined from NAS-Bench-Suite-Zero (not computed)"),
}
#: tables written only in a store with statistics: they label dim network there
_STATISTICS_COORDS = ("n_blocks", "block_start")


def array_attributes(name: str, plan: StorePlan, dims: tuple[str, ...],
                     proxy_info: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The attributes of array ``name`` of a store made for ``plan``, with dims ``dims``;
    ``proxy_info``: per proxy its card (summary, protocol, head, images), kept on ``proxy_value``."""
    stored = {array_name(s, plan.p_difference): s for s in STORED}
    if name in stored:
        attrs = _tensor(stored[name], plan)
    elif name in ("proxy_value", "proxy_reason", "suitezero_value"):
        attrs = _proxy_attributes(name, plan, proxy_info)
    elif name == "complete" and not plan.statistics:
        attrs = {"long_name": "complete", "description": "true once every proxy of the network was written"}
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
    coords = _coordinates(name, dims, plan.statistics)
    if coords:
        attrs["coordinates"] = coords
    return attrs


def _proxy_attributes(name: str, plan: StorePlan, proxy_info: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    """``proxy_value``, ``proxy_reason`` and ``suitezero_value``: what they hold, along which
    label sets, and (on ``proxy_value``) each proxy's card."""
    heads = ", ".join(f"{n} ({c} classes, predicts {col})" for n, c, col in plan.heads())
    where = (f"per label set (dim label_set: {heads})" if plan.label_sets
             else f"with the store's classifier head ({heads})")
    if name == "suitezero_value":
        return {"long_name": "Suite-Zero proxy value",
                "description": f"NASLib's proxy values joined from NAS-Bench-Suite-Zero ({plan.suitezero or 'file'}) "
                               "by cell, per label set's Suite-Zero task; NaN where the file lacks the cell. Not "
                               "computed here (another init, batch and code)", "source": plan.suitezero}
    if name == "proxy_reason":
        return {"long_name": "proxy failure", "description": f"why proxy_value is NaN ('' where it is not), {where}"}
    info = dict(proxy_info or {})
    free = [p for p in plan.proxies if "free" in str(info.get(p, {}).get("head", ""))]
    return {"long_name": "proxy value",
            "description": f"hand-crafted zero-cost proxy values of untrained networks (float64), {where}; NaN "
                           "where one failed (proxy_reason says why). A head-free proxy is computed once, with "
                           "the first label set's head, and repeated along label_set. Each network is "
                           "initialised from its own seed (collect.seed, network). Each proxy reads the first 'images' (its "
                           "card in 'proxies') of data_batch in a proxies-only store; in a store with statistics, of "
                           "data_batch unless proxy_batch_size is set or a proxy reads more images than it holds, "
                           "then of their own seeded sample of the dataset (not stored)",
            "proxies": info, "head_free": free, "per_label_set": [p for p in plan.proxies if p not in free]}


def _coordinates(name: str, dims: tuple[str, ...], statistics: bool = True) -> str:
    """The table columns labelling ``dims`` (none for a column that is itself one); a proxies-only
    store has no ``n_blocks``/``block_start``."""
    out: list[str] = []
    if "network" in dims:
        out += [c for c in NETWORK_COORDS if c != name and (statistics or c not in _STATISTICS_COORDS)]
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
