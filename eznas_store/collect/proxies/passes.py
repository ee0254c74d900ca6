"""What every proxy pass shares: its result type, its calling convention, float64 sums.

A pass runs one fresh network once for all the proxies that can share that run (see the
table in :mod:`eznas_store.collect.proxies`) and scores each of them on what the run left:
``run(model, images, labels, *, seed, specs) -> PassResult``, ``specs`` being the wanted
proxies' :class:`~eznas_store.collect.proxies.registry.ProxySpec` (their ``name``,
``score`` and ``needs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["PassResult", "ProxyPass", "float64_sum", "score_each"]


@dataclass
class PassResult:
    """A pass's results: value per name, or a reason why there is none."""

    values: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, fn: Callable[[], float]) -> None:
        """Store ``fn()``; a failing proxy gets a reason (NaN plus a reason, never a crash)."""
        try:
            with np.errstate(all="ignore"):
                self.values[name] = float(fn())
        except Exception as exc:  # a failed proxy is NaN plus a reason, never a crash
            self.reasons[name] = f"{name} failed: {type(exc).__name__}: {exc}".strip()


@dataclass(frozen=True)
class ProxyPass:
    """One way of running a network, shared by several proxies.

    ``name`` keys ``compute_all``'s ``timings``; ``run`` is the pass (module docstring).
    """

    name: str
    run: Callable[..., PassResult]


def score_each(state: Any, specs: Sequence[Any]) -> PassResult:
    """Score every wanted proxy on the state its pass left: ``spec.score(state)``."""
    out = PassResult()
    for spec in specs:
        out.put(spec.name, lambda score=spec.score: score(state))
    return out


def float64_sum(values: Iterable[torch.Tensor | float]) -> float:
    """Sum tensors' entries (or floats) in float64, as NASLib's ``sum_arr`` of layer arrays."""
    total = 0.0
    for v in values:
        total += float(v.double().sum()) if isinstance(v, torch.Tensor) else float(v)
    return total
