"""The 22 EZNAS terminals (docs/design.md §2): names, order, what is stored vs derived, and how they are collected.

Order is stable: reports, the DEAP primitive set and stores list terminals in it
(program JSON names terminals, it does not index them). ``X`` ranges over the three inputs D (data), N (noise), P (perturbed data).

Torch-free on purpose: the store lays out and checks ``STORED`` arrays and records a
``CollectConfig`` in its plan without knowing the collector that produced them. The rules
deriving every terminal from ``STORED`` (``terminal_value``) live here once, for torch
(evaluator, collector) and numpy (``Store.tensor``) alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eznas_store.errors import ConfigError, UnknownNameError

INPUTS: tuple[str, ...] = ("D", "N", "P")

#: per-input kinds, in the order they appear in TERMINALS
KINDS: tuple[str, ...] = (
    "wtgrad", "inpact", "inpactgrad", "preact", "preactgrad", "act", "actgrad",
)

TERMINALS: tuple[str, ...] = ("wt",) + tuple(f"{k}_{x}" for k in KINDS for x in INPUTS)
assert len(TERMINALS) == 22

#: kinds kept on disk, per input (plus "wt" once): the smallest exact set; ``preact`` and
#: ``inpactgrad`` are functions of ``inpact`` and ``preactgrad`` (``collect.statistics``)
STORED_KINDS: tuple[str, ...] = ("wtgrad", "inpact", "preactgrad", "act", "actgrad")
STORED: tuple[str, ...] = ("wt",) + tuple(f"{k}_{x}" for k in STORED_KINDS for x in INPUTS)

#: which tensor shape family each kind has: weight (Cout,Cin,k,k), block input
#: (B,Cin,H,W) or block output (B,Cout,Ho,Wo)
FAMILY: dict[str, str] = {
    "wt": "weight", "wtgrad": "weight",
    "inpact": "input", "inpactgrad": "input", "preact": "input", "preactgrad": "input",
    "act": "output", "actgrad": "output",
}

#: perturbation scale of the P input: the released EZNAS code used sqrt(0.01)
DEFAULT_PERTURB_SCALE = math.sqrt(0.01)


@dataclass(frozen=True, kw_only=True)
class CollectConfig:
    """How statistics are collected; written into the store so every value says how it was made."""

    batch_size: int = 1
    structure: str = "rcb"
    perturb_scale: float = DEFAULT_PERTURB_SCALE
    seed: int = 0
    #: CPU threads of the collector. Part of the plan because the conv weight-gradient's
    #: reduction order (so its last bits) depends on it; scale out with shards instead.
    threads: int = 1

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ConfigError(f"collector threads must be at least 1, got {self.threads}")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, got {self.batch_size}")
        if self.structure not in ("rcb", "cbr"):
            raise ConfigError(f"structure must be 'rcb' or 'cbr', got {self.structure!r}")
        if not (self.perturb_scale >= 0 and math.isfinite(self.perturb_scale)):
            raise ConfigError(f"perturb scale must be a finite number >= 0, got {self.perturb_scale}")


def split(name: str) -> tuple[str, str | None]:
    """``"act_D"`` → ``("act", "D")``; ``"wt"`` → ``("wt", None)``."""
    if name == "wt":
        return "wt", None
    kind, _, x = name.rpartition("_")
    return kind, x


# ----------------------------------------------------------------------------- derivation rules
# The one statement of how a terminal follows from the stored tensors, for any array type
# that has ``*``, ``-`` and ``> 0`` (torch tensors in ``evaluate.chunk`` and
# ``collect.statistics``; numpy arrays in ``store.reader.Store.tensor``): only ``relu`` is
# passed in (``torch.relu`` / ``numpy_relu``).

def numpy_relu(x: Any) -> Any:
    """ReLU of a numpy array, dtype kept (the numpy twin of ``torch.relu``)."""
    import numpy as np  # local: terminals stays importable without numpy at import time

    return np.maximum(x, 0)


def derive_preact(inpact: Any, structure: str, relu: Callable[[Any], Any]) -> Any:
    """``preact`` from the block input: the ReLU's output (rcb); the conv input itself (cbr)."""
    return inpact if structure == "cbr" else relu(inpact)


def derive_inpactgrad(preactgrad: Any, inpact: Any, structure: str) -> Any:
    """``inpactgrad`` from the conv-input gradient: masked by the ReLU (rcb); itself (cbr)."""
    return preactgrad if structure == "cbr" else preactgrad * (inpact > 0)


def raw_value(kind: str, x: str, stored: Callable[[str], Any], structure: str,
              relu: Callable[[Any], Any]) -> Any:
    """The raw (undifferenced) value of per-input ``kind`` for input ``x``; ``stored(name)``
    gives a ``STORED`` tensor (P raw: the perturbed pass itself)."""
    if kind in STORED_KINDS:
        return stored(f"{kind}_{x}")
    if kind == "preact":
        return derive_preact(stored(f"inpact_{x}"), structure, relu)
    if kind == "inpactgrad":
        return derive_inpactgrad(stored(f"preactgrad_{x}"), stored(f"inpact_{x}"), structure)
    raise UnknownNameError(f"unknown terminal kind {kind!r}; kinds: {', '.join(KINDS)}")


def terminal_value(name: str, stored: Callable[[str], Any], structure: str,
                   relu: Callable[[Any], Any]) -> Any:
    """Terminal ``name`` (one of ``TERMINALS``) from the stored tensors: ``wt`` as stored,
    D and N terminals raw, P terminals as (P − D) differences (the released EZNAS code)."""
    if name not in TERMINALS:
        raise UnknownNameError(f"unknown terminal {name!r}; terminals: {', '.join(TERMINALS)}")
    if name == "wt":
        return stored("wt")
    kind, x = split(name)
    assert x is not None
    if x == "P":
        return raw_value(kind, "P", stored, structure, relu) - raw_value(kind, "D", stored, structure, relu)
    return raw_value(kind, x, stored, structure, relu)
