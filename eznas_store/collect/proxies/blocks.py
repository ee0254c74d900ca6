"""Block-restricted proxy variants: what the EZNAS terminals can rebuild of four proxies.

The 22 EZNAS terminals hold, per R-C-B block, the conv weight (``wt``), gradients of the
*sum of the logits* (not of a loss), block activations and their gradients. Only proxies
that read weights, shapes or ReLU patterns can be rebuilt from them, and only **restricted
to the blocks** (the stem conv, NB201's two shortcut convs, the classifier and the final
BN-ReLU are not blocks): :func:`from_terminals` computes those variants from collected
terminals, :func:`block_variant` the same numbers straight from a network. They are
different numbers from the full proxies of the same name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from eznas_store.collect.proxies.networks import ModelSource, fresh_network
from eznas_store.collect.proxies.nwot import nwot_logdet
from eznas_store.collect.proxies.passes import float64_sum, forward_with_hooks
from eznas_store.collect.proxies.registry import PROXIES, PROXY_NAMES
from eznas_store.collect.statistics import find_blocks
from eznas_store.errors import ConfigError, UnknownNameError

__all__ = ["BLOCK_PROXIES", "block_variant", "from_terminals"]

#: proxies with an exact block-restricted variant computable from EZNAS terminals
BLOCK_PROXIES: tuple[str, ...] = ("flops", "l2_norm", "nwot", "params")


def _check_block_name(name: str, structure: str) -> None:
    if name not in BLOCK_PROXIES:
        if name in PROXIES:
            raise UnknownNameError(
                f"proxy {name!r} has no block-restricted variant from the EZNAS terminals "
                f"(those that do: {', '.join(BLOCK_PROXIES)}); see its docstring")
        raise UnknownNameError(f"unknown proxy {name!r} (known: {', '.join(PROXY_NAMES)})")
    if structure not in ("rcb", "cbr"):
        raise ConfigError(f"structure must be 'rcb' or 'cbr', got {structure!r}")


def _tensor(block: Any, key: str) -> torch.Tensor:
    tensors = getattr(block, "tensors", block)
    if not isinstance(tensors, Mapping) or key not in tensors:
        raise ConfigError(f"a block has no {key!r} terminal (blocks are mappings of "
                          "terminal name -> tensor, or BlockStats)")
    v = tensors[key]
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))


def from_terminals(name: str, blocks: Sequence[Any], *, structure: str = "rcb") -> float:
    """A **block-restricted variant** of a proxy, from the EZNAS terminals of one network.

    ``blocks``: per R-C-B (or C-B-R) block, a mapping terminal name → tensor (or a
    :class:`eznas_store.collect.statistics.BlockStats`), raw values as the collector produced them.
    Not the full proxy: stem conv, shortcut convs, classifier and ReLUs outside blocks are
    not blocks. Definitions (what :func:`block_variant` computes from a network):

    - ``l2_norm``: Σ_blocks ‖wt‖_F
    - ``nwot``: log|det K| with K from the codes ``inpact_D > 0`` (rcb) / ``act_D > 0`` (cbr)
    - ``params``: Σ_blocks numel(wt) / 1e6 (conv weights; BN affine parameters excluded)
    - ``flops``: Σ_blocks k_h·k_w·(C_in/groups)·C_out·H_o·W_o / 1e6 (conv MACs, one image)
    """
    _check_block_name(name, structure)
    if not blocks:
        raise ConfigError("from_terminals needs at least one block")
    if name == "l2_norm":
        return float64_sum(_tensor(b, "wt").double().norm() for b in blocks)
    if name == "params":
        return sum(_tensor(b, "wt").numel() for b in blocks) / 1e6
    if name == "flops":
        total = 0
        for b in blocks:
            wt, act = _tensor(b, "wt"), _tensor(b, "act_D")
            total += int(np.prod(wt.shape)) * int(np.prod(act.shape[2:]))
        return total / 1e6
    key = "inpact_D" if structure == "rcb" else "act_D"
    return nwot_logdet(_tensor(b, key) > 0 for b in blocks)


def block_variant(name: str, model_factory_or_model: ModelSource, images: torch.Tensor, *,
                  seed: int, structure: str = "rcb", reinit: bool = True,
                  device: str | torch.device = "cpu") -> float:
    """The block-restricted variant of :func:`from_terminals`, computed from the network.

    Blocks are found with :func:`eznas_store.collect.statistics.find_blocks`; the network is fresh,
    in train mode, and sees ``images`` as the collector's D input does.
    """
    _check_block_name(name, structure)
    device = torch.device(device)
    model = fresh_network(model_factory_or_model, seed=seed, device=device, reinit=reinit)
    blocks = find_blocks(model, structure)
    if not blocks:
        raise ConfigError(f"the model has no {structure.upper()} blocks")
    convs = [b[1] if structure == "rcb" else b[0] for b in blocks]
    if name == "l2_norm":
        return float64_sum(c.weight.detach().double().norm() for c in convs)
    if name == "params":
        return sum(c.weight.numel() for c in convs) / 1e6
    images = images.to(device)
    if name == "flops":
        sizes: dict[int, int] = {}
        forward_with_hooks(model, images, [c.register_forward_hook(
            lambda m, a, o: sizes.__setitem__(id(m), int(np.prod(o.shape[2:])))) for c in convs])
        return sum(int(np.prod(c.weight.shape)) * sizes[id(c)] for c in convs if id(c) in sizes) / 1e6
    relus = [b[0] if structure == "rcb" else b[2] for b in blocks]
    codes: list[torch.Tensor] = []
    forward_with_hooks(model, images,
                        [r.register_forward_pre_hook(lambda m, a: codes.append(a[0].detach() > 0)) for r in relus])
    return nwot_logdet(codes)
