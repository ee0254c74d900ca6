"""The 22 EZNAS terminals (DESIGN §2): names, order, what is stored vs derived, and how they are collected.

Order is stable: reports, the DEAP primitive set and stores list terminals in it
(program JSON names terminals, it does not index them). ``X`` ranges over the three inputs D (data), N (noise), P (perturbed data).

Torch-free on purpose: the store lays out and checks ``STORED`` arrays and records a
``CollectConfig`` in its plan without knowing the collector that produced them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from eznas_store.errors import ConfigError

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
