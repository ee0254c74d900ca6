"""``score_model``: score any PyTorch model with an evolved program or a named proxy.

For people who want to use a result inside their own NAS: no store, no benchmark. The
model's ReLU→Conv2d→BatchNorm2d ``nn.Sequential`` units are the blocks (or
Conv→BN→ReLU with ``structure="cbr"``); a model without such units (an ordinary CNN
whose ReLUs are ``F.relu`` calls) gets its Conv2d→BatchNorm2d pairs as blocks (see
:func:`score_model`). The model is deep-copied and re-initialised as EZNAS does, so the
caller's model is left untouched.

Example
-------
>>> import torch, eznas_store
>>> from eznas_store.sources.spaces.nb201 import build
>>> net = build("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|", num_classes=10)
>>> score = eznas_store.score_model(net, torch.randn(4, 3, 32, 32), "eznas-a")  # doctest: +SKIP
>>> score.reason is None  # a NaN score says why in .reason              # doctest: +SKIP
"""

from __future__ import annotations

import copy
import difflib
import math
import os
import warnings

import torch
from torch import nn

from eznas_store.errors import ConfigError, UnknownNameError


class ModelScore(float):
    """A ``float`` score; ``reason`` says why it is NaN (None when it is finite)."""

    reason: str | None

    def __new__(cls, value: float, reason: str | None = None) -> "ModelScore":
        obj = super().__new__(cls, value)
        obj.reason = None if math.isfinite(value) else (reason or "the score is not finite")
        return obj

    def __repr__(self) -> str:
        return f"nan ({self.reason})" if self.reason else float.__repr__(self)


class _NoReLU(nn.ReLU):
    """The empty ReLU slot of a Conv2d→BatchNorm2d pair taken as a C-B(-R) block: the identity."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def score_model(model: nn.Module, batch: torch.Tensor, program_or_proxy, *, labels: torch.Tensor | None = None,
                seed: int = 0, structure: str = "rcb", device: str | torch.device = "cpu") -> ModelScore:
    """The model's score: a program (``Program``, JSON path or name like ``"eznas-a"``) or a
    hand-crafted proxy name (``"synflow"``, ``"nwot"``, ...). A ``ModelScore`` (a float):
    NaN when the program or proxy fails on this model, with ``.reason`` saying why (and a
    ``RuntimeWarning``); an unknown name is an ``UnknownNameError`` listing programs and proxies.

    Blocks for statistics programs: every ``nn.Sequential`` of exactly ReLU, Conv2d,
    BatchNorm2d (``structure="rcb"``; Conv2d, BatchNorm2d, ReLU for ``"cbr"``). A model with
    none (e.g. ReLUs applied as ``F.relu`` in ``forward``) instead gets one block per Conv2d
    whose output goes straight, and only, into a BatchNorm2d; such a block has no ReLU of
    its own, so it is recorded as C-B-R records its units: the block input is the conv's
    input (``inpact = preact``, ``inpactgrad = preactgrad``), ``act`` the BN's output before
    any ReLU. That is exact, not an approximation: a functional ReLU before the conv is
    outside the block and shows in the values the conv reads. The pairing is checked by
    running the model (each conv and BN once, the BN reading the conv's output tensor, the
    model's output unchanged when the pair is made one module); failing that, or with no
    pair at all, the error says why in one line.
    """
    from eznas_store.collect import PROXIES
    from eznas_store.programs import Program

    if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
        raise ConfigError("batch must be an image tensor of shape (B, 3, H, W)")
    if isinstance(program_or_proxy, str) and program_or_proxy in PROXIES:
        return _scored(*_proxy_value(program_or_proxy, model, batch, labels, seed, device))
    program = program_or_proxy if isinstance(program_or_proxy, Program) else _load(program_or_proxy)
    return _scored(*_program_value(program, model, batch, seed=seed, structure=structure, device=device))


def _scored(value: float, reason: str | None) -> ModelScore:
    score = ModelScore(float(value), reason)
    if score.reason:
        warnings.warn(f"score_model: NaN: {score.reason}", RuntimeWarning, stacklevel=3)
    return score


def _load(name_or_path):
    """A registered program or a program file; a name that is neither lists what exists."""
    from eznas_store.collect import PROXY_NAMES
    from eznas_store.programs import load_program
    from eznas_store.programs import NAMED_PROGRAMS

    if isinstance(name_or_path, (str, os.PathLike)) and str(name_or_path) not in NAMED_PROGRAMS \
            and not os.path.isfile(name_or_path):
        known = [*sorted(NAMED_PROGRAMS), *PROXY_NAMES]
        close = difflib.get_close_matches(str(name_or_path), known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UnknownNameError(
            f"{str(name_or_path)!r} is neither a program file, a registered program nor a proxy ({hint}"
            f"programs: {', '.join(sorted(NAMED_PROGRAMS))}; proxies: {', '.join(PROXY_NAMES)})")
    return load_program(name_or_path)


def _proxy_value(name: str, model: nn.Module, batch: torch.Tensor, labels, seed: int, device
                 ) -> tuple[float, str | None]:
    from eznas_store.collect import PROXIES
    from eznas_store.collect import compute_all

    if PROXIES[name].needs_labels and labels is None:
        raise ConfigError(f"proxy {name!r} needs labels (pass the batch's labels)")
    return compute_all(model, batch, labels, seed=seed, names=[name], device=device)[name]


def _program_value(program, model: nn.Module, batch: torch.Tensor, *, seed: int, structure: str,
                   device) -> tuple[float, str | None]:
    from eznas_store.collect import collect, find_blocks
    from eznas_store.storeless import score_collected
    from eznas_store.terminals import CollectConfig

    if structure not in ("rcb", "cbr"):
        raise ConfigError(f"structure must be rcb or cbr, got {structure!r}")
    net = copy.deepcopy(model)
    if not find_blocks(net, structure):
        net, structure = _conv_bn_blocks(net, batch, structure), "cbr"
    stats = collect(net, batch, config=CollectConfig(batch_size=batch.shape[0], structure=structure, seed=seed),
                    init_seed=seed, device=device)
    if not stats.blocks:
        raise ConfigError(f"the model's {structure} blocks never ran in its forward pass")
    res = score_collected(stats.blocks, [program], structure=structure)
    return float(res.scores[0, 0]), res.reasons[0]


def _conv_bn_blocks(net: nn.Module, batch: torch.Tensor, structure: str) -> nn.Module:
    """``net`` with each Conv2d→BatchNorm2d pair made one C-B block (``_NoReLU`` in the ReLU slot)."""
    units = ("ReLU, Conv2d, BatchNorm2d" if structure == "rcb" else "Conv2d, BatchNorm2d, ReLU")
    pairs = _traced_pairs(net, batch)
    if not pairs:
        raise ConfigError(f"the model has no blocks: no nn.Sequential({units}) units and no Conv2d whose "
                          "output goes straight into a BatchNorm2d (statistics programs read per-block "
                          "tensors; score it with a hand-crafted proxy instead)")
    rewritten = copy.deepcopy(net)
    slots = _slots(rewritten)
    mods = dict(rewritten.named_modules())
    for conv_name, bn_name in pairs:
        if len(slots.get(id(mods[conv_name]), ())) != 1 or len(slots.get(id(mods[bn_name]), ())) != 1:
            raise ConfigError(f"Conv2d {conv_name!r} -> BatchNorm2d {bn_name!r} cannot be made one block: "
                              "a module registered twice is shared")
        conv, bn = mods[conv_name], mods[bn_name]
        (parent, attr), = slots[id(conv)]
        setattr(parent, attr, nn.Sequential(conv, bn, _NoReLU()))
        (parent, attr), = slots[id(bn)]
        setattr(parent, attr, nn.Identity())
    if not _same_output(net, rewritten, batch):
        raise ConfigError("the model's Conv2d→BatchNorm2d pairs cannot be taken as blocks: a conv's output "
                          "is also used elsewhere (the model's output changes when each pair is one module)")
    return rewritten


def _traced_pairs(net: nn.Module, batch: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, BN name) where the BN ran once on the tensor the conv, run once, returned."""
    names = {id(m): n for n, m in net.named_modules()}
    outputs: dict[str, list] = {}
    inputs: dict[str, list] = {}

    def conv_out(mod, args, out) -> None:
        outputs.setdefault(names[id(mod)], []).append(out)

    def bn_in(mod, args) -> None:
        inputs.setdefault(names[id(mod)], []).append(args[0])

    handles = [m.register_forward_hook(conv_out) for m in net.modules() if isinstance(m, nn.Conv2d)]
    handles += [m.register_forward_pre_hook(bn_in) for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    try:
        with torch.no_grad():
            net.train()(batch)
    finally:
        for h in handles:
            h.remove()
    convs = {n: outs[0] for n, outs in outputs.items() if len(outs) == 1}
    pairs = []
    for bn_name, ins in inputs.items():
        if len(ins) == 1:
            pairs += [(c, bn_name) for c, out in convs.items() if out is ins[0]]
    return pairs


def _slots(net: nn.Module) -> dict[int, list[tuple[nn.Module, str]]]:
    """Where each module is registered: ``id(module) -> [(parent, attribute name)]``."""
    out: dict[int, list[tuple[nn.Module, str]]] = {}
    for parent in net.modules():
        for attr, child in parent.named_children():
            out.setdefault(id(child), []).append((parent, attr))
    return out


def _same_output(a: nn.Module, b: nn.Module, batch: torch.Tensor) -> bool:
    """Whether two models with the same weights give the same output on ``batch`` (train mode)."""
    with torch.no_grad():
        ya, yb = copy.deepcopy(a).train()(batch), copy.deepcopy(b).train()(batch)
    return isinstance(ya, torch.Tensor) and isinstance(yb, torch.Tensor) and ya.shape == yb.shape \
        and torch.equal(ya, yb)
