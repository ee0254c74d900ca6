"""The networks the proxies run on: factories per search space, fresh copies per pass.

Every pass of :func:`eznas_store.collect.proxies.runner.compute_all` gets a freshly built,
freshly initialised network (all with the same init), so a pass that modifies its network
(synflow's ``|θ|``, zen's Gaussian re-init) never leaks into another.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from eznas_store.collect.statistics import reinitialise
from eznas_store.errors import ConfigError
from eznas_store.sources import get_space

__all__ = ["ModelSource", "fresh_network", "nb201_factory", "network_factory", "weighted_layers"]

#: a model, or a factory ``seed -> freshly built and initialised model``
ModelSource = nn.Module | Callable[[int], nn.Module]

_INITS = ("eznas", "default")


def network_factory(space: str, arch: str, *, num_classes: int, C: int | None = None,
                    N: int | None = None, init: str = "eznas",
                    structure: str = "rcb") -> Callable[[int], nn.Module]:
    """A factory ``seed -> network`` of one architecture of a search space, for ``compute_all``.

    ``C``/``N`` default to the space's skeleton. ``init="eznas"``:
    :func:`eznas_store.collect.statistics.reinitialise` with
    ``torch.Generator().manual_seed(seed)`` (the init the EZNAS statistics use).
    ``init="default"``: PyTorch's default module init drawn from the global RNG seeded
    with ``seed`` inside ``torch.random.fork_rng`` (what NASLib, hence Suite-Zero, used:
    it never re-initialises a freshly built network; e.g. ``l2_norm`` reproduces
    Suite-Zero's scale only with it). Both are deterministic in ``seed``. The
    architecture is parsed here, so a bad one raises before any network is built.
    """
    if init not in _INITS:
        raise ConfigError(f"init must be 'eznas' or 'default', not {init!r}")
    found = get_space(space)
    parsed = found.parse(arch)
    C = found.skeleton["C"] if C is None else C
    N = found.skeleton["N"] if N is None else N

    def factory(seed: int) -> nn.Module:
        if init == "default":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                return found.build(parsed, num_classes=num_classes, C=C, N=N, structure=structure)
        model = found.build(parsed, num_classes=num_classes, C=C, N=N, structure=structure)
        reinitialise(model, torch.Generator().manual_seed(int(seed)))
        return model

    return factory


def nb201_factory(arch: str, *, num_classes: int = 10, C: int = 16, N: int = 5,
                  init: str = "eznas") -> Callable[[int], nn.Module]:
    """:func:`network_factory` for an NB201 cell, with NB201's skeleton and 10 classes."""
    return network_factory("nb201", arch, num_classes=num_classes, C=C, N=N, init=init)


def fresh_network(source: ModelSource, *, seed: int, device: torch.device,
                  reinit: bool) -> nn.Module:
    """A new model for one pass, in train mode: ``factory(seed)``, or a deep copy (re-initialised)."""
    if isinstance(source, nn.Module):
        model = copy.deepcopy(source)
        if reinit:
            reinitialise(model, torch.Generator().manual_seed(int(seed)))
    elif callable(source):
        model = source(int(seed))
        if not isinstance(model, nn.Module):
            raise ConfigError(
                f"a model factory must return a torch.nn.Module, got {type(model).__name__}"
            )
    else:
        raise ConfigError(
            f"expected a torch model or a factory seed -> model, got {type(source).__name__}"
        )
    model = model.to(device).train()
    model.zero_grad(set_to_none=True)
    return model


def weighted_layers(model: nn.Module) -> list[nn.Module]:
    """NASLib's per-layer unit (``get_layer_metric_array``): every Conv2d and Linear."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
