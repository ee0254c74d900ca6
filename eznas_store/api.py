"""``score_model``: score any PyTorch model with an evolved program or a named proxy.

For people who want to use a result inside their own NAS: no store, no benchmark. The
model's ReLU→Conv2d→BatchNorm2d ``nn.Sequential`` units are the blocks (or
Conv→BN→ReLU with ``structure="cbr"``); the model is deep-copied and re-initialised as
EZNAS does, so the caller's model is left untouched.

Example
-------
>>> import torch, eznas_store
>>> from eznas_store.sources.spaces.nb201 import build
>>> net = build("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|", num_classes=10)
>>> score = eznas_store.score_model(net, torch.randn(4, 3, 32, 32), "eznas-a")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from eznas_store.errors import ConfigError


def score_model(model: nn.Module, batch: torch.Tensor, program_or_proxy, *, labels: torch.Tensor | None = None,
                seed: int = 0, structure: str = "rcb", device: str | torch.device = "cpu") -> float:
    """The model's score: a program (``Program``, JSON path or name like ``"eznas-a"``) or a
    hand-crafted proxy name (``"synflow"``, ``"nwot"``, ...). NaN if the program is invalid."""
    from eznas_store.collect.statistics import collect
    from eznas_store.terminals import CollectConfig
    from eznas_store.programs.tree import Program
    from eznas_store.programs.codec import load_program
    from eznas_store.collect.proxies.registry import PROXIES
    from eznas_store.collect.proxies.runner import compute_proxy
    from eznas_store.fitness.storeless import score_collected

    if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
        raise ConfigError("batch must be an image tensor of shape (B, 3, H, W)")
    if isinstance(program_or_proxy, str) and program_or_proxy in PROXIES:
        return compute_proxy(program_or_proxy, model, batch, labels, seed=seed, device=device)
    program = program_or_proxy if isinstance(program_or_proxy, Program) else load_program(program_or_proxy)
    net = copy.deepcopy(model)
    stats = collect(net, batch, config=CollectConfig(batch_size=batch.shape[0], structure=structure, seed=seed),
                    init_seed=seed, device=device)
    if not stats.blocks:
        raise ConfigError(f"the model has no {structure} blocks (nn.Sequential of "
                          f"{'ReLU, Conv2d, BatchNorm2d' if structure == 'rcb' else 'Conv2d, BatchNorm2d, ReLU'})")
    res = score_collected(stats.blocks, [program], structure=structure)
    value = float(res.scores[0, 0])
    return value if math.isfinite(value) else float("nan")
