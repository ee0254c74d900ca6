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
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from torch import nn

T = TypeVar("T")

__all__ = ["Once", "PassResult", "ProxyPass", "float64_sum", "forward_with_hooks", "score_each"]


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


class Once(Generic[T]):
    """``compute()`` run on the first call and kept, or the exception it raised, raised again on
    every call: the proxies sharing a pass share one computation and, if it fails, one reason."""

    def __init__(self, compute: Callable[[], T]) -> None:
        self._compute = compute
        self._done = False
        self._value: T | Exception | None = None

    def __call__(self) -> T:
        if not self._done:
            try:
                self._value = self._compute()
            except Exception as exc:
                self._value = exc
            self._done = True
        if isinstance(self._value, Exception):
            raise self._value
        return self._value  # type: ignore[return-value]


def forward_with_hooks(model: nn.Module, images: torch.Tensor, handles: list) -> None:
    """One no-grad forward pass that feeds the given hooks, which are removed afterwards."""
    try:
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()


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
